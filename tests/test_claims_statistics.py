"""The statistics and preconditions of the issue-28 catalog on hand-made tidy results, each where it holds
and where it fails: the terminal-phase fall (terminal phase read from train accuracy, not epoch numbers),
the late-slope difference (Hui et al.'s stalling test collapse), ρ over blocks (He & Su) and over explicit
representation points, the exact permutation interval of a mean ρ (against an exhaustive enumeration of
every order of every seed), the two new precondition statistics, and the `model=` key of a variant read
as the architecture (a verdict per architecture and pooled)."""
from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ncbench.claims import Claim, Measure, Precondition, evaluate_claims, rule_feasibility
from ncbench.claims.evaluate import Reader, prepare_rows
from ncbench.claims.intervals import claim_interval, permutation_critical_value, spearman_null
from ncbench.claims.verdicts import verdict

T = "toy_task"


def row(metric, value, seed=0, variant="", split="summary", epoch=10, layer="", n_samples=None):
    return {"task": T, "variant": variant, "metric": metric, "value": value, "seed": seed, "split": split,
            "epoch": epoch, "status": "ok", "status_reason": "", "layer": layer, "n_samples": n_samples}


def one(claim, rows):
    (o,) = evaluate_claims(pd.DataFrame(rows), [claim])
    return o


# -- the exact permutation interval of a mean ρ --------------------------------------------------------

def _enumerated_null(m: int, n: int) -> np.ndarray:
    """Every value of the mean Spearman ρ over n seeds of m points, each seed in every one of its m!
    orders (scipy's ρ of each order; (m!)ⁿ equally likely outcomes)."""
    rhos = np.array([stats.spearmanr(range(m), p).statistic for p in itertools.permutations(range(m))])
    total = np.zeros(1)
    for _ in range(n):
        total = np.add.outer(total, rhos).ravel()
    return total / n


@pytest.mark.parametrize("m,n", [(5, 1), (5, 2), (5, 3), (4, 3), (3, 3), (6, 1)])
def test_permutation_critical_value_against_an_exhaustive_enumeration(m, n):
    """c is the tightest one-sided 2.5% critical value: P(ρ̄ > c) ≤ 2.5% < P(ρ̄ ≥ c) over every order."""
    null = _enumerated_null(m, n)
    c = permutation_critical_value([m] * n)
    assert np.isclose(null, c, atol=1e-9).any()                  # an attainable value
    assert (null > c + 1e-9).mean() <= 0.025 < (null > c - 1e-9).mean()
    assert sum(p for _, p in spearman_null(m)) == pytest.approx(1.0)


def test_permutation_interval_of_mixed_point_counts_and_its_verdicts():
    """Units with different numbers of points (pooled architectures with 4 and 5 blocks): the null of the
    mean is the convolution of theirs, checked by enumeration; the interval decides like the exact test."""
    r4 = np.array([stats.spearmanr(range(4), p).statistic for p in itertools.permutations(range(4))])
    r5 = np.array([stats.spearmanr(range(5), p).statistic for p in itertools.permutations(range(5))])
    null = np.add.outer(r4, r5).ravel() / 2
    c = permutation_critical_value([4, 5])
    assert (null > c + 1e-9).mean() <= 0.025 < (null > c - 1e-9).mean()
    up = Claim("r", "", "", "spearman", Measure(T, "a"), ">", 0.0, sweep_key="k", interval="permutation")
    iv = claim_interval(up, [1.0, 1.0], points=[4, 5])
    assert iv.low == pytest.approx(1.0 - c - 1e-9) and iv.high == 1.0 and "exact permutation" in iv.text
    assert verdict(up, iv.low, iv.high) == "reproduced"
    # just at the critical value: not enough (the exact test does not reject), and never outside [−1, 1]
    c5 = permutation_critical_value([5, 5])
    iv = claim_interval(up, [c5, c5], points=[5, 5])
    assert verdict(up, iv.low, iv.high) in ("inconclusive", "contradicted") and -1 <= iv.low < iv.high <= 1
    iv = claim_interval(up, [-1.0, -1.0, -1.0], points=[5, 5, 5])
    assert verdict(up, iv.low, iv.high) == "contradicted" and iv.low == -1.0
    assert not claim_interval(up, [0.5, 0.5]).decided              # points unknown: no verdict


