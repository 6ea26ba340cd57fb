"""The collapse metric engine (SPEC §2–§3) against an independent stored-feature reference.

`reference_nc` recomputes every metric in float64 numpy from all features, by the SPEC's literal
two-pass definitions. Low-precision inputs (fp16/bf16/fp32) are compared against the reference run
on the *same rounded values* cast to float64: the engine upcasts exactly, so the float64 tolerance
(1e-9 relative) applies to every input dtype, tighter than the 1e-4 budget the issue allows.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from reference_nc import collapse_reference, heldout_reference

from ncbench.metrics import (
    SPEC_METRICS,
    CollapseStats,
    HeldoutStats,
    collapse_metrics,
    test_collapse,
)

RTOL = 1e-9
ATOL = 1e-11      # every metric is scale-free (ratios, cosines): values ~1e-16 are "0"
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
EXAMPLES = int(os.environ.get("NCBENCH_HYPOTHESIS_EXAMPLES", "40"))   # raise it for a deep soak
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ---------------------------------------------------------------------------------------------
# data and comparison
# ---------------------------------------------------------------------------------------------
def make_features(seed: int, d: int, sizes: list[int], dtype=torch.float64, offset: float = 0.0,
                  sep: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian classes around random centres (scale `sep`), unit noise, a common `offset`."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), d)) * sep + offset
    y = np.repeat(np.arange(len(sizes)), sizes)
    H = centres[y] + rng.normal(size=(len(y), d))
    return torch.from_numpy(H).to(dtype), torch.from_numpy(y)


def as64(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.to(torch.float64).numpy()


def random_batches(n: int, rng: np.random.Generator, max_batches: int = 6) -> list[np.ndarray]:
    """A random permutation of range(n) cut at random points (empty batches allowed)."""
    cuts = np.sort(rng.integers(0, n + 1, size=int(rng.integers(0, max_batches))))
    return np.split(rng.permutation(n), cuts)


def assert_close(got: dict, want: dict, keys, rtol=RTOL, atol=ATOL, slack: dict | None = None):
    slack = slack or {}
    for k in keys:
        g, w = got[k], want[k]
        if math.isnan(w):
            assert math.isnan(g), f"{k}: engine {g}, reference NaN"
        elif math.isinf(w):
            assert g == w, f"{k}: engine {g}, reference {w}"
        else:
            tol = rtol * abs(w) + atol + slack.get(k, 0.0)
            assert abs(g - w) <= tol, f"{k}: engine {g!r}, reference {w!r}, |diff| {abs(g - w):.3e} > {tol:.3e}"


def tie_slack(ref: dict, n: int) -> dict:
    """NCC / prediction decisions within rounding of a tie may go either way: allow those points.
    NC1 = Tr(Σ_W Σ_B⁺)/K moves by about κ(Σ_B)·ε relative when Σ_B's entries move by ε (two summation
    orders): a nearly singular Σ_B (classes of one sample, nc1 ~ 1e5) gets that much room, no more."""
    if n == 0:
        return {}
    kappa = ref.get("sigma_b_condition", 1.0)
    nc1 = ref.get("nc1", 0.0)
    return {"ncc_acc": ref.get("ncc_ties", 0) / n,
            "nc4": (ref.get("ncc_ties", 0) + ref.get("pred_ties", 0)) / n,
            "nc1": 10 * np.finfo(np.float64).eps * kappa * abs(nc1) if math.isfinite(kappa * nc1) else 0.0}


def stream(H, y, K, rng, weight=None, bias=None, logits=None, dim=None):
    """Pass one and pass two through the engine in independent random batch orders."""
    stats = CollapseStats(K, dim)
    for idx in random_batches(len(y), rng):
        stats.update(H[idx], y[idx])
    if stats.n == 0:
        return stats, None
    second = stats.second_pass(weight, bias)
    for idx in random_batches(len(y), rng):
        second.update(H[idx], y[idx], None if logits is None else logits[idx])
    return stats, second


@st.composite
def problems(draw, all_present: bool = False):
    K = draw(st.integers(2, 12))
    d = draw(st.sampled_from([1, 2, 3, 5, 8, 17, 40]))
    lo = 1 if all_present else 0
    sizes = draw(st.lists(st.one_of(st.integers(lo, 30), st.sampled_from([lo, 1])), min_size=K, max_size=K))
    return {"K": K, "d": d, "sizes": sizes, "seed": draw(st.integers(0, 2**31 - 1)),
            "dtype": draw(st.sampled_from(DTYPES)), "offset": draw(st.sampled_from([0.0, 0.0, 40.0])),
            "global_mean": draw(st.sampled_from(["class", "sample"])),
            "head": draw(st.sampled_from(["none", "weight", "weight+bias", "logits"]))}


def classifier(p: dict, n: int, rng: np.random.Generator):
    K, d, dtype = p["K"], p["d"], p["dtype"]
    W = b = logits = None
    if p["head"] != "none":
        W = torch.from_numpy(rng.normal(size=(K, d))).to(dtype)
    if p["head"] == "weight+bias":
        b = torch.from_numpy(rng.normal(size=K)).to(dtype)
    if p["head"] == "logits":
        logits = torch.from_numpy(rng.normal(size=(n, K))).to(torch.float32)
    return W, b, logits


# ---------------------------------------------------------------------------------------------
# (a) property tests against the reference
# ---------------------------------------------------------------------------------------------
@SETTINGS
@given(problems())
def test_streaming_matches_reference(p):
    H, y = make_features(p["seed"], p["d"], p["sizes"], p["dtype"], p["offset"])
    rng = np.random.default_rng(p["seed"] + 1)
    W, b, logits = classifier(p, len(y), rng)
    ref = collapse_reference(as64(H), y.numpy(), p["K"], as64(W), as64(b), as64(logits),
                             global_mean=p["global_mean"])
    # class means equal in the reference's sums but 1 ulp apart after streaming (bf16 grids make such
    # ties) flip V between inf and ~1e30: exact coincidence has its own test below
    assume(math.isnan(ref["cdnv"]) or ref["min_d2_rel"] > 1e-20)
    stats, second = stream(H, y, p["K"], rng, W, b, logits)
    got = stats.compute(second, W, b, global_mean=p["global_mean"]).metrics
    assert set(got) == set(SPEC_METRICS)
    assert_close(got, ref, SPEC_METRICS, slack=tie_slack(ref, len(y)))
    # the convenience wrapper, with another batch size
    got2 = collapse_metrics(H, y, W, b, num_classes=p["K"], global_mean=p["global_mean"], logits=logits,
                            batch_size=int(rng.integers(1, 64)))
    assert_close(got2, ref, SPEC_METRICS, slack=tie_slack(ref, len(y)))
    if stats.n and not math.isnan(ref["cdnv"]):
        res = stats.compute(second, W, b, global_mean=p["global_mean"], cdnv_matrix=True)
        present = ref["present"]
        V = res.cdnv_matrix.numpy()[np.ix_(present, present)]
        want = ref["cdnv_matrix"]
        fin = np.isfinite(want)
        assert (np.isinf(V) == np.isinf(want)).all()
        np.testing.assert_allclose(V[fin], want[fin], rtol=RTOL, atol=ATOL)
        assert np.isnan(res.cdnv_matrix.numpy()[~present]).all()
        assert res.diagnostics["cdnv_coincident_pairs"] == ref["coincident_pairs"]
        assert res.diagnostics["trace_sigma_w"] == pytest.approx(ref["trace_sw"], rel=RTOL, abs=1e-300)
        assert res.diagnostics["trace_sigma_b"] == pytest.approx(ref["trace_sb"], rel=RTOL)
        assert res.diagnostics["empty_classes"] == p["K"] - present.sum()


@SETTINGS
@given(problems(), st.integers(0, 2**31 - 1))
def test_merge_equals_one_state(p, split_seed):
    H, y = make_features(p["seed"], p["d"], p["sizes"], p["dtype"], p["offset"])
    rng = np.random.default_rng(split_seed)
    W, b, logits = classifier(p, len(y), rng)
    part = rng.random(len(y)) < rng.random()
    a, c = np.flatnonzero(part), np.flatnonzero(~part)
    one, _ = stream(H, y, p["K"], rng)
    sa, _ = stream(H[a], y[a], p["K"], rng, dim=p["d"])
    sc, _ = stream(H[c], y[c], p["K"], rng)
    merged = sa.merge(sc)
    assume(one.n > 0)
    for name in ("count", "mean", "m2", "scatter"):
        torch.testing.assert_close(getattr(merged, name), getattr(one, name), rtol=1e-12, atol=1e-10)
    # second passes on the two shards, merged, equal one second pass over everything
    first = merged.second_pass(W, b)
    other = merged.second_pass(W, b)
    first.update(H[a], y[a], None if logits is None else logits[a])
    other.update(H[c], y[c], None if logits is None else logits[c])
    got = merged.compute(first.merge(other), W, b, global_mean=p["global_mean"]).metrics
    ref = collapse_reference(as64(H), y.numpy(), p["K"], as64(W), as64(b), as64(logits),
                             global_mean=p["global_mean"])
    assume(math.isnan(ref["cdnv"]) or ref["min_d2_rel"] > 1e-20)
    assert_close(got, ref, SPEC_METRICS, slack=tie_slack(ref, len(y)))


def test_streaming_survives_a_large_common_offset():
    """1e6 offset, unit spread: the one-pass identity E‖h‖²−‖μ‖² would lose ~12 digits here."""
    H, y = make_features(3, 16, [50, 70, 30, 90], offset=1e6)
    ref = collapse_reference(H.numpy(), y.numpy(), 4)
    got, _ = stream(H, y, 4, np.random.default_rng(0))
    out = got.compute().metrics
    for k in ("nc1", "nc1_quotient", "cdnv"):
        assert out[k] == pytest.approx(ref[k], rel=1e-7), k


@pytest.mark.parametrize("global_mean", ["class", "sample"])
def test_at_most_k_minus_one_pairs_even_with_zero_tolerance(global_mean):
    """M̃ has rank ≤ K−1 for both global means; with pinv_tol=0 only the cap drops the rounding-level
    K-th eigenvalue, whose inverse would otherwise swamp nc1."""
    H, y = make_features(14, 9, [3, 20, 7, 1, 11])
    ref = collapse_reference(H.numpy(), y.numpy(), 5, global_mean=global_mean, tol=0.0)
    out = collapse_metrics(H, y, global_mean=global_mean, pinv_tol=0.0, batch_size=6)
    assert out["nc1"] == pytest.approx(ref["nc1"], rel=1e-9)
    assert out["nc1"] == pytest.approx(collapse_metrics(H, y, global_mean=global_mean)["nc1"], rel=1e-9)


# ---------------------------------------------------------------------------------------------
# (b) closed forms
# ---------------------------------------------------------------------------------------------
def simplex_etf(K: int, d: int, seed: int = 0) -> torch.Tensor:
    """√(K/(K−1)) P (I − 11ᵀ/K), P a d×K partial orthogonal matrix: columns are the ETF vertices."""
    P, _ = torch.linalg.qr(torch.randn(d, K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return math.sqrt(K / (K - 1)) * P @ (torch.eye(K, dtype=torch.float64) - 1.0 / K)


@pytest.mark.parametrize("global_mean", ["class", "sample"])
def test_exact_simplex_etf_is_fully_collapsed(global_mean):
    K, d = 6, 9
    M = simplex_etf(K, d)                                   # d×K, columns centred: Σ_k m_k = 0
    shift = torch.linspace(-2, 3, d, dtype=torch.float64)  # arbitrary global mean
    y = torch.arange(K).repeat_interleave(7)                 # balanced: both global means agree
    H = shift + M.T[y]
    W = 2.5 * M.T                                           # self-dual classifier
    b = -W @ shift                                          # logits = 2.5 m_jᵀ m_k
    out = collapse_metrics(H, y, W, b, global_mean=global_mean, batch_size=5)
    for k in ("nc1", "nc1_quotient", "equinorm_h", "equinorm_w", "equiangular_h", "equiangular_w",
              "etf_error_h", "etf_error_w", "nc3", "cdnv"):
        assert 0.0 <= out[k] <= 1e-10, (k, out[k])
    assert out["nc4"] == 0.0 and out["ncc_acc"] == 1.0


def test_zero_within_class_variance_gives_cdnv_zero():
    """Integer-valued copies: class means are exact, so σ_k² = 0 and V(i,j) = 0 exactly."""
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    centres = torch.tensor([[0.0, 4.0], [3.0, -1.0], [-5.0, 2.0]], dtype=torch.float64)
    out = collapse_metrics(centres[y], y, batch_size=2)
    assert out["cdnv"] == 0.0 and out["nc1"] == 0.0 and out["nc1_quotient"] == 0.0
    assert out["ncc_acc"] == 1.0


# Hand derivation (2-D, K = 2, no weight), points:
#   class 0: (−1, 1), (−1, −1)            μ_0 = (−1, 0), σ_0² = 1,   scatter_0 = diag(0, 2)
#   class 1: (2, 0), (4, 0), (3, 0)       μ_1 = (3, 0),  σ_1² = 2/3, scatter_1 = diag(2, 0)
#   N = 5, Σ_W = (diag(0,2) + diag(2,0)) / 5 = diag(0.4, 0.4), Tr Σ_W = 0.8, ‖μ_0 − μ_1‖² = 16.
# global_mean="class":  μ_G = (1, 0), m = (∓2, 0), Σ_B = ½(4+4) e₁e₁ᵀ = diag(4, 0), Σ_B⁺ = diag(¼, 0)
#   nc1 = ½ Tr(diag(.4,.4) diag(¼,0)) = ½ · 0.1 = 0.05;  nc1_quotient = 0.8 / 4 = 0.2
#   equinorm_h = 0 (norms 2, 2); cdnv = (1 + 2/3) / (2·16) = 5/96
# global_mean="sample": μ_G = (2·(−1) + 3·3)/5 e₁ = (7/5, 0), m = (−12/5, 0), (8/5, 0)
#   Σ_B = ½(144 + 64)/25 e₁e₁ᵀ = diag(104/25, 0): nc1 = ½ · 0.4 · 25/104 = 5/104,
#   nc1_quotient = 0.8 · 25/104 = 5/26; norms 12/5, 8/5: mean 2, std (ddof 1) 0.8/√2 → √2/5;
#   G = [[144, −96], [−96, 64]]/25, ‖G‖_F = 208/25, G/‖G‖_F − ½[[1, −1], [−1, 1]]
#     = [[40, 8], [8, −40]]/208 → etf_error_h = √(3328)/208 = 1/√13 (0 in the class variant)
# Both variants: cos(m_0, m_1) = −1 → equiangular_h = |−1 + 1/(2−1)| = 0.
# Classifier W = [[−1, 0], [1, 0]]: predicts class 1 iff x > 0, like the NCC rule (boundary x = 1)
#   on these points, so nc4 = 0, ncc_acc = 1; W ∝ M̃ᵀ (class variant) so nc3 = 0.
HAND_H = torch.tensor([[-1.0, 1.0], [-1.0, -1.0], [2.0, 0.0], [4.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
HAND_Y = torch.tensor([0, 0, 1, 1, 1])
HAND_W = torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)


@pytest.mark.parametrize("global_mean, want", [
    ("class", {"nc1": 0.05, "nc1_quotient": 0.2, "equinorm_h": 0.0, "etf_error_h": 0.0,
               "cdnv": 5 / 96, "nc3": 0.0}),
    ("sample", {"nc1": 5 / 104, "nc1_quotient": 5 / 26, "equinorm_h": math.sqrt(2) / 5,
                "etf_error_h": 1 / math.sqrt(13), "cdnv": 5 / 96}),
])
def test_two_class_hand_computed(global_mean, want):
    out = collapse_metrics(HAND_H, HAND_Y, HAND_W, global_mean=global_mean, batch_size=2)
    for k, v in want.items():
        assert out[k] == pytest.approx(v, rel=1e-12, abs=1e-14), k
    assert out["nc4"] == 0.0 and out["ncc_acc"] == 1.0
    assert out["equiangular_h"] == pytest.approx(0.0, abs=1e-14)


# ---------------------------------------------------------------------------------------------
# (c) degenerate inputs
# ---------------------------------------------------------------------------------------------
def test_fewer_than_two_classes_is_refused():
    with pytest.raises(ValueError, match="num_classes >= 2"):
        CollapseStats(1)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        collapse_metrics(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))


def test_empty_class_uses_the_present_classes():
    H, y = make_features(1, 5, [10, 0, 7, 12])
    res = CollapseStats(4).update(H, y)
    out = res.compute().metrics
    ref = collapse_reference(H.numpy(), y.numpy(), 4)
    assert_close(out, ref, ["nc1", "nc1_quotient", "equinorm_h", "cdnv"])
    r = res.compute()
    assert r.diagnostics["empty_classes"] == 1 and r.diagnostics["classes_present"] == 3
    assert any("no sample" in s for s in r.reasons)
    # the NCC rule never picks the empty class, although its stored (zero) mean sits at the centre of
    # these data and would be the nearest "centre" for many points
    H2 = H - H.mean(0)
    s2 = CollapseStats(4).update(H2, y)
    second = s2.second_pass().update(H2, y)
    assert s2.compute(second).metrics["ncc_acc"] == pytest.approx(
        collapse_reference(H2.numpy(), y.numpy(), 4)["ncc_acc"])
    zero_nearest = (H2 ** 2).sum(1) < ((H2[:, None, :] - s2.mean[[0, 2, 3]]) ** 2).sum(2).min(1).values
    assert zero_nearest.any()


def test_single_sample_class_has_zero_variance():
    H, y = make_features(2, 4, [1, 9, 6])
    stats = CollapseStats(3).update(H, y)
    assert stats.class_variances()[0] == 0.0
    out = stats.compute(stats.second_pass().update(H, y)).metrics
    ref = collapse_reference(H.numpy(), y.numpy(), 3)
    assert all(math.isfinite(out[k]) for k in ("nc1", "cdnv", "ncc_acc"))
    assert_close(out, ref, ["nc1", "nc1_quotient", "cdnv", "ncc_acc"])


def test_coincident_class_means_give_infinite_cdnv_and_are_counted():
    H = torch.tensor([[0.0, 1.0], [0.0, -1.0], [1.0, 0.0], [-1.0, 0.0], [5.0, 5.0], [5.0, 7.0]],
                     dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2])   # μ_0 = μ_1 = 0
    res = CollapseStats(3).update(H, y).compute(cdnv_matrix=True)
    assert res.metrics["cdnv"] == math.inf
    assert res.cdnv_matrix[0, 1] == math.inf and math.isfinite(res.cdnv_matrix[0, 2])
    assert res.diagnostics["cdnv_coincident_pairs"] == 1
    assert any("identical means" in s for s in res.reasons)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_features_give_nan_with_a_reason(bad):
    H, y = make_features(4, 3, [5, 5, 5])
    H[7, 1] = bad
    stats = CollapseStats(3)
    stats.update(H[:8], y[:8]).update(H[8:], y[8:])
    second = stats.second_pass().update(H, y)
    res = stats.compute(second)
    assert all(math.isnan(v) for v in res.metrics.values())
    assert res.diagnostics["nonfinite_samples"] == 1
    assert any("non-finite" in s for s in res.reasons)
    out = collapse_metrics(H, y)
    assert all(math.isnan(v) for v in out.values())
    clean = CollapseStats(3).update(H[:7], y[:7]).update(H[8:], y[8:])
    held = HeldoutStats(clean, "label").update(H, y).compute()
    assert all(math.isnan(v) for v in held.values())


def test_fewer_dimensions_than_classes():
    H, y = make_features(5, 3, [8, 3, 12, 5, 9, 4, 7, 6, 10, 2])    # d = 3 < K − 1 = 9
    W = torch.randn(10, 3, dtype=torch.float64)
    out = collapse_metrics(H, y, W, batch_size=7)
    ref = collapse_reference(H.numpy(), y.numpy(), 10, W.numpy())
    assert math.isfinite(out["nc1"]) and out["nc1"] > 0
    assert_close(out, ref, SPEC_METRICS, slack=tie_slack(ref, len(y)))


@pytest.mark.parametrize("features, labels, match", [
    (torch.randn(6, 3), torch.zeros(5, dtype=torch.long), "one entry per feature row"),
    (torch.randn(6), torch.zeros(6, dtype=torch.long), "2-D"),
    (torch.randn(6, 3), torch.zeros(6, 1, dtype=torch.long), "1-D"),
    (torch.randn(6, 3), torch.tensor([0, 1, 2, 3, 0, 1]), r"\[0, 2\]"),
    (torch.randn(6, 3), torch.tensor([0, 1, -1, 2, 0, 1]), r"\[0, 2\]"),
    (torch.randn(6, 3), torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0, 2.0]), "integers"),
    (torch.randn(6, 3), torch.tensor([True, False] * 3), "integers"),
])
def test_bad_batches_are_refused_with_the_reason(features, labels, match):
    with pytest.raises(ValueError, match=match):
        CollapseStats(3).update(features, labels)


def test_changed_dimension_and_bad_classifier_are_refused():
    stats = CollapseStats(3).update(torch.randn(4, 5), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="dimension"):
        stats.update(torch.randn(4, 6), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"\(3, 5\)"):
        stats.second_pass(torch.randn(3, 4))
    with pytest.raises(ValueError, match="global_mean"):
        stats.compute(global_mean="median")


def test_second_pass_on_other_means_is_refused():
    H, y = make_features(6, 4, [6, 6, 6])
    stats = CollapseStats(3).update(H[:9], y[:9])
    early = stats.second_pass().update(H, y)          # built before the first pass finished
    stats.update(H[9:], y[9:])
    with pytest.raises(ValueError, match="other class means"):
        stats.compute(early)
    other = CollapseStats(3).update(H + 1, y)
    with pytest.raises(ValueError, match="other class means"):
        stats.compute(other.second_pass().update(H, y))
    with pytest.raises(ValueError, match="different class means"):
        stats.second_pass().merge(other.second_pass())
    stats.compute(stats.second_pass().update(H, y))    # the right one is accepted


def test_state_dict_round_trip():
    H, y = make_features(8, 4, [5, 6, 7])
    stats = CollapseStats(3).update(H, y)
    again = CollapseStats.from_state_dict(stats.state_dict())
    assert again.compute().metrics == stats.compute().metrics
    assert again.fingerprint() == stats.fingerprint()


# --- regression tests for engine bugs found while writing this suite ---
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16])
def test_small_integer_label_dtypes(dtype):
    H, y = make_features(9, 3, [4, 5, 6])
    want = collapse_metrics(H, y)
    assert collapse_metrics(H, y.to(dtype)) == want


def test_all_class_means_equal_is_not_perfect_collapse():
    H = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]], dtype=torch.float64)
    out = collapse_metrics(H, torch.tensor([0, 0, 1, 1]))
    assert out["nc1_quotient"] == math.inf and out["cdnv"] == math.inf
    assert out["nc1"] == math.inf or math.isnan(out["nc1"])


def test_bad_bias_shape_is_a_value_error():
    with pytest.raises(ValueError, match="bias"):
        collapse_metrics(torch.randn(6, 3), torch.tensor([0, 1, 2] * 2), torch.randn(3, 3), torch.randn(4))


def test_heldout_class_absent_from_train_is_not_measured_around_the_origin():
    H, y = make_features(10, 3, [6, 0, 6], offset=50.0)
    train = CollapseStats(3).update(H, y)
    Ht, yt = make_features(11, 3, [2, 2, 2], offset=50.0)
    held = HeldoutStats(train, "label").update(Ht, yt)
    out = held.compute()
    assert held.unattached == 2                         # the points of class 1 are left out, counted
    keep = yt != 1
    want = HeldoutStats(train, "label").update(Ht[keep], yt[keep]).compute()
    assert out["trace_sw"] == pytest.approx(want["trace_sw"])


# ---------------------------------------------------------------------------------------------
# (d) test collapse (Hui et al. 2022)
# ---------------------------------------------------------------------------------------------
def _train_state(seed=12, sizes=(9, 14, 7, 11), d=6):
    H, y = make_features(seed, d, list(sizes))
    return CollapseStats(len(sizes)).update(H, y), H, y


def test_points_on_their_true_train_means_have_zero_test_collapse():
    stats, _, _ = _train_state()
    yt = torch.tensor([0, 1, 2, 3, 3, 1, 0, 2, 2])
    Ht = stats.mean[yt].clone()
    W, b = stats.mean, -0.5 * (stats.mean ** 2).sum(1)    # W h + b = (‖h‖² − ‖h − μ_k‖²)/2: the NCC rule
    out = test_collapse(stats, Ht, yt, weight=W, bias=b, assign="prediction")
    out_ncc = test_collapse(stats, Ht, yt, assign="ncc")
    for res in (out, out_ncc):
        for k, v in res.items():
            assert v == 0.0, (k, v)


def test_points_on_a_wrong_train_mean_are_weakly_but_not_strongly_collapsed():
    stats, _, _ = _train_state()
    yt = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    wrong = (yt + 1) % 4
    Ht = stats.mean[wrong].clone()
    logits = torch.nn.functional.one_hot(wrong, 4).float() * 5.0
    for assign, kw in (("ncc", {}), ("prediction", {"logits": logits})):
        out = test_collapse(stats, Ht, yt, assign=assign, **kw)
        assert out["strong_nc1"] > 0 and out["strong_trace_sw"] > 0 and out["strong_cdnv"] > 0
        assert out["weak_nc1"] == 0.0 and out["weak_trace_sw"] == 0.0 and out["weak_cdnv"] == 0.0
        ref = heldout_reference(*_train_arrays(stats), 4, Ht.numpy(), yt.numpy(), "label")
        assert_close({k[7:]: v for k, v in out.items() if k.startswith("strong_")}, ref,
                     ["nc1", "trace_sw", "cdnv"])


def _train_arrays(stats):
    """Stand-in train set whose means are exactly the state's means (one point per class)."""
    return stats.mean.numpy(), np.arange(stats.num_classes)


