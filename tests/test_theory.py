"""Theory tier: the UFM and layer-peeled simulations reproduce the known optima (review §3).

Every assertion compares against a closed form or an independent solver; each run is small
(K ≤ 6, N ≤ 44, full-batch GD in float64) and takes well under a second on one CPU thread.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ncbench.metrics.minority import minority_cosine
from ncbench.plots.layer_peeled import plot_minority_collapse
from ncbench.theory import (
    LPMConfig,
    UFMConfig,
    minority_collapse_curve,
    run_ufm,
    simulate_ufm,
    snc_residuals,
    solve_lpm,
    threshold_ratio,
)
from ncbench.theory.ufm import labels_for, ufm_gradients, ufm_objective

BALANCED = (5, 5, 5, 5)  # K = 4, n = 5, N = 20; d = 8

pytestmark = pytest.mark.usefixtures("one_thread")



# --------------------------------------------------------------------------------------- UFM
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("bias,fixed", [(True, False), (False, False), (False, True)])
def test_closed_form_gradients_match_autograd(loss, bias, fixed):
    cfg = UFMConfig(class_counts=(3, 4, 2), dim=5, loss=loss, lambda_w=0.1, lambda_h=0.2,
                    lambda_b=0.3, bias=bias, fixed_etf=fixed)
    g = torch.Generator().manual_seed(1)
    labels = labels_for(cfg.class_counts)
    H = torch.randn(5, 9, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    _, obj = ufm_objective(cfg, H, W, b, labels)
    auto = torch.autograd.grad(obj, [p for p in (W, H, b) if p is not None])
    Y = torch.nn.functional.one_hot(labels, 3).T.double()
    mine = [x for x in ufm_gradients(cfg, H.detach(), W.detach(), None if b is None else b.detach(), Y)
            if x is not None]
    if fixed:  # a frozen W gets no gradient, whatever autograd says about the objective
        assert torch.count_nonzero(mine[0]) == 0
        auto, mine = auto[1:], mine[1:]
    for a, m in zip(auto, mine):
        torch.testing.assert_close(m, a, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bias,lambda_b", [(True, 0.0), (True, 5e-3), (False, 0.0)],
                         ids=["unregularised-bias", "regularised-bias", "bias-free"])
def test_balanced_regularised_ce_reaches_neural_collapse(bias, lambda_b):
    """Zhu et al. 2021: every global minimiser of the regularised CE UFM is an NC configuration.
    Plain GD, lr 1, 2000 steps (observed: all four ≤ 1e-3 by step ~1000)."""
    rows = simulate_ufm(UFMConfig(class_counts=BALANCED, dim=8, loss="ce", bias=bias, lambda_b=lambda_b,
                                  steps=2000, lr=1.0, seed=3), log_every=500)
    first, last = rows[0], rows[-1]
    keys = ("nc1", "equinorm_h", "equiangular_h", "nc3", "equinorm_w", "equiangular_w")
    assert all(first[k] > 0.05 for k in keys), first           # random start is far from collapse
    assert all(last[k] <= 1e-3 for k in keys), {k: last[k] for k in keys}
    assert last["step"] == 2000 and last["grad_norm"] < 1e-4          # stationary
    assert last["ncc_acc"] == 1.0 and last["nc4"] == 0.0


def test_mse_from_near_zero_init_reaches_strong_neural_collapse():
    """Mixon et al. 2020: unregularised MSE with bias, GD from ε ≈ 0 → SNC1–3."""
    rows = simulate_ufm(UFMConfig(class_counts=BALANCED, dim=8, loss="mse", lambda_w=0.0, lambda_h=0.0,
                                  init_scale=1e-4, steps=2000, lr=1.0, seed=0), log_every=1000)
    last = rows[-1]
    assert rows[0]["snc1"] > 0.5 and rows[0]["snc2"] > 0.5 and rows[0]["snc3"] > 0.5
    assert last["loss"] < 1e-12
    assert max(last["snc1"], last["snc2"], last["snc3"]) <= 1e-3, last


def test_larger_init_scale_leaves_larger_snc_residuals():
    """Review Fig. 3 (Mixon et al.): the SNC error grows as the initialisation moves away from 0,
    although every run interpolates (zero loss)."""
    res = []
    for eps in (1e-3, 1e-2, 1e-1, 3e-1):
        last = simulate_ufm(UFMConfig(class_counts=BALANCED, dim=8, loss="mse", lambda_w=0.0,
                                      lambda_h=0.0, init_scale=eps, steps=3000, lr=1.0, seed=0),
                            log_every=3000)[-1]
        assert last["loss"] < 1e-6
        res.append((last["snc1"], last["snc2"], last["snc3"]))
    res = np.array(res)
    assert (np.diff(res, axis=0) > 0).all(), res
    assert res[-1].min() > 0.1                                 # far from SNC at ε = 0.3


def test_snc_residuals_vanish_on_the_closed_form_solution():
    """SNC1–3 by construction: A with AAᵀ = √n(I − 11ᵀ/K), F = (A⊗1_n)ᵀ/√n, b = 1/K fits Y exactly."""
    K, n, d = 4, 3, 6
    Q, _ = torch.linalg.qr(torch.randn(d, K, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    A = n ** 0.25 * (torch.eye(K, dtype=torch.float64) - 1.0 / K) @ Q.T
    F = A.repeat_interleave(n, 0).T / math.sqrt(n)
    b = torch.full((K,), 1.0 / K, dtype=torch.float64)
    Y = torch.nn.functional.one_hot(labels_for((n,) * K), K).T.double()
    torch.testing.assert_close(A @ F + b[:, None], Y, rtol=0, atol=1e-13)
    assert max(snc_residuals(F, A, b, (n,) * K).values()) < 1e-13
    assert snc_residuals(F, A, None, (n,) * K)["snc3"] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in snc_residuals(F, A, b, (n,) * (K - 1) + (n + 1,)).values())


@pytest.mark.parametrize("bias", [True, False], ids=["unregularised-bias", "bias-free"])
def test_regularised_mse_geometry(bias):
    """Tirer & Bruna 2022: with the bias, centred means and W form the same simplex ETF; bias-free,
    the centred means still form a simplex but W's rows are orthogonal (equiangular_w = 1/(K−1))."""
    last = simulate_ufm(UFMConfig(class_counts=BALANCED, dim=8, loss="mse", bias=bias, steps=2000,
                                  seed=1), log_every=2000)[-1]
    assert max(last["nc1"], last["equinorm_h"], last["equiangular_h"], last["equinorm_w"]) <= 1e-3
    if bias:
        assert last["nc3"] <= 1e-3 and last["equiangular_w"] <= 1e-3
    else:
        assert last["equiangular_w"] == pytest.approx(1.0 / 3.0, abs=1e-3)
        assert last["nc3"] > 0.1