def test_permutation_rule_feasibility_needs_enough_points():
    """One seed of 3 points: ρ = ±1 has null probability 1/6 each, so the rule can neither pass nor fail;
    5 points can both."""
    def rho(points):
        return Claim("r", "", "", "spearman", Measure(T, "a"), ">", 0.0, sweep_key="k", interval="permutation",
                     points_expected=points)
    assert rule_feasibility(replace(rho(3), min_seeds=1), 1)[:2] == (False, False)
    assert rule_feasibility(rho(5), 2)[:2] == (True, True) and rule_feasibility(rho(5), 3)[:2] == (True, True)
    assert rule_feasibility(rho(None), 3)[:2] == (False, False)
    with pytest.raises(ValueError, match="permutation"):
        Claim("x", "", "", "mean", Measure(T, "a"), ">", 0.0, interval="permutation")


# -- the terminal-phase fall (Papyan et al.) ------------------------------------------------------------

FALL = Claim("f", "", "", "terminal_phase_fall", Measure(T, "nc1", split="train"), ">", 1.0, transform="log10",
             null=0.0, threshold_source="ncbench", phase=Measure(T, "accuracy", split="train"))


def terminal_rows(seed, nc1, accuracy):
    return ([row("nc1", v, seed, split="train", epoch=e) for e, v in nc1.items()]
            + [row("accuracy", v, seed, split="train", epoch=e) for e, v in accuracy.items()])


def test_terminal_phase_fall_starts_where_train_accuracy_reaches_one():
    """The fall is read from the first evaluated epoch with train accuracy 1 (here 6 or 4, not an epoch
    number of the recipe) to the last epoch; NC1 before the terminal phase does not count."""
    rows = []
    for s, (t0, f) in enumerate(((6, 200.0), (4, 100.0), (6, 50.0))):
        nc1 = {e: (5.0 if e < t0 else 1.0 if e == t0 else 1.0 / f if e == 10 else 0.5) for e in (2, 4, 6, 8, 10)}
        acc = {e: 1.0 if e >= t0 else 0.95 for e in nc1}
        rows += terminal_rows(s, nc1, acc)
    o = one(FALL, rows)
    assert o.per_seed == pytest.approx({0: math.log10(200), 1: math.log10(100), 2: math.log10(50)})
    assert o.verdict == "reproduced"
    # a fall of 2-5×: the right direction, ncbench's 10× not met
    weak = [r for s, f in enumerate((3.0, 4.0, 5.0))
            for r in terminal_rows(s, {2: 1.0, 4: 1.0 / f}, {2: 1.0, 4: 1.0})]
    assert one(FALL, weak).verdict == "weaker than claimed"
    # NC1 rises in the terminal phase: contradicted
    up = [r for s in range(3) for r in terminal_rows(s, {2: 1.0, 4: 2.0 + s}, {2: 1.0, 4: 1.0})]
    assert one(FALL, up).verdict == "contradicted"
    # never fitted: no terminal phase, no value (inconclusive with the reason)
    never = [r for s in range(3) for r in terminal_rows(s, {2: 1.0, 4: 0.1}, {2: 0.9, 4: 0.99})]
    o = one(FALL, never)
    assert o.verdict == "inconclusive" and "needs a terminal phase" in o.reason


# -- Hui et al.: test collapse stalls -------------------------------------------------------------------

STALL = Claim("s", "", "", "late_slope_difference", Measure(T, "nc1", split="test_strong"), ">", 0.0,
              b=Measure(T, "nc1", split="train"), transform="log10", phase=Measure(T, "accuracy", split="train"))


def stall_rows(seed, train_slope, test_slope, t0=4, last=20):
    """log10 NC1 linear in the epoch from t0 on (slopes per epoch), flat before; train accuracy 1 from t0."""
    out = []
    for e in range(2, last + 1, 2):
        k = max(e - t0, 0)
        out += [row("nc1", 10 ** (train_slope * k), seed, split="train", epoch=e),
                row("nc1", 10 ** (test_slope * k + 0.3), seed, split="test_strong", epoch=e),
                row("accuracy", 1.0 if e >= t0 else 0.9, seed, split="train", epoch=e)]
    return out