def test_weak_ncc_trace_never_exceeds_strong():
    stats, _, _ = _train_state(sizes=(20, 30, 25, 15, 10))
    for seed in range(5):
        Ht, yt = make_features(100 + seed, 6, [7, 3, 9, 11, 5], sep=1.0)
        out = test_collapse(stats, Ht, yt, assign="ncc")
        assert out["weak_trace_sw"] <= out["strong_trace_sw"] * (1 + 1e-12)


@SETTINGS
@given(problems(all_present=True), st.integers(0, 2**31 - 1),
       st.sampled_from(["label", "ncc", "prediction"]))
def test_heldout_matches_reference(p, test_seed, assign):
    H, y = make_features(p["seed"], p["d"], p["sizes"], p["dtype"], p["offset"])
    rng = np.random.default_rng(test_seed)
    test_sizes = list(rng.integers(0, 12, size=p["K"]))
    Ht, yt = make_features(test_seed, p["d"], test_sizes, p["dtype"], p["offset"])
    assume(len(yt) > 0)
    W = torch.from_numpy(rng.normal(size=(p["K"], p["d"]))).to(p["dtype"])
    b = torch.from_numpy(rng.normal(size=p["K"])).to(p["dtype"])
    logits = torch.from_numpy(rng.normal(size=(len(yt), p["K"]))).float() if rng.random() < 0.5 else None
    train = CollapseStats(p["K"])
    for idx in random_batches(len(y), rng):
        train.update(H[idx], y[idx])
    ref = heldout_reference(as64(H), y.numpy(), p["K"], as64(Ht), yt.numpy(), assign, as64(W), as64(b),
                            as64(logits), global_mean=p["global_mean"])
    assume(ref["ties"] == 0 and ref["min_d2_rel"] > 1e-20)   # see test_streaming_matches_reference
    held = HeldoutStats(train, assign, W, b)
    for idx in random_batches(len(yt), rng):
        held.update(Ht[idx], yt[idx], None if logits is None else logits[idx])
    assert_close(held.compute(global_mean=p["global_mean"]), ref, ["nc1", "trace_sw", "cdnv"])


