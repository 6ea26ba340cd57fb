"""The claims engine on synthetic tidy results whose verdicts are known by construction: reproduced,
contradicted, weaker than claimed, inconclusive (one seed, a wide interval), not applicable (each
precondition broken in turn), missing inputs, runs not ok left out; the intervals against scipy (paired
t, Fisher z) and the exact binomial (sign test); per-model and pooled rows; whether every catalog rule can
pass and can fail with the seeds the claims suite runs; the scorecard files and the Markdown table."""
from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ncbench.claims import (
    CLAIMS,
    DETAIL_COLUMNS,
    SCORECARD_COLUMNS,
    VERDICTS,
    Claim,
    Measure,
    Precondition,
    catalog_markdown,
    catalog_table,
    evaluate_claims,
    rule_feasibility,
    scorecard_markdown,
    write_scorecard,
)
from ncbench.claims.catalog import REPRESENTATION_POINTS
from ncbench.claims.evaluate import Reader, prepare_rows, variant_matches
from ncbench.claims.intervals import claim_interval
from ncbench.claims.verdicts import verdict
from ncbench.results.writer import write_long_csv

T = "toy_task"
T_TERMINAL = "terminal_phase_mnist5k"


def row(metric, value, seed=0, variant="", task=T, split="summary", epoch=10, status="ok", reason="", layer=""):
    return {"task": task, "variant": variant, "metric": metric, "value": value, "seed": seed, "split": split,
            "epoch": epoch, "status": status, "status_reason": reason, "layer": layer}


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows)


def one(claim, rows):
    (o,) = evaluate_claims(frame(rows), [claim])
    return o


MEAN = Claim("m", "x exceeds 1", "toy", "mean", Measure(T, "x"), ">", 1.0)
PAIRED = Claim("p", "a beats b", "toy", "paired_difference", Measure(T, "acc", "arm=a"), ">", 0.0,
               b=Measure(T, "acc", "arm=b"))


def paired_rows(a, b, **kw):
    return ([row("acc", v, s, "arm=a", **kw) for s, v in enumerate(a)]
            + [row("acc", v, s, "arm=b", **kw) for s, v in enumerate(b)])


# -- verdicts -------------------------------------------------------------------------------------

def test_paired_difference_matches_scipy_and_is_reproduced():
    a, b = [0.71, 0.74, 0.69, 0.73], [0.60, 0.66, 0.62, 0.61]
    o = one(PAIRED, paired_rows(a, b))
    d = np.subtract(a, b)
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)           # scipy's paired t interval
    assert o.value == pytest.approx(d.mean(), rel=1e-12)
    assert (o.ci_low, o.ci_high) == pytest.approx((ref.low, ref.high), rel=1e-10)
    assert o.n_seeds == 4 and o.verdict == "reproduced" and o.per_seed == pytest.approx(dict(enumerate(d)))


def test_contradicted_when_the_interval_is_on_the_other_side_and_inconclusive_when_it_straddles():
    assert one(PAIRED, paired_rows([0.5, 0.52, 0.49], [0.6, 0.61, 0.62])).verdict == "contradicted"
    o = one(PAIRED, paired_rows([0.5, 0.7, 0.45], [0.6, 0.5, 0.5]))
    assert o.ci_low < 0 < o.ci_high and o.verdict == "inconclusive" and o.reason == ""


def test_one_seed_paired_is_inconclusive_but_a_threshold_decides_on_its_value():
    o = one(PAIRED, paired_rows([0.9], [0.1]))
    assert o.verdict == "inconclusive" and o.n_seeds == 1 and o.value == pytest.approx(0.8)
    assert math.isnan(o.ci_low) and "needs ≥ 2" in o.reason
    assert one(MEAN, [row("x", 3.0)]).verdict == "reproduced"
    assert one(MEAN, [row("x", 0.5)]).verdict == "contradicted"
    assert "one seed" in one(MEAN, [row("x", 3.0)]).reason


def test_verdict_rule_edges():
    up = Claim("u", "", "", "mean", Measure(T, "x"), ">", 0.0)
    down = Claim("d", "", "", "mean", Measure(T, "x"), "<", 0.0)
    within = Claim("w", "", "", "mean", Measure(T, "x"), "within", -0.1, tolerance=0.05)
    assert [verdict(up, lo, hi) for lo, hi in ((0.1, 0.2), (-0.1, 0.2), (-0.2, 0.0), (0.0, 0.0))] == \
        ["reproduced", "inconclusive", "contradicted", "inconclusive"]   # a tie at the null is no reversal
    assert [verdict(down, lo, hi) for lo, hi in ((-0.2, -0.1), (-0.1, 0.1), (0.0, 0.3), (0.0, 0.0), (-0.1, -0.1))] == \
        ["reproduced", "inconclusive", "contradicted", "inconclusive", "reproduced"]
    assert verdict(up, -0.1, -0.1) == "contradicted"           # a single value beyond the null still is
    assert [verdict(within, lo, hi) for lo, hi in ((-0.12, -0.08), (-0.2, -0.1), (0.0, 0.1), (-0.3, -0.2))] == \
        ["reproduced", "inconclusive", "contradicted", "contradicted"]
    for c in (up, down, within):       # the rule is written out, with its threshold
        assert c.rule_text().startswith("reproduced if the 95% Student-t CI") and "0" in c.direction_text()
        assert "the paper's" in c.rule_text() and "weaker" not in c.rule_text()


