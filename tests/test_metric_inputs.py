"""Input validation of the metric engine's entry points (issue 13, item 4): every mismatch of
shapes is a ValueError naming the argument and the shapes, nothing is silently dropped, and every
NaN/inf a result holds comes with a reason, through `collapse_metrics` too."""
from __future__ import annotations

import math
import re

import pytest
import torch
from reference_nc import collapse_reference

from ncbench.metrics import SPEC_METRICS, CollapseMetrics, CollapseStats, collapse_metrics


def data(n=40, d=5, K=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    H = torch.randn(n, d, generator=g, dtype=torch.float64) + 3.0 * torch.eye(K, d, dtype=torch.float64)[y]
    W = torch.randn(K, d, generator=g, dtype=torch.float64)
    return H, y, W


def unexplained(out: CollapseMetrics) -> list[str]:
    """Non-finite metrics that no reason names (by its exact SPEC name)."""
    return [m for m, v in out.items() if not math.isfinite(v)
            and not any(re.search(rf"\b{m}\b", r) for r in out.reasons)]


@pytest.mark.parametrize("features, labels, kw, match", [
    # more feature rows than labels: the old code used the first 8192 rows silently
    (torch.randn(10000, 8), torch.randint(0, 4, (8192,)), {}, r"features \(10000, 8\), labels \(8192,\)"),
    (torch.randn(30, 3), torch.arange(40) % 3, {}, r"features \(30, 3\), labels \(40,\)"),
    (torch.randn(30, 3), torch.arange(30) % 3, {"logits": torch.randn(29, 3)}, r"= \(30, 3\), got \(29, 3\)"),
    (torch.randn(30, 3), torch.arange(30) % 3, {"logits": torch.randn(30, 5), "num_classes": 3},
     r"num_classes = 3, logits.shape\[1\] = 5"),
    (torch.randn(30, 3), torch.arange(30) % 3, {"weight": torch.randn(3, 3), "logits": torch.randn(30, 4)},
     r"weight.shape\[0\] = 3, logits.shape\[1\] = 4"),
    (torch.randn(30, 3), torch.arange(30) % 3, {"weight": torch.randn(3, 4)}, r"weight \(3, 4\)"),
    (torch.randn(30, 3), torch.arange(30) % 3, {"weight": torch.randn(3)}, r"weight must be a 2-D"),
    (torch.randn(30, 3), torch.arange(30) % 3, {"weight": torch.randn(4, 3), "num_classes": 3},
     r"num_classes = 3, weight.shape\[0\] = 4"),
    (torch.randn(30, 3), torch.arange(30) % 5, {"weight": torch.randn(3, 3)}, r"labels must lie in \[0, 2\]"),
    (torch.randn(30, 3), torch.arange(30) % 3, {"bias": torch.randn(3)}, "bias given without weight"),
    (torch.randn(30, 3), torch.arange(30) % 3, {"batch_size": 0}, "batch_size must be a positive int"),
    (torch.randn(30, 3), torch.arange(30) % 3, {"batch_size": -4}, "batch_size must be a positive int"),
    (torch.randn(30, 3), torch.arange(30) % 3, {"batch_size": 2.5}, "batch_size must be a positive int"),
    (torch.randn(0, 3), torch.zeros(0, dtype=torch.long), {}, "cannot infer num_classes from empty labels"),
    ([[1.0, 2.0]], torch.tensor([0]), {}, "features must be torch.Tensor"),
])
def test_mismatched_inputs_are_value_errors_naming_argument_and_shapes(features, labels, kw, match):
    with pytest.raises(ValueError, match=match):
        collapse_metrics(features, labels, **kw)


def test_streaming_update_checks_logits_too():
    H, y, W = data()
    stats = CollapseStats(4).update(H, y)
    with pytest.raises(ValueError, match=r"logits must be \(N, num_classes\) = \(40, 4\), got \(40, 6\)"):
        stats.update(H, y, logits=torch.randn(40, 6))
    with pytest.raises(ValueError, match=r"got \(39, 4\)"):
        stats.second_pass(W).update(H, y, logits=torch.randn(39, 4))


def test_result_is_the_plain_dict_with_reasons():
    H, y, W = data()
    out = collapse_metrics(H, y, W, batch_size=7)
    assert isinstance(out, dict) and list(out) == list(SPEC_METRICS)
    ref = collapse_reference(H.numpy(), y.numpy(), 4, W.numpy())
    for m in ("nc1", "nc3", "nc4", "cdnv", "ncc_acc"):            # validation changed no number
        assert out[m] == pytest.approx(ref[m], rel=1e-9, abs=1e-12), m
    assert out.reasons == [] and out.diagnostics["classes_present"] == 4
    assert {**out} == dict(out)


@pytest.mark.parametrize("where", ["weight", "bias", "logits"])
def test_nan_in_classifier_or_logits_gives_nan_nc4_with_its_reason(where):
    """Old code: nc4 = 0.75, a plain number, from argmax over NaN outputs."""
    H, y, W = data()
    b, logits = torch.zeros(4, dtype=torch.float64), None
    if where == "weight":
        W = W.clone()
        W[1, 2] = math.nan
    elif where == "bias":
        b[0] = math.nan
    else:
        logits = H @ W.T
        logits[5, 1] = math.nan
    out = collapse_metrics(H, y, W, b, logits=logits)
    assert math.isnan(out["nc4"])
    assert any("non-finite" in r and "nc4" in r for r in out.reasons), out.reasons
    assert math.isfinite(out["nc1"]) and math.isfinite(out["ncc_acc"])   # what does not depend on W stays
    if where == "weight":
        assert all(math.isnan(out[m]) for m in ("nc3", "equinorm_w", "equiangular_w", "etf_error_w"))
    else:
        assert math.isfinite(out["nc3"])
    assert unexplained(out) == []


def test_labels_beyond_the_classes_present_are_reported():
    """K inferred from labels.max() + 1 counts classes that have no sample: the reason says so."""
    H, y, _ = data()
    y = torch.where(y == 3, torch.tensor(9), y)              # labels 0, 1, 2, 9: K = 10, 6 empty
    out = collapse_metrics(H, y)
    assert out.diagnostics["empty_classes"] == 6
    assert any("6 classes have no sample" in r for r in out.reasons)
    ref = collapse_reference(H.numpy(), torch.where(y == 9, 3, y).numpy(), 4)
    assert out["nc1"] == pytest.approx(ref["nc1"], rel=1e-9)


def _coincident():
    H = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]], dtype=torch.float64)
    return H, torch.tensor([0, 0, 1, 1]), {}