def test_fixed_etf_classifier_keeps_imbalanced_means_on_the_etf():
    """Yang et al. 2022: with W frozen to a simplex ETF, the class means of an imbalanced problem
    (10:1) still align with it; a learnable W on the same data does not."""
    counts = (20, 20, 2, 2)
    fixed = run_ufm(UFMConfig(class_counts=counts, dim=8, fixed_etf=True, bias=False, steps=2000, seed=2),
                    log_every=2000)
    last = fixed.rows[-1]
    torch.testing.assert_close(fixed.weight @ fixed.weight.T,
                               (4 / 3) * (torch.eye(4, dtype=torch.float64) - 0.25), rtol=0, atol=1e-12)
    assert max(last["nc1"], last["nc3"], last["equiangular_h"], last["equinorm_h"]) <= 1e-3, last
    learnt = simulate_ufm(UFMConfig(class_counts=counts, dim=8, fixed_etf=False, bias=False, steps=2000,
                                    seed=2), log_every=2000)[-1]
    assert learnt["nc3"] > 0.05 and learnt["equiangular_w"] > 0.05, learnt


def test_ufm_logging_and_run_outputs():
    run = run_ufm(UFMConfig(steps=7, seed=0), log_every=3)
    assert [r["step"] for r in run.rows] == [0, 3, 6, 7]
    assert run.features.shape == (20, 8) and run.weight.shape == (4, 8) and run.bias.shape == (4,)
    assert run.features.dtype == torch.float64
    assert "snc1" not in run.rows[0] and "nc1" in run.rows[0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ufm_on_cuda_matches_cpu():
    import dataclasses

    cfg = UFMConfig(steps=300, seed=0)
    cpu = simulate_ufm(cfg, log_every=300)
    gpu = simulate_ufm(dataclasses.replace(cfg, device="cuda"), log_every=300)
    for a, b in zip(cpu, gpu):
        assert b["objective"] == pytest.approx(a["objective"], rel=1e-9)
        for k in ("nc1", "nc1_quotient", "equinorm_h", "equiangular_h", "nc3", "equiangular_w"):
            assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-9), k