def test_weaker_than_claimed_needs_ncbench_threshold_beyond_the_papers_null():
    """`x > 1` (ncbench's 10×) with the paper's null 0: an interval in (0, 1] is the right direction but
    weaker than claimed; straddling 1 is undecided; at or below 0 contradicts; above 1 reproduces."""
    ten = Claim("t", "", "", "mean", Measure(T, "x"), ">", 1.0, null=0.0, threshold_source="ncbench")
    fall = Claim("f", "", "", "mean", Measure(T, "x"), "<", -1.0, null=0.0, threshold_source="ncbench")
    cases = ((1.2, 1.5), (0.3, 0.9), (0.3, 1.3), (-0.4, 0.3), (-0.5, 0.0))
    assert [verdict(ten, lo, hi) for lo, hi in cases] == \
        ["reproduced", "weaker than claimed", "inconclusive", "inconclusive", "contradicted"]
    assert [verdict(fall, -hi, -lo) for lo, hi in cases] == [verdict(ten, lo, hi) for lo, hi in cases]
    assert "weaker than claimed if it lies above 0 but at or below 1" in ten.rule_text()
    assert "ncbench's" in ten.rule_text()
    # on values: the direction holds in every seed (5×, 4×, 6×) but not the 10×
    o = one(Claim("d", "", "", "mean", Measure(T, "drop"), ">", 1.0, transform="log10", null=0.0,
                  threshold_source="ncbench"), [row("drop", v, s) for s, v in enumerate([5.0, 4.0, 6.0])])
    assert o.verdict == "weaker than claimed" and 0 < o.ci_low and o.ci_high < 1
    with pytest.raises(ValueError, match="threshold_source='ncbench'"):
        Claim("x", "", "", "mean", Measure(T, "x"), ">", 1.0, null=0.0)
    with pytest.raises(ValueError, match="other side"):
        Claim("x", "", "", "mean", Measure(T, "x"), ">", 1.0, null=2.0, threshold_source="ncbench")


def test_within_rule_on_values():
    c = Claim("w", "", "", "mean", Measure(T, "cos"), "within", -1 / 9, tolerance=0.05)
    assert one(c, [row("cos", v, s) for s, v in enumerate([-0.11, -0.12, -0.10])]).verdict == "reproduced"
    assert one(c, [row("cos", v, s) for s, v in enumerate([0.4, 0.5, 0.45])]).verdict == "contradicted"


def test_log10_transform_and_non_positive_values():
    c = Claim("l", "", "", "mean", Measure(T, "drop"), ">", 1.0, transform="log10")
    o = one(c, [row("drop", v, s) for s, v in enumerate([100.0, 1000.0, 300.0])])
    ref = stats.t.interval(0.95, 2, loc=np.mean(np.log10([100, 1000, 300])),
                           scale=stats.sem(np.log10([100, 1000, 300])))
    assert (o.ci_low, o.ci_high) == pytest.approx(ref) and o.verdict == "reproduced"
    o = one(c, [row("drop", v, s) for s, v in enumerate([0.0, -1.0])])
    assert o.verdict == "inconclusive" and "log10 needs values > 0" in o.reason


# -- inputs -----------------------------------------------------------------------------------------

def test_missing_inputs_are_inconclusive_with_a_reason_never_an_error():
    rows = paired_rows([0.7, 0.8], [0.6, 0.6])
    gone = Claim("g", "", "", "mean", Measure("absent_task", "x"), ">", 0.0)
    wrong_variant = Claim("v", "", "", "mean", Measure(T, "acc", "arm=c"), ">", 0.0)
    wrong_metric = Claim("w", "", "", "mean", Measure(T, "nope"), ">", 0.0)
    g, v, w = evaluate_claims(frame(rows), [gone, wrong_variant, wrong_metric])
    assert all(o.verdict == "inconclusive" and math.isnan(o.value) and o.n_seeds == 0 for o in (g, v, w))
    assert "no results of task 'absent_task'" in g.reason and T in g.reason
    assert "'arm=a'" in v.reason and "'arm=b'" in v.reason
    assert "no such metric" in w.reason
    nan = one(MEAN, [row("x", math.nan, 0), row("x", math.nan, 1)])
    assert nan.verdict == "inconclusive" and "no finite value" in nan.reason
    dup = one(MEAN, [row("x", 2.0, 0), row("x", 3.0, 0)])
    assert dup.verdict == "inconclusive" and "duplicate" in dup.reason


def test_runs_not_ok_are_left_out_and_named():
    rows = paired_rows([0.7, 0.72, 0.71], [0.6, 0.61, 0.6])
    rows += [row("acc", 0.0, 3, "arm=a", status="diverged", reason="loss became non-finite at epoch 2"),
             row("acc", 0.9, 3, "arm=b")]
    o = one(PAIRED, rows)
    assert o.n_seeds == 3 and 3 not in o.per_seed and o.verdict == "reproduced"
    assert "seed 3: diverged (loss became non-finite at epoch 2)" in o.reason
    everything_failed = [row("x", 5.0, s, status="failed", reason="train accuracy 0.1") for s in range(3)]
    o = one(MEAN, everything_failed)
    assert o.verdict == "inconclusive" and "failed (train accuracy 0.1)" in o.reason


def test_variant_matching_is_order_free_and_numeric():
    assert variant_matches("classifier=etf,ratio=100", {"ratio": "100", "classifier": "etf"})
    assert variant_matches("weight_decay=0.0005", {"weight_decay": "5e-4"})
    assert variant_matches("ratio=100.0", {"ratio": "100"})
    assert not variant_matches("ratio=10", {"ratio": "100"})
    assert not variant_matches("ratio=100,classifier=etf", {"ratio": "100"})
    assert not variant_matches("", {"ratio": "100"}) and variant_matches("", {})
    assert not variant_matches("broken", {})


def test_split_choice_and_epoch_change():
    rows = [row("acc", 0.1, 0, split="target"), row("acc", 0.9, 0, split="summary")]
    assert one(Claim("s", "", "", "mean", Measure(T, "acc"), ">", 0.5), rows).value == 0.9
    assert one(Claim("s", "", "", "mean", Measure(T, "acc", split="target"), ">", 0.5), rows).value == 0.1
    several = [row("acc", 0.1, 0, split="a"), row("acc", 0.2, 0, split="b")]
    assert "several splits" in one(Claim("s", "", "", "mean", Measure(T, "acc"), ">", 0), several).reason
    falls = Claim("e", "", "", "epoch_change", Measure(T, "depth", split="train"), "<", 0.0)
    depth = {0: [math.nan, 7, 5, 3], 1: [math.nan, math.nan, 6, 4], 2: [8, 8, 6, 5]}   # NaN: no layer qualifies
    rows = [row("depth", v, s, split="train", epoch=e) for s, vs in depth.items() for e, v in enumerate(vs)]
    o = one(falls, rows)
    assert o.per_seed == {0: -4.0, 1: -2.0, 2: -3.0} and o.verdict == "reproduced"