def _no_classifier():
    H, y, _ = data()
    return H, y, {}


def _one_class():
    H, y, _ = data()
    return H, torch.zeros_like(y), {"num_classes": 3}


def _nonfinite():
    H, y, W = data()
    H[3, 0] = math.inf
    return H, y, {"weight": W}


def _zero_weight_row():
    H, y, W = data()
    W = W.clone()
    W[2] = 0.0
    return H, y, {"weight": W}


@pytest.mark.parametrize("case", [_coincident, _no_classifier, _one_class, _nonfinite, _zero_weight_row])
def test_every_nonfinite_value_has_a_reason_through_collapse_metrics(case):
    H, y, kw = case()
    out = collapse_metrics(H, y, **kw)
    assert any(not math.isfinite(v) for v in out.values()), "the case should be degenerate"
    assert out.reasons, "NaN/inf without a reason"
    global_reason = any(("no samples" in r or "fewer than 2" in r or "non-finite (NaN/inf) features" in r)
                        for r in out.reasons)
    assert global_reason or unexplained(out) == [], (unexplained(out), out.reasons)


def test_heldout_update_checks_logits_shape():
    from ncbench.metrics import HeldoutStats

    H, y, _ = data()
    train = CollapseStats(4).update(H, y)
    with pytest.raises(ValueError, match=r"logits must be \(N, num_classes\) = \(40, 4\), got \(40, 3\)"):
        HeldoutStats(train, "prediction").update(H, y, logits=torch.randn(40, 3))


# -- issue 23 item 11: extreme magnitudes, NaN tolerance, complex features, d = 0 ------------------
def _blobs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(90) % 3
    h = torch.randn(90, 6, generator=g, dtype=torch.float64) + 3 * torch.eye(6, dtype=torch.float64)[y]
    W = torch.randn(3, 6, generator=g, dtype=torch.float64)
    return h, y, W, torch.randn(3, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("scale", [1e200, 2.0 ** 700, 1e-200, 2.0 ** -900])
def test_finite_features_of_extreme_magnitude_give_the_metrics_of_unit_ones(scale):
    """Every SPEC §2 metric is invariant under h -> s·h (bias scaled alike): the reference is the same
    features at magnitude ~1, where float64 neither overflows nor underflows."""
    h, y, W, b = _blobs()
    ref = collapse_metrics(h, y, W, b)
    got = collapse_metrics(h * scale, y, W, b * scale)
    assert all(math.isfinite(ref[k]) for k in ("nc1", "cdnv", "nc1_quotient", "nc3", "etf_error_h"))
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-12), k
    assert not any("non-finite" in r for r in got.reasons)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_extreme_magnitude_with_a_non_finite_value_reports_it_as_at_unit_scale(bad):
    """A non-finite value among features of extreme magnitude says so, as it does at magnitude ~1 (the
    same NaN metrics and the same reasons), rather than an overflow."""
    h, y, W, b = _blobs()
    h[5, 2] = bad
    ref = collapse_metrics(h, y, W, b)
    got = collapse_metrics(h * 1e200, y, W, b * 1e200)
    assert got.keys() == ref.keys()
    for k in ref:
        assert (math.isnan(got[k]) and math.isnan(ref[k])) or got[k] == pytest.approx(ref[k], rel=1e-9), k
    assert got.reasons == ref.reasons and any("non-finite" in r for r in got.reasons)


@pytest.mark.parametrize("tol", [float("nan"), float("inf"), -1e-3, 1.0, "1e-10", True])
def test_pinv_tol_outside_0_1_is_a_value_error(tol):
    h, y, _, _ = _blobs()
    with pytest.raises(ValueError, match="pinv_tol must be a number in"):
        collapse_metrics(h, y, pinv_tol=tol)


def test_complex_features_or_weights_are_refused_not_cast():
    h, y, W, _ = _blobs()
    with pytest.raises(ValueError, match="features are complex"):
        collapse_metrics(h.to(torch.complex128), y)
    with pytest.raises(ValueError, match="weight is complex"):
        collapse_metrics(h, y, W.to(torch.complex128))


def test_features_without_a_dimension_are_refused():
    with pytest.raises(ValueError, match=r"features have no dimension \(shape \(90, 0\)\)"):
        collapse_metrics(torch.zeros(90, 0, dtype=torch.float64), torch.arange(90) % 3)
