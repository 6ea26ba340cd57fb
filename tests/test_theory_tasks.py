"""Theory-tier task kinds `ufm` and `layer_peeled` run through the suite runner (SPEC §8–9).

Each task goes through `ncbench.runner.suite.run_tasks` into a temporary folder; the checks read the
written CSVs back with plain `pandas.read_csv` and compare them against the theory's closed forms
(simplex ETF, strong collapse, −1/(K−1) at R = 1) and against the library called directly.
The UFM specs are the shipped ones (under a second of compute); the LPM uses a small grid.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ncbench.results.schema import COLUMNS
from ncbench.results.variants import parse_variant
from ncbench.runner.suite import run_tasks
from ncbench.specs import load_task, members
from ncbench.tasks import TASK_KINDS
from ncbench.tasks.base import TaskSpec
from ncbench.theory import threshold_ratio

PNG = b"\x89PNG\r\n\x1a\n"
SPEC_KEYS = ("nc1", "nc1_quotient", "equinorm_h", "equinorm_w", "equiangular_h", "equiangular_w",
             "etf_error_h", "etf_error_w", "nc3", "nc4", "ncc_acc", "cdnv")
LPM_SMALL = {"K": 6, "K_A": 2, "ratios": {"min": 1.0, "max": 1000.0, "num": 7}, "restarts": 1}
LPM_SWEEP = {"E_H": [1.0, 5.0]}
LPM_TREND = [{"name": "threshold_spearman_E_H", "of": "threshold_ratio", "spearman": "E_H"}]


def run_one(tmp_path, spec: TaskSpec):
    """Run `spec` alone; returns (task folder, results DataFrame)."""
    _, runs = run_tasks(spec.name, [spec], tmp_path, progress=False, log=lambda *a: None)
    (r,) = runs
    assert r.outcome == "done", r.error
    df = pd.read_csv(r.csv)                        # no options: SPEC §9
    assert tuple(df.columns) == COLUMNS
    assert df["value"].dtype == np.float64
    return r.dir, df


def spec_of(kind: str, name: str, sweep=None, aggregate=(), **options) -> TaskSpec:
    return TaskSpec(name=name, kind=kind, version=1, options=options, sweep=sweep or {}, aggregate=list(aggregate))


def summary(df: pd.DataFrame) -> dict[str, float]:
    s = df[df.split == "summary"]
    return dict(zip(s.metric, s.value))


# --------------------------------------------------------------------------------------- ufm
def test_ufm_ce_balanced_spec_reaches_neural_collapse(tmp_path):
    """Zhu et al. 2021: regularised CE on balanced classes → nc1, equinorm, equiangular, nc3 → 0."""
    spec = load_task("ufm_ce_balanced")
    out, df = run_one(tmp_path, spec)
    train = df[df.split == "train"]
    steps = sorted(train.epoch.unique())
    o = spec.options
    assert steps[0] == 0 and steps[-1] == o["steps"] and steps[1] == o["log_every"]   # epoch = GD step
    assert set(train.metric) == {*SPEC_KEYS, "loss", "objective", "grad_norm"}        # no snc for CE
    assert (train.n_samples == o["K"] * o["n"]).all() and train.layer.isna().all()
    assert set(df.dataset) == {"ufm"} and set(df.model) == {"none"}
    first = train[train.epoch == 0].set_index("metric").value
    last = summary(df)
    keys = ("nc1", "equinorm_h", "equinorm_w", "equiangular_h", "equiangular_w", "nc3")
    assert all(first[k] > 0.05 for k in keys), first
    assert all(last[k] <= 1e-3 for k in keys), last
    assert last["ncc_acc"] == 1.0 and last["nc4"] == 0.0
    # the summary is the last logged step
    final = train[train.epoch == o["steps"]].set_index("metric").value
    assert all(last[k] == final[k] for k in final.index)
    assert (df[df.split == "summary"].epoch == o["steps"]).all()
    assert (out / "collapse.png").read_bytes()[:8] == PNG


def test_ufm_mse_snc_spec_reaches_strong_collapse(tmp_path):
    """Mixon et al. 2020: unregularised MSE from near-zero init → SNC1–3 residuals ≈ 0."""
    out, df = run_one(tmp_path, load_task("ufm_mse_snc"))
    first = df[(df.split == "train") & (df.epoch == 0)].set_index("metric").value
    last = summary(df)
    assert min(first["snc1"], first["snc2"], first["snc3"]) > 0.5
    assert max(last["snc1"], last["snc2"], last["snc3"]) <= 1e-3, last
    assert last["loss"] < 1e-12
    assert (out / "collapse.png").read_bytes()[:8] == PNG


def test_ufm_task_matches_the_library_and_writes_nan_as_empty(tmp_path):
    """Imbalanced MSE: the SNC residuals are undefined (NaN), written empty, read back as NaN;
    the other numbers equal `simulate_ufm` on the same config."""
    from ncbench.theory import UFMConfig, simulate_ufm

    spec = spec_of("ufm", "ufm_imb", class_counts=[6, 3, 2], dim=5, loss="mse", steps=40, log_every=20)
    spec.model, spec.dataset = "resnet18", "cifar10"            # ignored: no backbone, no data
    out, df = run_one(tmp_path, spec)
    assert set(df.model) == {"none"} and set(df.dataset) == {"ufm"}
    assert sorted(df[df.split == "train"].epoch.unique()) == [0, 20, 40]
    s = summary(df)
    assert all(math.isnan(s[k]) for k in ("snc1", "snc2", "snc3"))
    text = (out / "results.csv").read_text()
    assert "nan" not in text.lower()
    ref = simulate_ufm(UFMConfig(class_counts=(6, 3, 2), dim=5, loss="mse", steps=40, seed=0), log_every=20)[-1]
    for k in ("loss", "objective", "nc1", "nc3", "equiangular_w"):
        assert s[k] == ref[k], k


@pytest.mark.parametrize("options,match", [
    ({"class_counts": [3, 3], "K": 2}, "not both"),
    ({"class_counts": 5}, "list"),
    ({"lr": "fast"}, "lr"),
    ({"bias": "yes"}, "bias"),
    ({"K": 1}, "2 classes"),
    ({"log_every": 0}, "log_every"),
    ({"fixed_etf": True, "K": 4, "dim": 3}, "dim >= K"),
    ({"stepz": 10}, "unknown options"),
])
def test_ufm_rejects_bad_options_before_running(tmp_path, options, match):
    with pytest.raises(ValueError, match=match):
        run_tasks("bad", [spec_of("ufm", "bad", **options)], tmp_path, progress=False, log=lambda *a: None)
    assert not (tmp_path / "bad").exists() and not list(tmp_path.iterdir())


def test_ufm_accepts_yaml_style_option_values():
    """YAML gives `1e-3` (no dot) as text and counts may be floats such as 10.0."""
    task = TASK_KINDS.get("ufm")(spec_of("ufm", "ok", lambda_w="1e-3", K=3.0, n=2, steps="10"))
    assert task.config.lambda_w == 1e-3 and task.config.class_counts == (2, 2, 2) and task.config.steps == 10


# ------------------------------------------------------------------------------ layer_peeled
def test_layer_peeled_task_reproduces_minority_collapse(tmp_path):
    K = LPM_SMALL["K"]
    out, df = run_one(tmp_path, spec_of("layer_peeled", "lpm", sweep=LPM_SWEEP, aggregate=LPM_TREND, **LPM_SMALL))
    assert set(df.model) == {"none"} and set(df.dataset) == {"layer_peeled"} and set(df.device) == {"cpu"}
    curve = pd.read_csv(out / "curve.csv")
    assert list(curve.columns) == ["variant", "seed", "E_H", "ratio", "minority_cosine", "minority_norm", "objective",
                                   "kkt_residual", "iterations"]
    assert len(curve) == 2 * 7 and curve.minority_cosine.dtype == np.float64
    # the long rows encode the same curve: variant "E_H=<e>,R=<r>", metric minority_cosine, no layer
    train = df[df.split == "train"]
    assert set(train.metric) == {"minority_cosine", "minority_norm", "objective", "kkt_residual"}
    assert train.epoch.isna().all() and train.layer.isna().all()
    cos = train[train.metric == "minority_cosine"]
    points = [parse_variant(v) for v in cos.variant]
    cos = cos.assign(E_H=[float(p["E_H"]) for p in points], ratio=[float(p["R"]) for p in points])
    merged = cos.merge(curve.drop(columns="variant"), on="E_H", suffixes=("", "_c"))
    merged = merged[np.isclose(merged.ratio, merged.ratio_c, rtol=1e-5)]
    assert len(merged) == len(curve)
    np.testing.assert_array_equal(merged.value.to_numpy(), merged.minority_cosine.to_numpy())
    # theory: −1/(K−1) at R = 1 for every E_H, then rising to 1
    at_one = cos[cos.ratio == 1.0]
    assert len(at_one) == 2
    np.testing.assert_allclose(at_one.value, -1.0 / (K - 1), atol=1e-3)
    for _, grp in curve.groupby("E_H"):
        c = grp.sort_values("ratio").minority_cosine.to_numpy()
        assert (np.diff(c) >= -1e-6).all() and c[-1] == pytest.approx(1.0, abs=1e-3)
    # summary: thresholds per E_H, equal to the library's on the same curve, growing with E_H
    summ = df[df.split == "summary"].fillna({"variant": ""})
    s = {(v, m): x for v, m, x in zip(summ.variant, summ.metric, summ.value)}
    cross, full = threshold_ratio(curve), threshold_ratio(curve, level=1 - 1e-3)
    for e in (1.0, 5.0):
        assert s[(f"E_H={e:g}", "threshold_ratio")] == pytest.approx(cross[e], rel=1e-12)
        assert s[(f"E_H={e:g}", "collapse_ratio")] == pytest.approx(full[e], rel=1e-12)
        assert s[(f"E_H={e:g}", "max_kkt_residual")] < 1e-6
    assert 1.0 < s[("E_H=1", "threshold_ratio")] < s[("E_H=5", "threshold_ratio")] < 1000.0
    assert s[("E_H=5", "threshold_ratio")] < s[("E_H=5", "collapse_ratio")]
    assert math.isnan(s[("", "threshold_spearman_E_H")])       # two budgets: too few points for a rank trend
    assert (out / "minority_collapse.png").read_bytes()[:8] == PNG


def test_layer_peeled_threshold_is_nan_when_never_crossed(tmp_path):
    """A grid that stays below the threshold: the summary value is missing (empty → NaN), not a number."""
    out, df = run_one(tmp_path, spec_of("layer_peeled", "lpm_low", K=6, K_A=2, ratios=[1.0, 1.2], E_H=5.0,
                                        restarts=1))
    s = summary(df)
    assert math.isnan(s["threshold_ratio"]) and math.isnan(s["collapse_ratio"])
    assert pd.read_csv(out / "curve.csv").minority_cosine.max() < 0


@pytest.mark.parametrize("options,match", [
    ({"ratios": [0.5, 2.0]}, ">= 1"),
    ({"ratios": {"min": 1, "max": 10}}, "min, max, num"),
    ({"ratios": []}, "non-empty"),
    ({"E_H": [1.0, 5.0]}, r"became a sweep: declare `sweep: \{E_H: \[1.0, 5.0\]\}`"),
    ({"E_H": "big"}, "options.E_H"),
    ({"ratios": [1.0, 1.0000001]}, "distinct"),
    ({"K": 4, "K_A": 3}, "two minority"),
    ({"E_W": 0.0}, "budgets"),
    ({"K": 6.5}, "options.K"),
    ({"ratios": {"min": 1.0, "max": "lots", "num": 3}}, "ratios.max"),
])
def test_layer_peeled_rejects_bad_options_before_running(tmp_path, options, match):
    with pytest.raises(ValueError, match=match):
        run_tasks("bad", [spec_of("layer_peeled", "bad", **options)], tmp_path, progress=False, log=lambda *a: None)


def test_shipped_lpm_spec_is_valid():
    """The shipped spec builds (options validated) and its grid starts at R = 1 (the simplex point)."""
    spec = load_task("lpm_minority_curve")
    tasks = [TASK_KINDS.get("layer_peeled")(m) for m in members(spec)]
    assert tasks[0].ratios[0] == 1.0 and len(tasks[0].ratios) >= 9 and len(tasks) >= 3
    assert [t.energies_h for t in tasks] == [[e] for e in spec.sweep["E_H"]]


def test_cli_runs_a_theory_task_without_dataset_or_model(tmp_path):
    """`ncbench run` skips the data-set/model validation for the theory kinds."""
    from ncbench.cli import main

    n = torch.get_num_threads()
    argv = ["run", "ufm_ce_balanced", "--out", str(tmp_path), "--no-progress", "--device", "cpu", "--threads", str(n)]
    assert main(argv) == 0
    assert torch.get_num_threads() == n            # the task's one-thread solve restores the CLI's count
    (csv,) = tmp_path.glob("*/ufm_ce_balanced/results.csv")
    assert summary(pd.read_csv(csv))["nc1"] <= 1e-3