def test_spearman_over_a_sweep():
    grows = Claim("r", "", "", "spearman", Measure(T, "threshold_ratio"), ">", 0.9, sweep_key="E_H", min_seeds=1)
    rows = [row("threshold_ratio", t, 0, f"E_H={e}") for e, t in ((1, 3.0), (2, 5.0), (5, 20.0), (10, 90.0))]
    o = one(grows, rows)
    assert o.value == pytest.approx(1.0) and o.verdict == "reproduced" and o.n_seeds == 1
    again = one(grows, rows + [{**r, "seed": 1} for r in rows])     # an exact solver: seeds agree, value decides
    assert again.verdict == "reproduced" and again.n_seeds == 2 and "all 2 seeds give 1" in again.reason
    rows[1]["value"] = 100.0
    assert one(grows, rows).value == pytest.approx(stats.spearmanr([1, 2, 5, 10], [3, 100, 20, 90]).statistic)
    assert one(grows, rows).verdict == "contradicted"
    assert "Spearman ρ needs ≥ 3" in one(grows, rows[:2]).reason
    losses = Claim("k", "", "", "spearman", Measure(T, "acc"), ">", 0.0, sweep_key="loss", x_metric="nc1")
    data = {"ce": (0.02, 0.60), "ls": (0.01, 0.55), "mse": (0.05, 0.70), "focal": (0.03, 0.66)}
    rows = [row(m, v + 0.001 * s, s, f"loss={loss}") for s in range(3) for loss, (nc1, acc) in data.items()
            for m, v in (("nc1", nc1), ("acc", acc))]
    o = one(losses, rows)       # ρ = 1 in every seed: identical seeds get the sign test, not a zero-width t
    assert o.per_seed == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0}) and o.verdict == "inconclusive"
    assert o.interval.startswith("sign test: 3 of 3 seeds above 0") and "needs ≥ 6 seeds" in o.interval
    rows = [row(m, v + 0.001 * s, s, f"loss={loss}") for s in range(6) for loss, (nc1, acc) in data.items()
            for m, v in (("nc1", nc1), ("acc", acc))]
    o = one(losses, rows)
    assert o.verdict == "reproduced" and o.ci_low == o.ci_high == 1.0 and "exact interval" in o.interval


def test_claim_declarations_are_checked():
    with pytest.raises(ValueError, match="second arm b"):
        Claim("x", "", "", "paired_difference", Measure(T, "a"), ">")
    with pytest.raises(ValueError, match="kind"):
        Claim("x", "", "", "median", Measure(T, "a"), ">")
    with pytest.raises(ValueError, match="tolerance"):
        Claim("x", "", "", "mean", Measure(T, "a"), "within")
    with pytest.raises(ValueError, match="unique"):
        evaluate_claims(frame([]), [MEAN, MEAN])
    with pytest.raises(ValueError, match="lack the column"):
        evaluate_claims(pd.DataFrame({"task": [T]}), [MEAN])


# -- the catalog on a whole run folder -------------------------------------------------------------

