"""test_collapse and cdnv_bound along a real training run (Hui et al. 2022; Galanti et al. 2021)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from ncbench.runner.suite import run_tasks
from ncbench.specs import load_task
from ncbench.tasks import TaskSpec

RECIPE = {"epochs": 4, "batch_size": 128, "lr": 0.05, "eval_every": 1}


def _run(tmp_path, specs):
    _, runs = run_tasks("t", specs, tmp_path, progress=False, log=lambda m: None)
    assert [r.outcome for r in runs] == ["done"] * len(specs), [r.error for r in runs]
    return [pd.read_csv(r.csv) for r in runs], runs


def value(df, split, metric):
    d = df[(df.split == split) & (df.metric == metric)].sort_values("epoch")
    return d.value.to_numpy()


def test_weak_ncc_trace_never_exceeds_strong_and_cdnv_outputs(tmp_path):
    common = {"dataset": "digits", "model": "test_resnet", "seed": 0, "recipe": RECIPE}
    (tc, cb), runs = _run(tmp_path, [TaskSpec(name="tc", kind="test_collapse", version=1, **common),
                                     TaskSpec(name="cb", kind="cdnv_bound", version=1, **common)])
    strong, weak_ncc = value(tc, "test_strong", "trace_sw"), value(tc, "test_weak_ncc", "trace_sw")
    assert len(strong) == 4 and (weak_ncc <= strong * (1 + 1e-12)).all()
    summary = tc[tc.split == "summary"].set_index("metric").value
    assert summary["weak_ncc_le_strong_trace_sw_fraction"] == 1.0
    assert 0.0 <= summary["weak_le_strong_nc1_fraction"] <= 1.0
    ratio = value(tc, "test_strong", "nc1_ratio")
    pd.testing.assert_series_equal(pd.Series(ratio), pd.Series(value(tc, "test_strong", "nc1") / value(tc, "train", "nc1")))
    # cdnv_bound: the per-pair matrix averages to the reported CDNV of the final epoch
    pairs = pd.read_csv(runs[1].dir / "cdnv_pairs.csv")
    for split in ("train", "test"):
        assert pairs[pairs.split == split].value.mean() == pytest.approx(value(cb, split, "cdnv")[-1], rel=1e-9)
    # the population-CDNV bound per pair (new rows): consistent with its table and with cdnv_pairs
    bp = pd.read_csv(runs[1].dir / "cdnv_bound_pairs.csv")
    test_pairs = pairs[pairs.split == "test"].reset_index(drop=True)
    assert len(bp) == len(test_pairs) == 45
    assert bp.test_cdnv.to_numpy() == pytest.approx(test_pairs.value.to_numpy(), rel=1e-6)
    assert bp.train_cdnv.to_numpy() == pytest.approx(pairs[pairs.split == "train"].value.to_numpy(), rel=1e-6)
    s = cb[cb.split == "summary"].set_index("metric").value
    assert s["bound_holds_fraction"] == pytest.approx((bp.holds == 1).mean())
    assert s["bound_vacuous_fraction"] == pytest.approx(bp.vacuous.mean())
    finite = bp[bp.vacuous == 0]
    assert (finite.bound >= finite.train_cdnv).all()
    if len(finite):
        assert s["bound_tightness_median"] == pytest.approx((finite.bound / finite.test_cdnv).median())
    gap = value(cb, "test_vs_train", "generalization_gap")
    assert gap == pytest.approx((1 - value(cb, "train", "error")) - (1 - value(cb, "test", "error")))
    assert (runs[0].dir / "test_collapse.png").exists() and (runs[1].dir / "cdnv.png").exists()


@pytest.mark.slow
def test_train_collapses_faster_than_test_on_the_default_spec(tmp_path):
    """The documented result of Hui et al. on the embedded default: over the terminal phase, train nc1
    falls by a larger factor than strong test nc1; weak (nearest train mean) Tr Σ_W ≤ strong always."""
    spec = load_task("test_collapse_mnist5k")
    (tc,), _ = _run(tmp_path, [spec])
    s = tc[tc.split == "summary"].set_index("metric").value
    assert s["train_nc1_fall"] > s["strong_nc1_fall"] > 0
    assert s["weak_ncc_le_strong_trace_sw_fraction"] == 1.0


def test_a_diverged_run_writes_nan_rows_instead_of_failing(tmp_path, monkeypatch):
    from ncbench.training.trainer import Trainer

    original = Trainer.train_epoch

    def poisoned(self, data):  # the weights blow up, as in a diverging NFNet without clipping
        log = original(self, data)
        with torch.no_grad():
            for p in self.model.body.parameters():
                p.fill_(float("nan"))
        return log

    monkeypatch.setattr(Trainer, "train_epoch", poisoned)
    common = {"dataset": "digits", "model": "test_resnet", "seed": 0, "recipe": {"epochs": 1}}
    frames, _ = _run(tmp_path, [TaskSpec(name=k, kind=k, version=1, **common)
                                for k in ("train_collapse", "test_collapse", "cdnv_bound")])
    for df in frames:
        assert df["value"].dtype == float
        trained = df[df.variant.isna()]          # the baselines (raw pixels, random init) stay finite
        assert trained[trained.metric.isin(["nc1", "cdnv", "strong_nc1", "train_cdnv"])].value.isna().all()
        assert df[df.variant == "baseline=raw_pixels"].value.notna().all()
