"""The engine's fast paths (issue 17) against independent float64 references.

- `ScatterAccumulator` (BLAS `dsyrk` into one triangle, or torch's GEMM), at one and two threads,
  against numpy's `XᵀX`;
- the shifted, rarely re-centred pass one on orders that push the shift far from the data
  (a drifting class, a first batch that is one outlier), against the stored-feature reference;
- non-finite rows found from the row norms / row sums instead of a full `isfinite` pass;
- pass two's single GEMM against explicit distances; the caller's tensors are never written.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference_nc import collapse_reference, heldout_reference

from ncbench.metrics import CollapseStats, HeldoutStats, collapse_metrics
from ncbench.metrics.floor import pass_one_floor, pass_two_floor
from ncbench.metrics.scatter import ScatterAccumulator
from ncbench.provenance.threads import torch_threads

RTOL = 1e-9
KEYS = ("nc1", "nc1_quotient", "cdnv", "equinorm_h", "equiangular_h", "etf_error_h", "nc3")


def _close(got: float, want: float, rtol: float = RTOL, atol: float = 1e-11) -> bool:
    return abs(got - want) <= rtol * abs(want) + atol


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("path", ["syrk", "gemm"])
def test_scatter_accumulator_matches_numpy(path, threads):
    """Each update path (BLAS dsyrk, torch's full GEMM), at one and at two threads, against numpy's
    `XᵀX`, on blocks of widely different scales, an empty and a non-contiguous one."""
    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=(n, 7)) * 10 ** rng.uniform(-3, 3) for n in (5, 0, 1, 40)]
    acc = ScatterAccumulator(7, "cpu")
    acc._tri = acc._tri and path != "gemm"
    with torch_threads(threads):
        for i, b in enumerate(blocks):
            t = torch.from_numpy(b)
            acc.add(t if i != 3 else torch.from_numpy(np.asfortranarray(b)))   # a non-C-contiguous block
    want = sum(b.T @ b for b in blocks)
    got = acc.full().numpy()
    assert np.allclose(got, want, rtol=1e-13, atol=0)
    assert np.array_equal(got, got.T)
    assert np.allclose(acc.diagonal().numpy(), np.diag(want), rtol=1e-13)
    acc.add_matrix(torch.from_numpy(want))
    assert np.allclose(acc.full().numpy(), 2 * want, rtol=1e-13)
    acc.reset()
    assert not acc.full().any()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_class_row_sums_equal_index_add_bit_for_bit(dtype, threads):
    """`add_class_rows_` (scatter_add_ on CPU) against torch's `index_add_` and a Python loop that adds
    row after row in order: the same values bit for bit (each element summed in the same order), with
    repeated labels, an absent class, values of very different scales, at one and at two threads."""
    from ncbench.metrics.collapse import add_class_rows_

    g = torch.Generator().manual_seed(5)
    K, d = 7, 300
    sums = (torch.randn(K, d, generator=g) * 1e3).to(dtype)
    labels = torch.randint(0, K - 1, (257,), generator=g)                  # class K − 1 never appears
    rows = (torch.randn(257, d, generator=g) * 10 ** torch.randint(-6, 6, (257, 1), generator=g)).to(dtype)
    loop = sums.clone()
    for i in range(len(labels)):
        loop[labels[i]] += rows[i]
    with torch_threads(threads):
        got = add_class_rows_(sums.clone(), labels, rows)
        ref = sums.clone().index_add_(0, labels, rows)
    assert torch.equal(got, ref) and torch.equal(got, loop)
    assert torch.equal(got[K - 1], sums[K - 1])


def test_scatter_paths_agree_on_the_engine(monkeypatch):
    """The whole engine at one thread and at two gives the same metrics to rounding: the thread
    count changes only the summation order."""
    H, y = torch.randn(3000, 300, generator=torch.Generator().manual_seed(3)), torch.arange(3000) % 7
    got = {}
    for n in (1, 2):
        with torch_threads(n):
            got[n] = collapse_metrics(H, y)
    for k in ("nc1", "cdnv", "etf_error_h"):
        assert got[1][k] == pytest.approx(got[2][k], rel=1e-12), k


def _stream(H: torch.Tensor, y: torch.Tensor, K: int, batches) -> CollapseStats:
    stats = CollapseStats(K)
    for idx in batches:
        stats.update(H[idx], y[idx])
    return stats


def _compare(stats: CollapseStats, H, y, K, W=None):
    ref = collapse_reference(H.numpy(), y.numpy(), K, None if W is None else W.numpy())
    got = stats.compute(stats.second_pass(W).update(H, y), W).metrics
    for k in KEYS if W is not None else KEYS[:-1]:
        assert _close(got[k], ref[k]), f"{k}: engine {got[k]!r}, reference {ref[k]!r}"
    assert _close(float(stats.m2.sum()), ref["trace_sw"] * len(y), rtol=1e-10)


def _jumping_classes(seed: int):
    """10 samples of each class at its centre, then 7 batches of 30 moved 1e5 away (unit noise):
    the shift (the first batch mean) ends up far from the data, in the direction of the jump."""
    rng = np.random.default_rng(seed)
    K, d = 4, 6
    centres, jumps = rng.normal(size=(K, d)) * 3, rng.normal(size=(K, d))
    parts = [np.repeat(np.arange(K), 10)] + [np.repeat(np.arange(K), 30)] * 7
    H = [centres[y] + (1e5 * jumps[y] if t else 0) + rng.normal(size=(len(y), d))
         for t, y in enumerate(parts)]
    sizes = np.cumsum([len(y) for y in parts])[:-1]
    return (torch.from_numpy(np.concatenate(H)), torch.from_numpy(np.concatenate(parts)), K,
            np.split(np.arange(sizes[-1] + len(parts[-1])), sizes), torch.from_numpy(rng.normal(size=(K, d))))


def test_a_jumping_class_is_recentred_and_stays_exact():
    H, y, K, batches, W = _jumping_classes(1)
    stats = _stream(H, y, K, batches)
    assert stats.recentres >= 2                 # re-centred on the way, not only when read
    _compare(stats, H, y, K, W)


def test_a_first_batch_of_one_outlier_per_class():
    """The shift of each class comes from one sample 1e6 away from the others."""
    rng = np.random.default_rng(2)
    K, d = 3, 5
    centres = rng.normal(size=(K, d)) * 3
    first = centres + 1e6 * rng.normal(size=(K, d))
    rest_y = np.repeat(np.arange(K), 200)
    H = np.concatenate([first, centres[rest_y] + rng.normal(size=(len(rest_y), d))])
    y = np.concatenate([np.arange(K), rest_y])
    H, y = torch.from_numpy(H), torch.from_numpy(y)
    stats = _stream(H, y, K, [np.arange(K)] + np.array_split(np.arange(K, len(y)), 5))
    _compare(stats, H, y, K)


def test_large_k_small_batches_match_the_reference():
    """K close to the batch size (most classes first seen alone), fp32 input."""
    rng = np.random.default_rng(3)
    K, d, N = 60, 16, 1500
    y = rng.integers(0, K, N)
    H = torch.from_numpy(rng.normal(size=(K, d))[y] + 0.3 * rng.normal(size=(N, d))).float()
    stats = _stream(H, torch.from_numpy(y), K, np.array_split(np.arange(N), 25))
    _compare(stats, H.double(), torch.from_numpy(y), K)


def test_nonfinite_rows_are_counted_and_the_rest_kept_exact():
    rng = np.random.default_rng(4)
    K, d = 3, 4
    y = np.repeat(np.arange(K), 20)
    H = rng.normal(size=(K, d))[y] * 4 + rng.normal(size=(len(y), d))
    bad = [0, 5, 21, 59]                          # incl. the very first row of classes 0 and 1
    H[0, 1], H[5, 0], H[21, 3], H[59, 2] = np.nan, np.inf, -np.inf, np.nan
    stats = _stream(torch.from_numpy(H), torch.from_numpy(y), K, np.array_split(np.arange(len(y)), 3))
    assert stats.nonfinite == len(bad)
    keep = np.setdiff1d(np.arange(len(y)), bad)
    ref_counts = np.bincount(y[keep], minlength=K)
    ref_means = np.stack([H[keep][y[keep] == k].mean(0) for k in range(K)])
    ref_m2 = [((H[keep][y[keep] == k] - ref_means[k]) ** 2).sum() for k in range(K)]
    assert np.array_equal(stats.count.numpy(), ref_counts)
    assert np.allclose(stats.mean.numpy(), ref_means, rtol=1e-12, atol=1e-12)
    assert np.allclose(stats.m2.numpy(), ref_m2, rtol=1e-12)
    assert math.isnan(stats.compute().metrics["nc1"])             # SPEC: NaN with the reason
    assert "non-finite" in stats.compute().reasons[0]


def test_second_pass_single_gemm_matches_explicit_distances():
    rng = np.random.default_rng(5)
    K, d, N = 5, 8, 400
    y = rng.integers(0, K - 1, N)                 # class K-1 never seen: never a nearest centre
    H = torch.from_numpy(rng.normal(size=(K, d))[y] * 2 + rng.normal(size=(N, d)))
    W, b = torch.from_numpy(rng.normal(size=(K, d))), torch.from_numpy(rng.normal(size=K))
    stats = CollapseStats(K).update(H, torch.from_numpy(y))
    H[7, 2] = np.nan                              # dropped by pass two
    second = stats.second_pass(W, b).update(H, torch.from_numpy(y))
    ok = np.isfinite(H.numpy()).all(1)
    mu = stats.mean.numpy()[: K - 1]
    d2 = ((H.numpy()[ok, None, :] - mu[None]) ** 2).sum(-1)
    ncc = d2.argmin(1)
    pred = (H.numpy()[ok] @ W.numpy().T + b.numpy()).argmax(1)
    assert second.seen == ok.sum()
    assert second.ncc_acc() == pytest.approx((ncc == y[ok]).mean(), abs=0)
    assert second.agree == (ncc == pred).sum() and second.with_prediction == ok.sum()
    assert torch.equal(second.nearest(H[ok]), torch.from_numpy(ncc))


def test_the_callers_float64_features_are_not_modified():
    rng = np.random.default_rng(6)
    H = torch.from_numpy(rng.normal(size=(50, 3)))
    y = torch.from_numpy(np.arange(50) % 3)
    before = H.clone()
    stats = CollapseStats(3).update(H, y)
    stats.second_pass().update(H, y)
    HeldoutStats(stats, "ncc").update(H, y)
    collapse_metrics(H, y)
    assert torch.equal(H, before)


def test_heldout_with_syrk_matches_the_reference():
    rng = np.random.default_rng(7)
    K, d = 4, 6
    y = np.repeat(np.arange(K), 25)
    centres = rng.normal(size=(K, d)) * 3 + 100.0
    H = torch.from_numpy(centres[y] + rng.normal(size=(len(y), d)))
    Ht = torch.from_numpy(centres[y] + 1.5 * rng.normal(size=(len(y), d)))
    stats = CollapseStats(K).update(H, torch.from_numpy(y))
    held = HeldoutStats(stats, "label")
    for idx in np.array_split(np.arange(len(y)), 4):
        held.update(Ht[idx], torch.from_numpy(y[idx]))
    ref = heldout_reference(H.numpy(), y, K, Ht.numpy(), y, assign="label")
    got = held.compute()
    for k in ("nc1", "trace_sw", "cdnv"):
        assert _close(got[k], ref[k]), (k, got[k], ref[k])


def test_floors_compute_what_the_engine_computes():
    rng = np.random.default_rng(8)
    K, d, N = 3, 5, 90
    y = torch.from_numpy(np.arange(N) % K)
    H = torch.from_numpy(rng.normal(size=(N, d))).float()
    W = torch.from_numpy(rng.normal(size=(K, d)))
    stats = CollapseStats(K).update(H, y)
    centred = H.double() - stats.mean[y]
    assert torch.allclose(pass_one_floor(H, centred), stats.scatter, rtol=1e-12, atol=1e-12)
    z = pass_two_floor(H, stats.mean, W)
    assert torch.allclose(z[:, K:], H.double() @ W.T, rtol=1e-12)