def catalog_rows(seeds=(0, 1, 2), depth_seeds=(0, 1, 2, 3, 4, 5)) -> dict[str, list[dict]]:
    """Per task, long rows in which every claim of the catalog holds and every precondition too (by
    construction, with noise); the NCC-depth task has six seeds (its sign test needs them), the theory
    checks one."""
    rng = np.random.default_rng(0)
    def n() -> float:
        return float(rng.normal(0, 0.01))

    out: dict[str, list[dict]] = {}

    def add(task, metric, value, seed, variant="", split="summary", epoch=20, layer=None, n_samples=None):
        out.setdefault(task, []).append({"split": split, "epoch": epoch, "layer": layer, "variant": variant,
                                         "metric": metric, "value": value, "seed": seed, "status": "ok",
                                         "n_samples": n_samples})

    for s in seeds:
        # terminal phase from epoch 8 of 20 (train accuracy 1), lr there 0.65 of its peak; NC1 falls 100×,
        # NC2 and NC3 10×; strong test NC1 nearly flat late while train NC1 keeps falling
        add(T_TERMINAL, "terminal_phase_fraction", 13 / 20, s)
        add(T_TERMINAL, "terminal_phase_decay_budget", 0.25, s)
        add(T_TERMINAL, "terminal_phase_epoch", 8.0, s)
        add(T_TERMINAL, "terminal_phase_reached", 1.0, s)
        add(T_TERMINAL, "train_accuracy", 1.0, s)
        add(T_TERMINAL, "nc4", 0.002 + abs(n()) / 10, s)
        for e in range(1, 21):
            add(T_TERMINAL, "lr", 0.1 * (1 - (e - 1) / 20), s, split="fit", epoch=e)
            late = max(e - 8, 0) / 12
            for task in (T_TERMINAL, "test_collapse_terminal_mnist5k"):
                add(task, "accuracy", 1.0 if e >= 8 else 0.9, s, split="train", epoch=e)
                add(task, "nc1", 10 ** (-2 * late + n()), s, split="train", epoch=e)
            add(T_TERMINAL, "etf_error_h", 10 ** (-late + n()), s, split="train", epoch=e)
            add(T_TERMINAL, "nc3", 10 ** (-late + n()), s, split="train", epoch=e)
            add("test_collapse_terminal_mnist5k", "nc1", 10 ** (-0.1 * late + n() / 10), s, split="test_strong",
                epoch=e)
        add("test_collapse_terminal_mnist5k", "test_accuracy", 0.98, s)
        for layer in range(5):                                  # collapse grows with depth
            add("ncc_depth_terminal_mnist5k", "nc1", 10 ** (1 - layer / 2 + n()), s, split="train", layer=layer)
            add("ncc_depth_terminal_mnist5k", "cdnv", 2 - layer / 3 + n(), s, split="train", layer=layer)
        add("random_labels_fit_mnist5k", "nc1", 0.01 * (1 + n()), s, "labels=random")
        for labels in ("random", "true"):
            add("random_labels_fit_mnist5k", "train_accuracy", 1.0, s, f"labels={labels}")
        add("ncc_depth_random_labels_mnist5k", "last_layer_test_ncc_acc", 0.1 + n(), s, "labels=random")
        add("ncc_depth_random_labels_mnist5k", "random_labels_depth_gain", 0.3 + n(), s)
        add("fewshot_fixed_total_mnist5k", "fixed_total_gain_5shot", 0.05 + n(), s)
        for S in (2, 5):
            add("fewshot_fixed_total_mnist5k", "accuracy", 0.99, s, f"source_classes={S}", split="source_train",
                n_samples=800)
        # five losses: the more collapse (lower NC1), the worse the probe and the better the source accuracy
        for i, (loss, nc1) in enumerate((("label_smoothing_0.3", 0.005), ("label_smoothing", 0.01), ("ce", 0.02),
                                         ("squentropy", 0.025), ("mse", 0.03))):
            add("transfer_losses_mnist5k", "source_nc1", nc1 * (1 + n()), s, f"loss={loss}")
            add("transfer_losses_mnist5k", "target_linear_probe_acc", 0.8 + 0.02 * i + n() / 10, s, f"loss={loss}")
            add("transfer_losses_mnist5k", "source_test_accuracy", 0.998 - 0.002 * i, s, f"loss={loss}")
            add("transfer_losses_mnist5k", "source_train_accuracy", 1.0, s, f"loss={loss}")
        for i, point in enumerate(REPRESENTATION_POINTS):       # ordered by falling accuracy, rising CDNV
            add("cdnv_representations_mnist5k", "ncc_acc_5shot", 0.9 - 0.1 * i + n() / 10, s, point)
            add("cdnv_representations_mnist5k", "target_cdnv", 0.5 + 0.5 * i + n(), s, point)
        add("cdnv_representations_mnist5k", "ncc_error_bound_capped_5shot", 0.6 + n(), s, "epochs=12")
        add("cdnv_representations_mnist5k", "ncc_error_bound_vacuous_5shot", 0.0, s, "epochs=12")
        add("cdnv_representations_mnist5k", "ncc_error_5shot", 0.3 + n(), s, "epochs=12")
        for v in ("", "baseline=random_init"):
            add("cdnv_bound_terminal_mnist5k", "bound_holds_fraction_nonvacuous", 0.99 + n() / 5, s, v)
            add("cdnv_bound_terminal_mnist5k", "bound_vacuous_fraction", 0.2, s, v)
        add("minority_fitted_mnist5k", "etf_dr_minority_gain", 0.1 + n(), s, "ratio=10")
        add("minority_fitted_mnist5k", "etf_minority_gain", 0.08 + n(), s, "ratio=10")
        for arm in ("learnable", "etf", "etf_dr"):
            add("minority_fitted_mnist5k", "minority_accuracy", 1.0, s, f"ratio=10,classifier={arm}", split="train")
        add("weight_decay_fit_mnist5k", "nc1", 0.01 * (1 + n()), s, "weight_decay=0.0005")
        add("weight_decay_fit_mnist5k", "nc1", 0.2 * (1 + n()), s, "weight_decay=0")
        for wd in ("0.0005", "0"):
            add("weight_decay_fit_mnist5k", "train_accuracy", 1.0, s, f"weight_decay={wd}")
        for R, cos_learn in ((1, -0.11), (100, 0.6)):
            v = f"ratio={R}"
            add("minority_arch_mnist5k", "minority_classifier_cosine", cos_learn + n(), s, v + ",classifier=learnable")
            add("minority_arch_mnist5k", "minority_feature_cosine", -1 / 9 + n(), s, v + ",classifier=etf")
            add("minority_arch_exp_mnist5k", "minority_classifier_cosine", cos_learn / 2 + n(), s,
                v + ",classifier=learnable")
    for s in depth_seeds:
        for e, d in enumerate((4, 3, 2)):
            add("ncc_depth_terminal_mnist5k", "ncc_depth", d, s, split="train", epoch=e)
        if s not in seeds:                      # the depth claim's precondition reads the training's fit
            add(T_TERMINAL, "train_accuracy", 1.0, s)
    for e_h, t in ((1, 2.0), (2, 4.0), (5, 11.0), (10, 30.0)):
        add("lpm_minority_curve", "threshold_ratio", t, 0, f"E_H={e_h}")
    add("ufm_ce_balanced", "etf_error_h", 3.3e-5, 0, epoch=3000)
    add("ufm_mse_snc", "snc2", 5e-4, 0, epoch=3000)
    return out


def write_run(root, per_task, model="test_resnet") -> object:
    for task, rows in per_task.items():
        context = {"run_id": "r", "task": task, "task_version": 1, "model": model, "dataset": "mnist5k"}
        write_long_csv(root / task / "results.csv", rows, context)
    return root


def test_every_catalog_claim_reproduced_on_a_run_built_to_satisfy_it(tmp_path):
    card_path, detail_path = write_scorecard(write_run(tmp_path / "run", catalog_rows()))
    card = pd.read_csv(card_path, keep_default_na=False)
    detail = pd.read_csv(detail_path, keep_default_na=False)
    assert tuple(card.columns) == SCORECARD_COLUMNS and tuple(detail.columns) == DETAIL_COLUMNS
    assert card["value"].dtype == float and card["n_seeds"].dtype == int
    assert list(card.claim_id) == [c.claim_id for c in CLAIMS] and len(CLAIMS) >= 20
    not_ok = card[card.verdict != "reproduced"]
    assert not_ok.empty, card.set_index("claim_id").loc[not_ok.claim_id, "reason"].to_dict()
    seeds = card.set_index("claim_id").n_seeds
    theory = [c.claim_id for c in CLAIMS if c.evidence == "theory"]
    assert sorted(theory) == ["lpm_threshold_grows_with_eh", "ufm_ce_reaches_etf", "ufm_mse_strong_collapse"]
    assert all(seeds.pop(t) == 1 for t in theory) and seeds.pop("ncc_depth_falls_in_training") == 6
    assert (seeds == 3).all() and (card.model == "test_resnet").all() and (card.architectures == "test_resnet").all()
    assert card.set_index("claim_id").loc["lpm_threshold_grows_with_eh", "reason"].startswith("one seed")
    assert set(card.threshold_source) == {"paper", "ncbench"}
    held = card.set_index("claim_id").preconditions_held
    assert held["nc1_falls_terminal_phase"] == "yes" and held["minority_cosine_rises_learnable"] == ""
    # the detail: one row per (claim, model, seed), with the preconditions' values
    assert len(detail) == 3 * (len(CLAIMS) - 4) + 3 + 6 and (detail.used == "yes").all()
    d = detail[detail.claim_id == "nc1_falls_terminal_phase"]
    assert list(d.seed) == [0, 1, 2] and (d.preconditions_held == "yes").all()
    assert (d.preconditions == "long_terminal_phase: 0.65 (held); lr_moves_weights: 0.65 (held); "
                               "decay_budget: 0.25 (held)").all()