def test_late_slope_difference_where_test_collapse_stalls_and_where_it_keeps_pace():
    rows = [r for s, (a, b) in enumerate(((-0.1, -0.01), (-0.12, 0.0), (-0.08, -0.02)))
            for r in stall_rows(s, a, b)]
    o = one(STALL, rows)
    assert o.per_seed == pytest.approx({0: 0.09, 1: 0.12, 2: 0.06}, abs=1e-9)
    assert o.verdict == "reproduced"
    # test NC1 falls as fast as train NC1 (or faster): the claim is contradicted
    rows = [r for s, (a, b) in enumerate(((-0.1, -0.12), (-0.1, -0.13), (-0.05, -0.08)))
            for r in stall_rows(s, a, b)]
    assert one(STALL, rows).verdict == "contradicted"


def test_late_slope_reads_only_the_later_half_of_the_terminal_phase():
    """Before the window (terminal phase from epoch 4 to 20: window from epoch 12) test NC1 falls as fast
    as train; only the later half, where it is flat, counts."""
    rows = []
    for s in range(3):
        for e in range(2, 21, 2):
            k = max(e - 4, 0)
            test = 10 ** (-0.1 * min(k, 8))          # falls with train until epoch 12, flat after
            rows += [row("nc1", 10 ** (-0.1 * k), s, split="train", epoch=e),
                     row("nc1", test, s, split="test_strong", epoch=e),
                     row("accuracy", 1.0 if e >= 4 else 0.9, s, split="train", epoch=e)]
    o = one(STALL, rows)
    assert o.per_seed == pytest.approx({0: 0.1, 1: 0.1, 2: 0.1}, abs=1e-9)


# -- He & Su: ρ over blocks ----------------------------------------------------------------------------

LAYERS = Claim("l", "", "", "layer_spearman", Measure(T, "nc1", split="train"), "<", 0.0, points_expected=5)


def layer_rows(seed, values, epoch=20):
    early = [row("nc1", 1.0, seed, split="train", epoch=2, layer=float(i)) for i in range(len(values))]
    return early + [row("nc1", v, seed, split="train", epoch=epoch, layer=float(i)) for i, v in enumerate(values)]


def test_layer_spearman_per_seed_at_the_last_epoch_with_the_exact_interval():
    """Three seeds of five blocks, NC1 falling with depth in every seed: ρ = −1 each (identical seeds), and
    the exact permutation interval decides (a t interval would have width 0, the sign test 6 seeds)."""
    rows = [r for s in range(3) for r in layer_rows(s, [10.0, 3.0, 1.0, 0.5, 0.1 * (s + 1)])]
    o = one(LAYERS, rows)
    c = permutation_critical_value([5, 5, 5])
    assert o.per_seed == pytest.approx({0: -1.0, 1: -1.0, 2: -1.0}) and o.points == {0: 5, 1: 5, 2: 5}
    assert (o.ci_low, o.ci_high) == pytest.approx((-1.0, -1.0 + c + 1e-9)) and o.verdict == "reproduced"
    # NC1 rising with depth in every seed: contradicted; mixed orders: inconclusive
    rising = [r for s in range(3) for r in layer_rows(s, [0.1, 0.5, 1.0, 3.0, 10.0])]
    assert one(LAYERS, rising).verdict == "contradicted"
    mixed = [r for s, v in enumerate(([1, 3, 2, 5, 4], [5, 1, 4, 2, 3], [2, 4, 1, 3, 5]))
             for r in layer_rows(s, [float(x) for x in v])]
    o = one(LAYERS, mixed)
    assert o.verdict == "inconclusive" and o.ci_low < 0 < o.ci_high
    assert o.per_seed[0] == pytest.approx(stats.spearmanr(range(5), [1, 3, 2, 5, 4]).statistic)


# -- ρ across explicit representation points -----------------------------------------------------------

POINTS = ("epochs=1", "epochs=12", "epochs=12,baseline=random_init", "epochs=12,baseline=raw_pixels", "epochs=4")
REPS = Claim("c", "", "", "spearman", Measure(T, "acc"), "<", 0.0, points=POINTS, x_metric="cdnv",
             interval="permutation", points_expected=5)


