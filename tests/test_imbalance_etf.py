"""Fixed simplex-ETF head, dot-regression loss, imbalance profiles and minority metrics (SPEC §7)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ncbench.data.dataset import ImageDataset
from ncbench.data.imbalance import (
    class_counts,
    class_subset,
    count_groups,
    imbalance_key,
    imbalanced_view,
)
from ncbench.metrics.minority import imbalance_accuracies, minority_cosine
from ncbench.models.etf_head import FixedETFHead, simplex_etf
from ncbench.training.losses import dot_regression_loss


def simplex_gram(K: int) -> np.ndarray:
    return K / (K - 1) * (np.eye(K) - np.ones((K, K)) / K)


# -- simplex ETF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("d,K", [(5, 5), (12, 4), (64, 10)])
def test_simplex_etf_gram_and_norms(d, K):
    W = simplex_etf(d, K, seed=3, dtype=torch.float64).numpy()
    assert W.shape == (K, d)
    np.testing.assert_allclose(W @ W.T, simplex_gram(K), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), np.ones(K), atol=1e-12)
    np.testing.assert_allclose(W.sum(0), np.zeros(d), atol=1e-12)   # centred: Σ_k w_k = 0
    assert np.linalg.matrix_rank(W) == K - 1


def test_simplex_etf_seeded():
    a, b = simplex_etf(16, 6, seed=1), simplex_etf(16, 6, seed=1)
    assert torch.equal(a, b)
    assert a.dtype == torch.float32
    assert (simplex_etf(16, 6, seed=2) - a).abs().max() > 1e-2
    state = torch.get_rng_state()
    simplex_etf(16, 6, seed=5)
    assert torch.equal(state, torch.get_rng_state())   # the global RNG is not consumed


@pytest.mark.parametrize("d,K", [(3, 5), (8, 1)])
def test_simplex_etf_rejects_bad_sizes(d, K):
    with pytest.raises(ValueError, match="d >= K|K >= 2"):
        simplex_etf(d, K)


def test_etf_head_no_projection():
    head = FixedETFHead(12, 4, seed=7)
    assert not head.has_projection and head.bias is None
    assert list(head.parameters()) == []                       # nothing to train
    assert "weight" in dict(head.named_buffers()) and "weight" in head.state_dict()
    assert torch.equal(head.weight, simplex_etf(12, 4, seed=7))
    h = torch.randn(9, 12)
    assert torch.equal(head.project(h), h)
    torch.testing.assert_close(head(h), h @ head.weight.T)
    W, b = head.effective_classifier()
    assert b is None and torch.equal(W, head.weight)


def test_etf_head_projection_path():
    torch.manual_seed(0)
    d, K = 3, 7
    head = FixedETFHead(d, K, seed=2)
    assert head.has_projection and head.dim == K and head.weight.shape == (K, K)
    assert head.projection.bias is None
    assert [n for n, _ in head.named_parameters()] == ["projection.weight"]
    G = head.weight.double() @ head.weight.double().T
    torch.testing.assert_close(G, torch.from_numpy(simplex_gram(K)), atol=1e-6, rtol=0)
    h = torch.randn(5, d, dtype=torch.float64)
    head = head.double()
    A = head.projection.weight
    torch.testing.assert_close(head.project(h), h @ A.T)
    logits = head(h)
    torch.testing.assert_close(logits, (h @ A.T) @ head.weight.T)
    W_eff, b_eff = head.effective_classifier()
    assert W_eff.shape == (K, d) and b_eff is None
    torch.testing.assert_close(h @ W_eff.T, logits)
    # the projection learns, the ETF does not
    logits.sum().backward()
    assert A.grad is not None and head.weight.grad is None


def test_etf_head_projection_bias():
    head = FixedETFHead(2, 5, proj_bias=True).double()
    h = torch.randn(4, 2, dtype=torch.float64)
    W_eff, b_eff = head.effective_classifier()
    torch.testing.assert_close(h @ W_eff.T + b_eff, head(h))


# -- dot-regression loss -------------------------------------------------------------------------
def dr_reference(H: np.ndarray, y: np.ndarray, W: np.ndarray) -> tuple[float, np.ndarray]:
    """Loss and its gradient with ‖h‖ held constant, written out in numpy."""
    w = W[y]
    hn = np.linalg.norm(H, axis=1)
    wn = np.linalg.norm(w, axis=1)
    r = (H * w).sum(1) - wn * hn
    loss = 0.5 * np.mean(r ** 2 / hn)
    grad = (r / hn)[:, None] * w / len(y)
    return float(loss), grad


def test_dot_regression_matches_formula_and_gradient():
    rng = np.random.default_rng(0)
    K, d, N = 5, 8, 13
    W = simplex_etf(d, K, seed=0, dtype=torch.float64)
    W = W * torch.from_numpy(rng.uniform(0.5, 2.0, (K, 1)))       # unequal norms exercise ‖w_y‖
    H = rng.normal(size=(N, d))
    y = rng.integers(0, K, N)
    ref_loss, ref_grad = dr_reference(H, y, W.numpy())
    h = torch.tensor(H, requires_grad=True)
    loss = dot_regression_loss(h, torch.from_numpy(y), W)
    assert loss.dtype == torch.float64
    assert math.isclose(float(loss.detach()), ref_loss, rel_tol=1e-12)
    loss.backward()
    np.testing.assert_allclose(h.grad.numpy(), ref_grad, rtol=1e-10, atol=1e-14)


def test_dot_regression_by_hand():
    """Two features by hand: h = (3, 4) of class 0 against w_0 = (1, 0): w·h = 3, ‖w‖‖h‖ = 5, so
    (3 − 5)² / 5 = 0.8; h = (0, 2) of class 1 against w_1 = (0, 1) is aligned: 0. L = ½ · mean = 0.2."""
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    h = torch.tensor([[3.0, 4.0], [0.0, 2.0]], dtype=torch.float64)
    assert math.isclose(float(dot_regression_loss(h, torch.tensor([0, 1]), W)), 0.5 * (0.8 + 0.0) / 2)
    # the other class's row: w_1·(3, 4) = 4 vs 5 -> 1/5; w_0·(0, 2) = 0 vs 2 -> 4/2: ½ · (0.2 + 2) / 2
    assert math.isclose(float(dot_regression_loss(h, torch.tensor([1, 0]), W)), 0.5 * (0.2 + 2.0) / 2)


def test_dot_regression_gradcheck():
    torch.manual_seed(0)
    K, d, N = 4, 6, 7
    W = simplex_etf(d, K, seed=1, dtype=torch.float64).requires_grad_(True)
    h = torch.randn(N, d, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, K, (N,))
    norms = h.detach().norm(dim=1) * 1.3      # ‖h‖ held fixed: a constant of the function
    assert torch.autograd.gradcheck(
        lambda h_, W_: dot_regression_loss(h_, y, W_, norms=norms), (h, W))


def test_dot_regression_zero_at_alignment():
    W = simplex_etf(6, 3, seed=0, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2])
    h = W[y] * torch.tensor([[0.5], [2.0], [3.0], [1.0]], dtype=torch.float64)
    assert float(dot_regression_loss(h, y, W)) < 1e-28
    assert float(dot_regression_loss(-h, y, W)) > 1.0          # opposite direction is penalised


def test_dot_regression_rejects_mismatched_weight():
    with pytest.raises(ValueError, match="project"):
        dot_regression_loss(torch.randn(3, 4), torch.tensor([0, 1, 0]), torch.randn(2, 5))


# -- imbalance profiles --------------------------------------------------------------------------
def test_step_counts():
    assert class_counts("step", 5000, 10, 100) == [5000] * 5 + [50] * 5
    assert class_counts("step", 100, 5, 3, n_majority=2) == [100, 100, 33, 33, 33]
    assert class_counts("step", 7, 3, 1) == [7, 7, 7]


def test_exp_counts():
    # n_k = floor(5000 · 100^(−k/9)): 100^(−1/9) = 0.59948, 100^(−2/9) = 0.35938, …
    assert class_counts("exp", 5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert class_counts("exp", 100, 3, 4) == [100, 50, 25]
    # the published CIFAR-LT training-set sizes (Cao et al. 2019)
    assert sum(class_counts("exp", 5000, 10, 100)) == 12406
    assert sum(class_counts("exp", 500, 100, 100)) == 10847
    assert sum(class_counts("exp", 5000, 10, 50)) == 13996


@pytest.mark.parametrize("kwargs,match", [
    ({"ratio": 0.5}, "R = n_max/n_min"),
    ({"ratio": float("nan")}, "R = n_max/n_min"),
    ({"n_majority": 0}, "n_majority"),
    ({"n_majority": 4}, "n_majority"),
    ({"ratio": 200}, "leaves a class"),
    ({"profile": "linear"}, "unknown imbalance profile"),
])
def test_profile_errors(kwargs, match):
    args = {"profile": "step", "n": 100, "K": 4, "ratio": 2.0} | kwargs
    with pytest.raises(ValueError, match=match):
        class_counts(**args)


def test_count_groups():
    g = count_groups([500, 300, 200, 100, 90, 80, 50, 20, 10, 5])
    assert g == {"many": [0, 1, 2, 3], "medium": [4, 5, 6], "few": [7, 8, 9]}
    g = count_groups([5, 50, 10, 50, 1, 20])     # ranked: 1, 3 (tie, by index), 5, 2, 0, 4
    assert g == {"many": [1, 3], "medium": [2, 5], "few": [0, 4]}


def toy_dataset(per_class=(20, 15, 12, 30), seed=0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    targets = torch.cat([torch.full((c,), k) for k, c in enumerate(per_class)])
    targets = targets[torch.randperm(len(targets), generator=g)]
    N = len(targets)
    images = torch.arange(N, dtype=torch.float32).view(N, 1, 1, 1)   # image value = row id
    return ImageDataset(images, targets, [f"c{k}" for k in range(len(per_class))], (0.0,), (1.0,),
                        "toy", "train", {"source": "test"})


def test_imbalanced_view_counts_and_info():
    ds = toy_dataset()
    v = imbalanced_view(ds, "step", 4, n_majority=2, seed=1)   # n = 12, the smallest class
    assert v.class_counts().tolist() == [12, 12, 3, 3]
    assert v.info["class_counts"] == [12, 12, 3, 3]
    assert v.info["majority_classes"] == [0, 1] and v.info["minority_classes"] == [2, 3]
    assert v.info["imbalance_profile"] == "step" and v.info["imbalance_ratio"] == 4.0
    assert v.info["source"] == "test"                           # the parent's info is kept
    rows = v.images.flatten().long()
    assert torch.equal(v.targets, ds.targets[rows])             # labels unchanged
    assert bool((rows[1:] > rows[:-1]).all())                   # original order, no repeats


def test_imbalanced_view_deterministic_and_nested():
    ds = toy_dataset()
    rows = lambda v: set(v.images.flatten().long().tolist())
    a, b = imbalanced_view(ds, "exp", 3, seed=5), imbalanced_view(ds, "exp", 3, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    assert rows(imbalanced_view(ds, "exp", 3, seed=6)) != rows(a)
    assert rows(imbalanced_view(ds, "exp", 6, seed=5)) < rows(a)   # larger R: a strict subset
    assert a.class_counts().tolist() == class_counts("exp", 12, 4, 3)
    assert a.info["many_classes"] == [0, 1] and a.info["few_classes"] == [3]


def test_at_ratio_one_both_profiles_are_one_view_and_one_training_key():
    """R = 1 keeps the same n images of every class under step and exp, so the balanced run of a
    step sweep and of an exp sweep is one training (one `imbalance_key`); R > 1 keeps them apart."""
    ds = toy_dataset()
    step, exp = (imbalanced_view(ds, p, 1, n_majority=2, n=10, seed=3) for p in ("step", "exp"))
    assert torch.equal(step.images, exp.images) and torch.equal(step.targets, exp.targets)
    assert imbalance_key("exp", 1, 2, 10) == imbalance_key("step", 1, 2, 10)
    assert dict(imbalance_key("exp", 1, 2, 10))["profile"] == "step"
    assert imbalance_key("exp", 10, 2, 10) != imbalance_key("step", 10, 2, 10)
    assert imbalance_key("exp", 1) is None


def test_imbalanced_view_minority_classes_and_n():
    ds = toy_dataset()
    v = imbalanced_view(ds, "step", 5, minority_classes=[3, 0], n=10)
    assert v.class_counts().tolist() == [2, 10, 10, 2]
    assert v.info["minority_classes"] == [0, 3] and v.info["majority_classes"] == [1, 2]
    with pytest.raises(ValueError, match="class 2 \\(c2\\): 12 < 14"):
        imbalanced_view(ds, "step", 2, n_majority=3, n=14)
    with pytest.raises(ValueError, match="contradicts"):
        imbalanced_view(ds, "step", 2, n_majority=1, minority_classes=[3])
    with pytest.raises(ValueError, match="'step' profile"):
        imbalanced_view(ds, "exp", 2, minority_classes=[3])
    with pytest.raises(ValueError, match="no sample of classes \\[1\\]"):
        imbalanced_view(toy_dataset((5, 0, 5)), "step", 2)


def test_class_subset():
    ds = toy_dataset()
    s = class_subset(ds, [3, 1])
    assert s.classes == ["c3", "c1"] and s.class_counts().tolist() == [30, 15]
    rows = s.images.flatten().long()
    assert torch.equal(torch.tensor([3, 1])[s.targets], ds.targets[rows])
    keep = class_subset(ds, [3, 1], relabel=False)
    assert keep.classes == ds.classes and set(keep.targets.tolist()) == {1, 3}
    assert keep.info["class_subset"] == [3, 1]
    with pytest.raises(ValueError, match="repeated"):
        class_subset(ds, [1, 1])
    with pytest.raises(ValueError, match="class indices"):
        class_subset(ds, [4])


# -- minority metrics ----------------------------------------------------------------------------
def test_minority_cosine_constructed():
    K = 6
    W = simplex_etf(10, K, seed=0, dtype=torch.float64)
    assert math.isclose(minority_cosine(W, [3, 4, 5]), -1 / (K - 1), abs_tol=1e-12)
    assert math.isclose(minority_cosine(W, list(range(K))), -1 / (K - 1), abs_tol=1e-12)
    collapsed = W.clone()
    collapsed[[3, 4, 5]] = torch.tensor([1.0, 2.0] + [0.0] * 8, dtype=torch.float64) \
        * torch.tensor([[1.0], [3.0], [0.5]], dtype=torch.float64)   # same direction, other norms
    assert math.isclose(minority_cosine(collapsed, [3, 4, 5]), 1.0, abs_tol=1e-12)
    # against a direct double loop
    V = torch.randn(5, 4, dtype=torch.float64)
    m = [0, 2, 4]
    direct = np.mean([float(V[i] @ V[j] / (V[i].norm() * V[j].norm()))
                      for a, i in enumerate(m) for j in m[a + 1:]])
    assert math.isclose(minority_cosine(V, m), direct, rel_tol=1e-12)


def test_minority_cosine_errors_and_nan():
    V = torch.randn(4, 3)
    with pytest.raises(ValueError, match="at least 2"):
        minority_cosine(V, [1])
    with pytest.raises(ValueError, match="class indices"):
        minority_cosine(V, [1, 4])
    V[2] = 0
    with pytest.warns(RuntimeWarning, match="classes \\[2\\]"):
        assert math.isnan(minority_cosine(V, [1, 2]))


def test_imbalance_accuracies():
    g = torch.Generator().manual_seed(0)
    K, N = 6, 200
    labels = torch.randint(0, K, (N,), generator=g)
    pred = torch.where(torch.rand(N, generator=g) < 0.6, labels, torch.randint(0, K, (N,), generator=g))
    minority = [4, 5]
    groups = {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
    out = imbalance_accuracies(pred, labels, minority, groups)
    L, P = labels.numpy(), pred.numpy()

    def direct(cls):
        m = np.isin(L, cls)
        return float((P[m] == L[m]).mean())
    assert math.isclose(out["accuracy"], float((P == L).mean()), rel_tol=1e-12)
    assert math.isclose(out["majority_accuracy"], direct([0, 1, 2, 3]), rel_tol=1e-12)
    assert math.isclose(out["minority_accuracy"], direct(minority), rel_tol=1e-12)
    for name, cls in groups.items():
        assert math.isclose(out[f"{name}_accuracy"], direct(cls), rel_tol=1e-12)
    logits = torch.nn.functional.one_hot(pred, K).double()
    assert imbalance_accuracies(logits, labels, minority) == {
        k: out[k] for k in ("accuracy", "majority_accuracy", "minority_accuracy")}


def test_imbalance_accuracies_empty_group_is_nan():
    out = imbalance_accuracies(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), [2], num_classes=3)
    assert math.isnan(out["minority_accuracy"])
    assert math.isclose(out["majority_accuracy"], 2 / 3)