def test_a_groups_member_folders_are_not_read_twice(tmp_path):
    """A group's results.csv holds its members' rows; the copies under `_members/` (and the shared
    `_trajectories`) must not count again (the first real claims run read every row twice)."""
    run = write_run(tmp_path / "run", catalog_rows())
    for task in (T_TERMINAL, "transfer_losses_mnist5k"):
        member = run / task / "_members" / "seed=0"
        member.mkdir(parents=True)
        (member / "results.csv").write_bytes((run / task / "results.csv").read_bytes())
    card = pd.read_csv(write_scorecard(run)[0])
    assert (card.verdict == "reproduced").all(), card.verdict.tolist()


def test_catalog_verdicts_follow_the_data_one_seed_and_an_empty_folder(tmp_path):
    rows = catalog_rows()
    for r in rows["minority_fitted_mnist5k"]:       # ETF + dot regression now hurts the minority classes
        if r["metric"] == "etf_dr_minority_gain":
            r["value"] -= 0.5
    del rows["lpm_minority_curve"]
    card = pd.read_csv(write_scorecard(write_run(tmp_path / "a", rows))[0]).set_index("claim_id")
    assert card.loc["etf_dr_improves_minority_accuracy", "verdict"] == "contradicted"
    assert card.loc["lpm_threshold_grows_with_eh", "verdict"] == "inconclusive"
    assert (card.verdict == "reproduced").sum() == len(CLAIMS) - 2

    single = write_run(tmp_path / "b", catalog_rows(seeds=(0,), depth_seeds=(0,)))
    card = pd.read_csv(write_scorecard(single)[0]).set_index("claim_id")
    thresholds = {c.claim_id for c in CLAIMS if c.seeds_needed == 1}
    assert (card.loc[sorted(thresholds), "verdict"] == "reproduced").all()
    assert (card.drop(index=sorted(thresholds)).verdict == "inconclusive").all()

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "bad").mkdir()
    (tmp_path / "empty" / "bad" / "results.csv").write_text("a,b\n1,2\n")
    card_path, detail_path = write_scorecard(tmp_path / "empty")
    card, detail = pd.read_csv(card_path), pd.read_csv(detail_path, keep_default_na=False)
    assert (card.verdict == "inconclusive").all() and card.value.isna().all() and detail.empty
    assert card.reason.str.contains("no results of task").all()
    assert card.reason.str.contains("bad/results.csv skipped").all()


def test_markdown_table_and_catalog_listing(tmp_path):
    card_path, detail_path = write_scorecard(write_run(tmp_path / "run", catalog_rows()))
    card, detail = pd.read_csv(card_path), pd.read_csv(detail_path, keep_default_na=False)
    card.loc[0, "claim"] = "a | b"
    card.loc[1, ["verdict", "reason"]] = ["not applicable", "precondition long_terminal_phase failed"]
    md = scorecard_markdown(card, detail)
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(card) and lines[0].count("|") == 9
    assert all(line.replace("\\|", "").count("|") == 9 for line in lines)
    assert "a \\| b" in lines[2] and "**reproduced**" in lines[2] and "test_resnet" in lines[2]
    assert "**not applicable**<br>precondition long_terminal_phase failed" in lines[3]
    assert "(ncbench's)" in md and "*theory check*" in md
    cat = catalog_table()
    assert list(cat.columns) == ["claim_id", "claim", "source", "evidence", "statistic", "direction",
                                 "threshold_source", "preconditions", "rule"]
    assert len(cat) == len(CLAIMS) and cat.rule.str.startswith("reproduced if").all()