def test_ufm_stops_on_divergence():
    rows = simulate_ufm(UFMConfig(loss="mse", lambda_w=0, lambda_h=0, init_scale=3.0, lr=50.0, steps=500),
                        log_every=10)
    assert not math.isfinite(rows[-1]["objective"]) and rows[-1]["step"] < 500


@pytest.mark.parametrize("kwargs,match", [
    ({"class_counts": (5,)}, "2 classes"),
    ({"class_counts": (5, 0)}, "2 classes"),
    ({"loss": "hinge"}, "loss"),
    ({"lambda_h": -1.0}, "lambda"),
    ({"fixed_etf": True, "dim": 3}, "dim >= K"),
    ({"lr": 0.0}, "lr"),
])
def test_ufm_config_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UFMConfig(**kwargs)


# ---------------------------------------------------------------------------- layer-peeled
def _pgd_reference(cfg: LPMConfig, steps: int, lr: float = 1.0) -> tuple[float, float]:
    """Projected gradient descent on the two balls (the textbook method), one feature per class."""
    K, d = cfg.num_classes, cfg.feature_dim
    g = torch.Generator().manual_seed(123)
    W = torch.randn(K, d, generator=g, dtype=torch.float64)
    H = torch.randn(K, d, generator=g, dtype=torch.float64)
    pi, eye = cfg.class_weights(), torch.eye(K, dtype=torch.float64)
    rw, rh = math.sqrt(K * cfg.energy_w), math.sqrt(K * cfg.energy_h)

    def proj(X, r):
        return X * min(1.0, r / float(X.norm()))

    W, H = proj(W, rw), proj(H, rh)
    for _ in range(steps):
        G = pi[:, None] * (torch.softmax(H @ W.T, 1) - eye)
        W, H = proj(W - lr * G.T @ H, rw), proj(H - lr * G @ W, rh)
    Z = H @ W.T
    f = float((pi * (torch.logsumexp(Z, 1) - Z.diagonal())).sum())
    return f, minority_cosine(W, range(cfg.num_majority, K))


@pytest.mark.parametrize("K,KA", [(4, 2), (6, 2), (10, 5)])
def test_lpm_balanced_optimum_is_the_simplex(K, KA):
    """At R = 1 the LPM optimum is the simplex ETF: minority cosine −1/(K−1) and objective
    log(1 + (K−1) exp(−K√(E_H E_W)/(K−1)))."""
    e_h, e_w = 2.0, 1.0
    sol = solve_lpm(LPMConfig(num_classes=K, num_majority=KA, ratio=1.0, energy_h=e_h, energy_w=e_w))
    assert sol.minority_cosine == pytest.approx(-1.0 / (K - 1), abs=1e-3)
    closed = math.log1p((K - 1) * math.exp(-K * math.sqrt(e_h * e_w) / (K - 1)))
    assert sol.objective == pytest.approx(closed, rel=1e-9)
    assert sol.minority_norm == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("ratio", [2.0, 10.0])