# ---------------------------------------------------------------------------------------------
# (e) two processes (gloo) reduce to the single-process numbers
# ---------------------------------------------------------------------------------------------
def _dist_data():
    H, y = make_features(21, 7, [30, 5, 22, 1, 17])
    Ht, yt = make_features(22, 7, [4, 6, 0, 8, 3])
    W = torch.randn(5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    b = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    return H, y, Ht, yt, W, b


def _engine_numbers(shards, test_shards, W, b, reduce):
    """Run the full engine on (features, labels) shards; `reduce` all-reduces across processes."""
    stats = CollapseStats(5, 7)
    for H, y in shards:
        stats.update(H, y)
    reduce(stats)
    second = stats.second_pass(W, b)
    for H, y in shards:
        second.update(H, y)
    reduce(second)
    out = dict(stats.compute(second, W, b).metrics)
    for assign in ("label", "ncc", "prediction"):
        held = HeldoutStats(stats, assign, W, b)
        for H, y in test_shards:
            held.update(H, y)
        reduce(held)
        out.update({f"{assign}_{k}": v for k, v in held.compute().items()})
    return out


def _dist_worker(rank: int, world: int, init: str, path: str):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    H, y, Ht, yt, W, b = _dist_data()
    first = (torch.arange(len(y)) % 3 == 0) & (y != 3)    # uneven shards; class 3 only on rank 1
    mine = first if rank == 0 else ~first
    test_mine = slice(0, 5) if rank == 0 else slice(5, None)
    out = _engine_numbers([(H[mine][:10], y[mine][:10]), (H[mine][10:], y[mine][10:])],
                          [(Ht[test_mine], yt[test_mine])], W, b, lambda s: s.all_reduce())
    if rank == 0:
        torch.save(out, path)
    dist.destroy_process_group()


def test_two_process_gloo_matches_one_process(tmp_path):
    import torch.multiprocessing as mp

    H, y, Ht, yt, W, b = _dist_data()
    want = _engine_numbers([(H, y)], [(Ht, yt)], W, b, lambda s: None)
    ref = collapse_reference(H.numpy(), y.numpy(), 5, W.numpy(), b.numpy())
    assert_close(want, ref, SPEC_METRICS)
    path = str(tmp_path / "rank0.pt")
    mp.spawn(_dist_worker, args=(2, f"file://{tmp_path / 'store'}", path), nprocs=2, join=True)
    got = torch.load(path)
    assert set(got) == set(want)
    assert_close(got, want, list(want), rtol=1e-10, atol=1e-12)