def test_module_command_line(tmp_path):
    run = write_run(tmp_path / "run", catalog_rows())
    md = tmp_path / "card.md"
    cmd = [sys.executable, "-m", "ncbench.claims", str(run), "--markdown", str(md)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert p.returncode == 0 and (f"{len(CLAIMS)} reproduced, 0 contradicted, 0 weaker than claimed, "
                                  "0 inconclusive, 0 not applicable") in p.stdout, p.stderr
    assert md.read_text().startswith("| claim |")
    p = subprocess.run([sys.executable, "-m", "ncbench.claims", str(tmp_path / "nope")], capture_output=True,
                       text=True, check=False)
    assert p.returncode == 2 and "not found" in p.stderr and "Traceback" not in p.stderr


def test_only_the_runs_a_claim_reads_are_named_as_left_out():
    rows = paired_rows([0.7, 0.72, 0.71], [0.6, 0.61, 0.6])
    rows.append(row("acc", 0.0, 0, "arm=z", status="failed", reason="chance accuracy"))
    o = one(PAIRED, rows)
    assert o.verdict == "reproduced" and o.excluded == [] and "left out" not in o.reason
    grows = Claim("r", "", "", "spearman", Measure(T, "t"), ">", 0.9, sweep_key="E_H", min_seeds=1)
    pts = [row("t", v, 0, f"E_H={e}") for e, v in ((1, 1.0), (2, 2.0), (5, 3.0))]
    pts.append(row("t", 0.0, 0, "E_H=10", status="diverged", reason="objective became non-finite"))
    o = one(grows, pts)
    assert o.verdict == "reproduced" and o.value == pytest.approx(1.0)
    assert o.excluded == ["toy_task [E_H=10] seed 0: diverged (objective became non-finite)"]


# -- preconditions -----------------------------------------------------------------------------------

def _break(rows: dict, p: Precondition, seed: int) -> None:
    """Make precondition `p` fail in `seed` of the catalog rows (the value just past its level)."""
    m = p.measure
    if p.statistic == "sweep_range":      # one point of the sweep moved away from the others
        hit = [r for r in rows[m.task] if r["seed"] == seed and r["metric"] == m.metric]
        hit[0]["value"] -= p.level + 0.01
        return
    hit = [r for r in rows[m.task] if r["seed"] == seed and r["metric"] == m.metric
           and variant_matches(r["variant"], dict(kv.split("=") for kv in m.variant.split(",") if kv))
           and (m.split is None or r["split"] == m.split)]
    assert hit, p.name
    if p.statistic == "abs_difference":   # the first arm measured on more images than the other
        for r in hit:
            r[m.column] += p.level + 1
        return
    if p.statistic == "relative_lr_at_terminal_phase":     # lr at the terminal epoch 8: 1% of the peak
        for r in hit:
            r["value"] = 0.001 if r["epoch"] == 8 else r["value"]
        return
    for r in hit:
        r["value"] = p.level - 0.01 if p.op in (">=", ">") else p.level + 0.01


PRECONDITIONS = {(c.claim_id, p.name): p for c in CLAIMS for p in c.preconditions}


@pytest.mark.parametrize("claim_id,name", sorted(PRECONDITIONS))
def test_each_precondition_holds_on_the_built_run_and_fails_when_broken(tmp_path, claim_id, name):
    """Every catalog precondition: held on the run built to satisfy the catalog (the claim reproduced),
    then broken in seed 1 only: the claim is not applicable, the reason names the precondition and the
    seed's value, the detail marks that seed, and the value with its interval is still shown."""
    rows = catalog_rows()
    claim = next(c for c in CLAIMS if c.claim_id == claim_id)
    (good,) = evaluate_claims(pd.concat([pd.DataFrame(r).assign(task=t) for t, r in rows.items()]), [claim])
    assert good.verdict == "reproduced" and good.preconditions_held() == "yes"
    assert all(held for _, held in good.checks[name].values())
    _break(rows, PRECONDITIONS[(claim_id, name)], seed=1)
    card_path, detail_path = write_scorecard(write_run(tmp_path / "run", rows), claims=[claim])
    card = pd.read_csv(card_path, keep_default_na=False).iloc[0]
    detail = pd.read_csv(detail_path, keep_default_na=False)
    assert card.verdict == "not applicable" and card.preconditions_held == f"no: {name}"
    assert f"precondition {name} failed" in card.reason and "seed 1:" in card.reason
    assert card.value != "" and card.ci_low != ""
    assert len(detail) >= 3 and (detail.used == "no").all()
    assert list(detail.preconditions_held) == ["no" if s == "1" else "yes" for s in detail.seed.astype(str)]
    assert f"{name}: " in detail.preconditions[1] and "(failed)" in detail.preconditions[1]


def test_a_precondition_that_cannot_be_checked_makes_the_claim_inconclusive():
    p = Precondition("fitted", "the network fits", Measure(T, "train_accuracy"), ">=", 0.99)
    c = Claim("c", "", "", "mean", Measure(T, "x"), ">", 1.0, preconditions=(p,))
    assert one(replace(c, preconditions=()), [row("x", 3.0 + s, s) for s in range(3)]).verdict == "reproduced"
    o = one(c, [row("x", 3.0 + s, s) for s in range(3)])
    assert o.verdict == "inconclusive" and o.preconditions_held() == "unchecked"
    assert "precondition fitted cannot be checked" in o.reason and "no such metric" in o.reason
    # a terminal phase never reached: the relative learning rate at its start counts as 0 (fails)
    never = Precondition("lr", "", Measure(T, "lr", split="fit"), ">=", 0.1, statistic="relative_lr_at_terminal_phase")
    rows = [row("terminal_phase_epoch", math.nan, 0), row("lr", 0.1, 0, split="fit", epoch=1)]
    assert never.check(Reader(prepare_rows(frame(rows)))) == {0: (0.0, False)}
    with pytest.raises(ValueError, match="op"):
        Precondition("x", "", Measure(T, "a"), "=>", 1.0)


# -- intervals that fit the statistic ------------------------------------------------------------------

def test_a_correlation_gets_a_bounded_fisher_z_interval():
    rhos = [0.95, 0.6, 0.99]
    c = Claim("r", "", "", "mean", Measure(T, "rho"), ">", 0.0, interval="fisher_z")
    o = one(c, [row("rho", v, s) for s, v in enumerate(rhos)])
    z = np.arctanh(rhos)
    ref = np.tanh(stats.t.interval(0.95, 2, loc=z.mean(), scale=stats.sem(z)))
    assert (o.ci_low, o.ci_high) == pytest.approx(tuple(ref), rel=1e-10) and o.value == pytest.approx(np.mean(rhos))
    plain = stats.t.interval(0.95, 2, loc=np.mean(rhos), scale=stats.sem(rhos))
    assert plain[1] > 1 and -1 < o.ci_low < o.ci_high < 1 and "Fisher-z" in o.interval
    assert o.ci_low < 0 and o.verdict == "inconclusive"     # three seeds this spread in z do not settle it
    # a spearman claim gets it by default, and a bounded fraction's t-interval is clipped to its range
    assert Claim("s", "", "", "spearman", Measure(T, "a"), ">", 0.0, sweep_key="k").interval_method == "fisher_z"
    frac = Claim("f", "", "", "mean", Measure(T, "h"), ">", 0.95, bounds=(0.0, 1.0))
    o = one(frac, [row("h", v, s) for s, v in enumerate([1.0, 0.2, 0.0])])
    assert (o.ci_low, o.ci_high) == (0.0, 1.0) and "clipped to [0, 1]" in o.interval


def _coverage(n: int, k: int) -> float:
    """P(k ≤ B ≤ n − k), B ~ Bin(n, ½): the coverage of [x_(k), x_(n+1−k)] for the median."""
    return sum(math.comb(n, j) for j in range(k, n - k + 1)) / 2 ** n


def test_identical_seeds_get_the_sign_test_and_its_exact_interval():
    down = Claim("d", "", "", "epoch_change", Measure(T, "depth", split="train"), "<", 0.0)
    rows = [row("depth", v, s, split="train", epoch=e) for s in range(3) for e, v in enumerate((5, 3))]
    o = one(down, rows)                  # −2 in every seed: no zero-width t-interval
    assert o.per_seed == {0: -2.0, 1: -2.0, 2: -2.0} and math.isnan(o.ci_low) and o.verdict == "inconclusive"
    assert f"3 of 3 seeds below 0, one-sided exact p = {0.5 ** 3:.3g}" in o.interval and "≥ 6" in o.reason
    rows = [row("depth", v, s, split="train", epoch=e) for s in range(6) for e, v in enumerate((5, 3))]
    o = one(down, rows)
    assert (o.ci_low, o.ci_high) == (-2.0, -2.0) and o.verdict == "reproduced"
    assert f"coverage {_coverage(6, 1):.3f}" in o.interval and _coverage(5, 1) < 0.95 <= _coverage(6, 1)
    # a declared sign test on ten varied seeds: the widest k with coverage ≥ 95% (by the binomial sums)
    sign = Claim("s", "", "", "mean", Measure(T, "x"), ">", 0.0, interval="sign")
    vals = [0.3, -0.1, 0.5, 0.2, 0.9, 0.4, 0.1, 0.6, 0.7, 0.8]
    iv = claim_interval(sign, vals)
    k = max(k for k in range(1, 6) if _coverage(10, k) >= 0.95)
    assert (iv.low, iv.high) == (sorted(vals)[k - 1], sorted(vals)[10 - k]) and iv.value == np.median(vals)
    m = 9
    assert f"{m} of 10 seeds above 0, one-sided exact p = {sum(math.comb(10, j) for j in range(m, 11)) / 1024:.3g}" \
        in iv.text
    assert sign.seeds_needed == 6 and one(sign, [row("x", 1.0 + s, s) for s in range(3)]).verdict == "inconclusive"


# -- per model and pooled ----------------------------------------------------------------------------

def test_a_verdict_per_architecture_and_pooled(tmp_path):
    """Two models in one folder: a row per model and a pooled row over the (model, seed) units; a model
    whose precondition fails is not applicable and left out of the pool."""
    a, b = catalog_rows(), catalog_rows()
    _break(b, PRECONDITIONS[("nc1_falls_terminal_phase", "long_terminal_phase")], seed=0)
    write_run(tmp_path / "run" / "a", a, model="test_resnet")
    write_run(tmp_path / "run" / "b", b, model="test_byobnet")
    card_path, detail_path = write_scorecard(tmp_path / "run")
    card = pd.read_csv(card_path, keep_default_na=False)
    detail = pd.read_csv(detail_path, keep_default_na=False)
    assert len(card) == 3 * len(CLAIMS)
    nc1 = card[card.claim_id == "nc1_falls_terminal_phase"].set_index("model")
    assert list(nc1.index) == ["test_byobnet", "test_resnet", "pooled"]
    assert nc1.loc["test_byobnet", "verdict"] == "not applicable" and nc1.loc["test_resnet", "verdict"] == "reproduced"
    assert nc1.loc["pooled", "architectures"] == "test_resnet" and nc1.loc["pooled", "n_seeds"] == 3
    assert "left out: test_byobnet (not applicable)" in nc1.loc["pooled", "reason"]
    wd = card[card.claim_id == "weight_decay_deepens_collapse"].set_index("model")
    assert wd.loc["pooled", "architectures"] == "test_byobnet test_resnet" and wd.loc["pooled", "n_seeds"] == 6
    pooled = [float(v) for m in ("test_byobnet", "test_resnet")
              for v in detail[(detail.claim_id == "weight_decay_deepens_collapse") & (detail.model == m)].value]
    ref = stats.t.interval(0.95, 5, loc=np.mean(pooled), scale=stats.sem(pooled))
    assert (float(wd.loc["pooled", "ci_low"]), float(wd.loc["pooled", "ci_high"])) == pytest.approx(ref)
    assert set(detail.model) == {"test_resnet", "test_byobnet"}


# -- every rule can pass and can fail ------------------------------------------------------------------

def test_every_catalog_rule_can_pass_and_can_fail_with_the_seeds_the_claims_suite_runs():
    from ncbench.specs import load_suite

    _, specs = load_suite("claims")
    seeds = {s.name: len(s.seeds or [s.seed]) for s in specs}
    models = {s.name: len(s.sweep.get("model", [s.model])) for s in specs}
    pooled_only = set()
    for c in CLAIMS:
        n = min(seeds[t] for t in c.tasks())
        units = min(seeds[t] * models[t] for t in c.tasks())     # the pooled verdict: (architecture, seed) units
        can_pass, can_fail, why = rule_feasibility(c, units)
        assert can_pass and can_fail, f"{c.claim_id} with {units} units: {why}"
        if not all(rule_feasibility(c, n)[:2]):
            pooled_only.add(c.claim_id)
    # the sign test needs 6 units: over 3 architectures × 3 seeds only the pooled verdict can be reached
    # (per architecture: inconclusive, "3 seed(s): the rule needs ≥ 6"; docs/claims.md says so)
    assert pooled_only == {"ncc_depth_falls_in_training"}


def test_rules_that_cannot_pass_or_cannot_fail_are_flagged():
    band = Claim("b", "", "", "mean", Measure(T, "cos"), "within", -1 / 9, tolerance=0.05, seed_sd=0.031)
    can_pass, can_fail, why = rule_feasibility(band, 3)
    half = stats.t.ppf(0.975, 2) * 0.031 / math.sqrt(3)       # 0.077: wider than the band
    assert not can_pass and can_fail and f"{half:.3g}" in why
    assert rule_feasibility(band, 20)[0]                       # enough seeds make it passable
    assert not rule_feasibility(Claim("n", "", "", "mean", Measure(T, "c"), "within", 0.0, tolerance=0.1), 3)[0]
    rho = Claim("r", "", "", "spearman", Measure(T, "a"), ">", 1.0, sweep_key="k")
    assert rule_feasibility(rho, 3)[:2] == (False, True)       # ρ > 1 can never pass
    rho_floor = Claim("f", "", "", "spearman", Measure(T, "a"), ">", 0.5, sweep_key="k", null=-1.0,
                      threshold_source="ncbench")
    assert rule_feasibility(rho_floor, 3)[:2] == (True, False)  # ρ ≤ −1 cannot be reached: cannot fail
    sign = Claim("s", "", "", "epoch_change", Measure(T, "d"), "<", 0.0, interval="sign")
    assert rule_feasibility(sign, 3)[:2] == (False, False) and rule_feasibility(sign, 6)[:2] == (True, True)
    assert set(VERDICTS) == {"reproduced", "contradicted", "weaker than claimed", "inconclusive", "not applicable"}


# -- `ncbench claims --model` on a tiny setup ----------------------------------------------------------

def test_claims_for_a_model_on_a_tiny_setup(tmp_path, capsys, one_thread):
    """The claims suite's tasks with the setup overridden (here a two-task suite, test_resnet on digits, two
    epochs, one seed): claims.csv / claims_detail.csv / claims.md in the run folder, the claims of tasks
    that ran are scored on that model (preconditions checked per seed), the others are not applicable
    with the reason; a setup on which no task can run is one line, exit 2."""
    from ncbench.cli import main

    suite = tmp_path / "tiny_claims.yaml"
    suite.write_text("suite: tiny_claims\nseeds: [0]\ntasks:\n  - terminal_phase_mnist5k\n  - lpm_minority_curve\n")
    argv = ["claims", "--suite", str(suite), "--model", "test_resnet", "--dataset", "digits", "--seeds", "0",
            "--set", "recipe.epochs=2", "--out", str(tmp_path / "out"), "--no-progress", "--device", "cpu"]
    main(argv)
    out = capsys.readouterr().out
    (run,) = (tmp_path / "out").iterdir()
    card = pd.read_csv(run / "claims.csv", keep_default_na=False).set_index("claim_id")
    detail = pd.read_csv(run / "claims_detail.csv", keep_default_na=False)
    assert tuple(card.reset_index().columns) == SCORECARD_COLUMNS and len(card) == len(CLAIMS)
    assert f"claims scorecard: {run / 'claims.csv'}" in out
    nc1 = card.loc["nc1_falls_terminal_phase"]
    assert nc1.model == "test_resnet" and nc1.verdict in VERDICTS and nc1.architectures in ("test_resnet", "")
    (csv,) = run.glob("terminal_phase_mnist5k*/results.csv")
    assert "model=" not in csv.read_text()             # --model replaced the spec's architecture axis
    assert nc1.preconditions_held != "" and nc1.preconditions.startswith("long_terminal_phase")
    theory = card.loc["lpm_threshold_grows_with_eh"]
    assert theory.verdict == "reproduced" and theory.evidence == "theory" and theory.n_seeds == 1
    terminal = {c.claim_id for c in CLAIMS if c.tasks() == ["terminal_phase_mnist5k"]}
    assert {"nc1_falls_terminal_phase", "nc2_falls_terminal_phase", "nc3_falls_terminal_phase", "nc4_vanishes"} <= terminal
    assert (card.loc[sorted(terminal), "model"] == "test_resnet").all()
    others = card.drop(index=sorted(terminal | {"lpm_threshold_grows_with_eh"}))
    assert (others.verdict == "not applicable").all()
    assert others.loc["weight_decay_deepens_collapse", "reason"] == \
        f"task weight_decay_fit_mnist5k cannot run on this setup: not a task of the suite '{suite}'"
    assert set(detail.claim_id) <= terminal | {"lpm_threshold_grows_with_eh"}
    assert (run / "claims.md").read_text().startswith("| claim | model |")

    lpm_only = tmp_path / "lpm.yaml"
    lpm_only.write_text("suite: lpm_only\ntasks:\n  - lpm_minority_curve\n")
    assert main(["claims", "--suite", str(lpm_only), "--model-kwargs", "drop_rate=0.1", "--out",
                 str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no task of the suite 'lpm.yaml'" not in err[0] and "can run on this setup" in err[0]
    assert "lpm_minority_curve: --model-kwargs" in err[0]


def test_a_failed_precondition_explains_a_missing_statistic():
    """No terminal phase within the training: the NC1 fall is NaN, and the claim is not applicable because
    the terminal phase is too short (not merely inconclusive for a missing value)."""
    claim = next(c for c in CLAIMS if c.claim_id == "nc1_falls_terminal_phase")
    rows = catalog_rows()
    for r in rows[T_TERMINAL]:
        if r["metric"] == "accuracy":          # train accuracy never reaches 1
            r["value"] = min(r["value"], 0.9)
        if r["metric"] == "terminal_phase_fraction":
            r["value"] = 0.0
    (o,) = evaluate_claims(pd.concat([pd.DataFrame(r).assign(task=t) for t, r in rows.items()]), [claim])
    assert o.verdict == "not applicable" and o.failed == ["long_terminal_phase"]
    assert "precondition long_terminal_phase failed" in o.reason and "no finite value" in o.reason
    assert "needs a terminal phase" in o.reason
    # without a failed precondition (its input absent: unchecked) it stays inconclusive
    rows[T_TERMINAL] = [r for r in rows[T_TERMINAL] if r["metric"] != "terminal_phase_fraction"]
    (o,) = evaluate_claims(pd.concat([pd.DataFrame(r).assign(task=t) for t, r in rows.items()]), [claim])
    assert o.verdict == "inconclusive" and o.checks == {} and "no finite value" in o.reason


def test_seeds_tied_at_the_null_are_inconclusive_and_say_so_while_ties_beyond_it_contradict():
    """A count statistic (an NCC depth difference) can tie exactly: every seed at the null 0 is no
    evidence for either direction; every seed at −1 is the other side."""
    deeper = Claim("d", "", "", "mean", Measure(T, "x"), ">", 0.0, bounds=(-1.0, 1.0))
    tied = one(deeper, [row("x", 0.0, s) for s in range(3)])
    assert tied.verdict == "inconclusive" and "ties at the null 0" in tied.reason
    assert one(deeper, [row("x", -0.25, s) for s in range(3)]).verdict == "contradicted"
    assert one(deeper, [row("x", 0.25, s) for s in range(3)]).verdict == "reproduced"


def test_the_catalog_table_of_the_docs_is_the_catalogs_own(capsys):
    """docs/claims.md's catalog is `python -m ncbench.claims --list --markdown` verbatim: the claims'
    facts live in ncbench/claims/catalog.py only."""
    from ncbench.claims.__main__ import main

    assert main(["--list", "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert printed == catalog_markdown() and printed.count("\n") == len(CLAIMS) + 2
    docs = (Path(__file__).resolve().parents[1] / "docs" / "claims.md").read_text(encoding="utf-8")
    assert printed in docs, "docs/claims.md's catalog is stale: paste `python -m ncbench.claims --list --markdown`"