def test_lpm_solver_agrees_with_projected_gradient_descent(ratio):
    """The sphere-parametrised L-BFGS solution equals plain PGD on the budget balls (below and above
    the collapse threshold), which also confirms that both budgets are active."""
    cfg = LPMConfig(num_classes=4, num_majority=2, ratio=ratio, energy_h=2.0)
    sol = solve_lpm(cfg)
    f_ref, cos_ref = _pgd_reference(cfg, steps=4000)
    assert sol.objective == pytest.approx(f_ref, rel=1e-8)
    assert sol.minority_cosine == pytest.approx(cos_ref, abs=1e-4)
    assert sol.kkt_residual < 1e-6


def test_minority_collapse_curve():
    """Fang et al. 2021: the minority cosine starts at −1/(K−1), rises with R, reaches 1 (minority
    collapse) for large R, and the ratio where it crosses 0 grows with the feature budget E_H."""
    K, KA = 6, 2
    ratios = np.logspace(0, 3, 13)
    curve = minority_collapse_curve(K, KA, ratios, [1.0, 2.0, 5.0], energy_w=1.0, restarts=2)
    assert list(curve.columns[:3]) == ["E_H", "ratio", "minority_cosine"]
    assert len(curve) == 3 * 13 and curve["minority_cosine"].notna().all()
    for e_h, grp in curve.groupby("E_H"):
        c = grp.sort_values("ratio")["minority_cosine"].to_numpy()
        assert c[0] == pytest.approx(-1.0 / (K - 1), abs=1e-3)
        assert (np.diff(c) >= -1e-6).all(), (e_h, c)
        assert c[-1] == pytest.approx(1.0, abs=1e-3)
        assert c.min() < 0 < c.max()
    thr = threshold_ratio(curve)
    t = [thr[e] for e in (1.0, 2.0, 5.0)]
    assert 1.0 < t[0] < t[1] < t[2] < 1e3, thr
    # collapse (cosine ≥ 1 − 1e-3) also happens later with more feature budget
    full = threshold_ratio(curve, level=1 - 1e-3)
    assert full[1.0] < full[2.0] < full[5.0]


def test_lpm_minority_classifiers_can_vanish():
    """With a tight feature budget and K_A ≥ K_B the optimum puts no classifier budget on the
    minority rows (w_k = 0): their cosine is undefined and reported as NaN, with minority_norm ≈ 0."""
    sol = solve_lpm(LPMConfig(num_classes=6, num_majority=3, ratio=10.0, energy_h=0.5))
    assert sol.minority_norm < 1e-5 and math.isnan(sol.minority_cosine)
    # the majority rows carry the whole budget: (1/K) Σ_{k ≤ K_A} ‖w_k‖² = E_W
    assert float((sol.weight[:3] ** 2).sum()) / 6 == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"num_classes": 4, "num_majority": 3}, "two minority"),
    ({"ratio": 0.5}, "ratio"),
    ({"energy_h": 0.0}, "budgets"),
    ({"num_classes": 4, "num_majority": 2, "dim": 3}, "dim"),
])
def test_lpm_config_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LPMConfig(**kwargs)


def test_threshold_ratio_interpolates_in_log_r():
    import pandas as pd

    curve = pd.DataFrame({"E_H": [1.0] * 3 + [2.0] * 2, "ratio": [1.0, 10.0, 100.0, 1.0, 10.0],
                          "minority_cosine": [-0.5, -0.25, 0.25, -0.5, -0.4]})
    thr = threshold_ratio(curve)
    assert thr[1.0] == pytest.approx(math.sqrt(10.0) * 10.0)   # halfway between 10 and 100 in log R
    assert math.isnan(thr[2.0])


def test_plot_minority_collapse(tmp_path):
    import pandas as pd

    curve = pd.DataFrame({"E_H": [1.0, 1.0, 5.0, 5.0], "ratio": [1.0, 10.0, 1.0, 10.0],
                          "minority_cosine": [-0.2, 1.0, -0.2, 0.1]})
    path = plot_minority_collapse(curve, 6, tmp_path / "sub" / "mc.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="minority_cosine"):
        plot_minority_collapse(curve.drop(columns="minority_cosine"), 6, tmp_path / "x.png")