def test_spearman_across_representations_including_baselines():
    """The five representations are named points (trained, random init, raw pixels), not one sweep key."""
    rows = []
    for s in range(3):
        for i, p in enumerate(POINTS):
            rows += [row("acc", 0.9 - 0.1 * i, s, p), row("cdnv", 0.5 + 0.3 * i + 0.01 * s, s, p)]
    o = one(REPS, rows)
    assert o.per_seed == pytest.approx({0: -1.0, 1: -1.0, 2: -1.0}) and o.verdict == "reproduced"
    flipped = [dict(r, value=-r["value"]) if r["metric"] == "cdnv" else r for r in rows]
    assert one(REPS, flipped).verdict == "contradicted"
    missing = [r for r in rows if r["variant"] != "epochs=12,baseline=raw_pixels"]
    o = one(REPS, missing)
    assert o.verdict == "inconclusive" and "baseline=raw_pixels" in o.reason


# -- the new preconditions --------------------------------------------------------------------------------

def test_abs_difference_precondition_on_the_images_of_two_arms():
    same = Precondition("same_images", "", Measure(T, "accuracy", "S=5", split="source_train", column="n_samples"),
                        "<=", 0.0, statistic="abs_difference",
                        other=Measure(T, "accuracy", "S=2", split="source_train", column="n_samples"))
    rows = [row("accuracy", 0.99, s, f"S={S}", split="source_train", n_samples=n)
            for s in range(2) for S, n in ((5, 800), (2, 800 if s == 0 else 2000))]
    got = same.check(Reader(prepare_rows(pd.DataFrame(rows))))
    assert got == {0: (0.0, True), 1: (1200.0, False)}
    assert "(n_samples)" in same.rule_text()
    with pytest.raises(ValueError, match="other"):
        Precondition("x", "", Measure(T, "a"), "<=", 0.0, statistic="abs_difference")


def test_sweep_range_precondition_losses_matched_on_accuracy():
    matched = Precondition("matched", "", Measure(T, "acc"), "<=", 0.01, statistic="sweep_range", sweep_key="loss")
    accs = {0: (0.990, 0.995, 0.998), 1: (0.95, 0.99, 0.992)}
    rows = [row("acc", a, s, f"loss={loss}") for s, vals in accs.items() for loss, a in zip(("ce", "mse", "ls"), vals)]
    rows.append(row("acc", 0.5, 0, "loss=ce,other=1"))          # another point of the task, not of this sweep
    got = matched.check(Reader(prepare_rows(pd.DataFrame(rows))))
    assert got[0] == (pytest.approx(0.008), True) and got[1] == (pytest.approx(0.042), False)
    with pytest.raises(ValueError, match="sweep_key"):
        Precondition("x", "", Measure(T, "a"), "<=", 0.0, statistic="sweep_range")


# -- the architecture of a run read from `model=` in its variant -------------------------------------------

def test_model_in_the_variant_gives_a_verdict_per_architecture_and_pooled():
    """One results file of a spec sweeping `model` (variants `model=A,arm=a`): the claim reads `arm=a`
    of each architecture; one row per architecture and a pooled row over the (model, seed) units."""
    claim = Claim("p", "", "", "paired_difference", Measure(T, "acc", "arm=a"), ">", 0.0, b=Measure(T, "acc", "arm=b"))
    rows = []
    for model, gain in (("test_resnet", 0.1), ("test_byobnet", 0.2)):
        for s in range(3):
            rows += [row("acc", 0.7 + gain + 0.01 * s, s, f"model={model},arm=a"),
                     row("acc", 0.7 + 0.02 * s, s, f"arm=b,model={model}")]
    outs = evaluate_claims(pd.DataFrame(rows), [claim])
    by = {o.model: o for o in outs}
    assert list(by) == ["test_byobnet", "test_resnet", "pooled"]
    assert by["test_resnet"].per_seed == pytest.approx({0: 0.1, 1: 0.09, 2: 0.08})
    assert by["test_byobnet"].value == pytest.approx(0.19) and by["pooled"].n_seeds == 6
    assert by["pooled"].models == ("test_byobnet", "test_resnet") and by["pooled"].verdict == "reproduced"
