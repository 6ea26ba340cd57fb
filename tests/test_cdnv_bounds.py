"""The CDNV bounds (ncbench.metrics.cdnv_bounds): hand-computed cases, and distributions whose
population CDNV is known in closed form, where the bound must hold with the stated probability."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from ncbench.metrics.cdnv_bounds import (
    cdnv_population_bound,
    class_moments,
    fewshot_bound_metrics,
    fewshot_error_bound,
    heldout_halves,
    ncc_pair_error_bound,
    population_bound_table,
)

D64 = torch.float64


def _pattern_class(centre: float, reps: int) -> torch.Tensor:
    """1-D class `centre + {−1, 0, 0, 1}` repeated: mean `centre`, variance 1/2, radius 1."""
    return (centre + torch.tensor([-1.0, 0.0, 0.0, 1.0], dtype=D64).repeat(reps)).unsqueeze(1)


def test_population_bound_hand_computed():
    m, delta = 400, 0.2
    x = torch.cat([_pattern_class(0.0, 100), _pattern_class(3.0, 100)])
    y = torch.arange(2).repeat_interleave(m)
    mom = class_moments(x, y)
    assert mom.variance.tolist() == pytest.approx([0.5, 0.5]) and mom.radius.tolist() == [1.0, 1.0]
    pb = cdnv_population_bound(mom, delta)
    # by hand, δ' = δ/4 = 0.05, R = 1:
    log = math.log(20.0)
    var_up = 0.5 * m / (m - 1) + 2.0 * math.sqrt(log / (2 * (m // 2)))       # < R² = 1: no clamp
    eps = math.sqrt(var_up / m) + math.sqrt(2 * log / m)
    bound = 2 * var_up / (2 * (3.0 - 2 * eps) ** 2)
    assert pb.var_upper.tolist() == pytest.approx([var_up, var_up], rel=1e-12)
    assert pb.mean_deviation.tolist() == pytest.approx([eps, eps], rel=1e-12)
    assert float(pb.bound) == pytest.approx(bound, rel=1e-12)
    assert float(pb.empirical) == pytest.approx(1.0 / 18.0)                  # (0.5 + 0.5) / (2·9)
    assert float(pb.A) == pytest.approx(2 * eps / (3 - 2 * eps))
    assert float(pb.B) == pytest.approx((2 * var_up - 1.0) / 18.0)
    assert float((pb.empirical + pb.B) * (1 + pb.A) ** 2) == pytest.approx(bound, rel=1e-12)  # eq. 16 form


def test_tiny_classes_clamp_the_variance_and_close_means_are_vacuous():
    x = torch.tensor([[-1.0], [1.0], [9.0], [11.0], [1.5], [2.5]], dtype=D64)
    mom = class_moments(x, torch.tensor([0, 0, 1, 1, 2, 2]))
    pb = cdnv_population_bound(mom, 0.2)
    assert pb.var_upper.tolist() == pytest.approx([1.0, 1.0, 0.25])         # clamped at R² (m = 2)
    pairs = {(int(i), int(j)): float(b) for i, j, b in zip(pb.i, pb.j, pb.bound)}
    eps0 = math.sqrt(1 / 2) + math.sqrt(2 * math.log(20) / 2)
    assert pairs[(0, 1)] == pytest.approx(2.0 / (2 * (10 - 2 * eps0) ** 2))
    assert pairs[(0, 2)] == math.inf                                         # ‖μ̂_0 − μ̂_2‖ = 2 < ε_0 + ε_2
    table, summary = population_bound_table(mom, mom, 0.2)
    assert table.vacuous.tolist() == [0.0, 1.0, 0.0]                         # (1, 2): 8 > ε_1 + ε_2
    assert summary["bound_vacuous_fraction"] == pytest.approx(1 / 3)
    assert summary["bound_holds_fraction"] == 1.0                            # inf bounds hold (trivially)
    with pytest.raises(ValueError, match="delta"):
        cdnv_population_bound(mom, 1.5)
    one = class_moments(torch.tensor([[0.0], [5.0], [6.0]], dtype=D64), torch.tensor([0, 1, 1]))
    table, summary = population_bound_table(one, one, 0.2)     # one sample: no variance bound, NaN
    assert np.isnan(table.bound[0]) and np.isnan(table.vacuous[0]) and np.isnan(summary["bound_holds_fraction"])


def _truncated_gaussian(gen, n: int, d: int, sigma: float, radius: float) -> torch.Tensor:
    """N(0, σ²I_d) conditioned on ‖z‖ ≤ radius (rejection): mean 0, Var = σ² d F_{d+2}(c)/F_d(c)."""
    z = torch.randn(n, d, generator=gen, dtype=D64) * sigma
    out = torch.linalg.vector_norm(z, dim=1) > radius
    while bool(out.any()):
        z[out] = torch.randn(int(out.sum()), d, generator=gen, dtype=D64) * sigma
        out = torch.linalg.vector_norm(z, dim=1) > radius
    return z


MEANS = torch.tensor([[0.0, 0.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0]], dtype=D64)


def _population_cdnv(var: float) -> np.ndarray:
    i, j = np.triu_indices(len(MEANS), 1)
    d2 = ((MEANS[i] - MEANS[j]) ** 2).sum(1).numpy()
    return 2 * var / (2 * d2)


@pytest.mark.parametrize("truncated", [True, False])
def test_population_bound_holds_with_probability_one_minus_delta(truncated, one_thread):
    """Truncated isotropic Gaussians (bounded: the bound's assumption, with the true radius) and plain
    Gaussians (unbounded: the plug-in radius the task uses). Population CDNV in closed form."""
    d, sigma, R, m, delta, trials = 4, 1.0, 3.5, 1000, 0.1, 300
    c = (R / sigma) ** 2
    var = sigma ** 2 * d * (stats.chi2.cdf(c, d + 2) / stats.chi2.cdf(c, d) if truncated else 1.0)
    pop = _population_cdnv(var)
    gen = torch.Generator().manual_seed(0)
    fails, below, vacuous = 0, 0, 0
    y = torch.arange(3).repeat_interleave(m)
    for _ in range(trials):
        z = (_truncated_gaussian(gen, 3 * m, d, sigma, R) if truncated
             else torch.randn(3 * m, d, generator=gen, dtype=D64) * sigma)
        mom = class_moments(z + MEANS[y], y)
        pb = cdnv_population_bound(mom, delta, radius=torch.full((3,), R, dtype=D64) if truncated else None)
        b = pb.bound.numpy()
        fails += int((b < pop).any())
        below += int((pb.empirical.numpy() < pop).any())
        vacuous += int((~np.isfinite(b)).any())
    assert vacuous == 0                         # the bound is informative here: holding is not trivial
    assert below / trials > 0.5                 # the empirical CDNV alone is no bound: the test has power
    assert fails / trials <= delta              # simultaneous over the 3 pairs, so even stricter


def test_population_bound_tightens_to_the_population_cdnv(one_thread):
    d, sigma, R, m = 4, 1.0, 3.5, 100_000
    gen = torch.Generator().manual_seed(1)
    y = torch.arange(3).repeat_interleave(m)
    z = _truncated_gaussian(gen, 3 * m, d, sigma, R)
    var = sigma ** 2 * d * stats.chi2.cdf(R ** 2, d + 2) / stats.chi2.cdf(R ** 2, d)
    pb = cdnv_population_bound(class_moments(z + MEANS[y], y), 0.05, radius=torch.full((3,), R, dtype=D64))
    ratio = pb.bound.numpy() / _population_cdnv(var)
    assert (ratio >= 1).all() and (ratio < 1.2).all()


def test_pair_error_bound_hand_computed():
    var = torch.tensor([0.01, 0.04], dtype=D64)
    means = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=D64)
    n, theta = 5, 0.5
    p = ncc_pair_error_bound(var, means, n, theta=theta)
    v01, v10 = 0.01, 0.04                                          # Var_i / ‖Δ‖², ‖Δ‖ = 1
    g = 4 * (v01 + v10 / n + v01 * (v01 + v10) / n)
    assert float(p[0, 1]) == pytest.approx(g / (g + 0.25) + v01 / (n * theta), rel=1e-12)
    g = 4 * (v10 + v01 / n + v10 * (v10 + v01) / n)
    assert float(p[1, 0]) == pytest.approx(g / (g + 0.25) + v10 / (n * theta), rel=1e-12)
    assert (ncc_pair_error_bound(var, means, n) <= p + 1e-15).all()         # the θ grid only tightens
    moments = class_moments(torch.tensor([[0.0, 0.1], [0.0, -0.1], [1.0, 0.2], [1.0, -0.2]], dtype=D64),
                            torch.tensor([0, 0, 1, 1]))
    pm = ncc_pair_error_bound(moments.variance, moments.mean, n, theta)
    assert fewshot_error_bound(moments, n, 2, theta) == pytest.approx(float(pm[0, 1] + pm[1, 0]) / 2)


def _ncc_error_by_simulation(gen, means, sigma, n_way, k, episodes, queries=10) -> float:
    """Mean error of the n_way-way k-shot nearest-centre rule on fresh Gaussian samples."""
    C, d = means.shape
    cls = torch.stack([torch.randperm(C, generator=gen)[:n_way] for _ in range(episodes)])   # (E, n)
    mu = means[cls]                                                                           # (E, n, d)
    sup = mu.unsqueeze(2) + sigma * torch.randn(episodes, n_way, k, d, generator=gen, dtype=D64)
    qry = mu.unsqueeze(2) + sigma * torch.randn(episodes, n_way, queries, d, generator=gen, dtype=D64)
    centres = sup.mean(2)                                                                     # (E, n, d)
    dist = ((qry.unsqueeze(3) - centres[:, None, None]) ** 2).sum(-1)                         # (E, n, q, n)
    pred = dist.argmin(-1)
    truth = torch.arange(n_way).view(1, n_way, 1)
    return float((pred != truth).double().mean())


@pytest.mark.parametrize("sigma", [0.15, 0.35])
def test_fewshot_bound_holds_against_simulated_episodes(sigma, one_thread):
    """Isotropic Gaussian target classes (Var = dσ², means known): the bound on the expected episode
    error is above the simulated error, for each shot count; non-vacuous at the smaller σ."""
    gen = torch.Generator().manual_seed(2)
    C, d, n_way = 8, 3, 5
    means = 2.0 * torch.randn(C, d, generator=gen, dtype=D64)
    var = torch.full((C,), d * sigma ** 2, dtype=D64)
    for k in (1, 5):
        p = ncc_pair_error_bound(var, means, k)
        off = ~torch.eye(C, dtype=torch.bool)
        bound = (n_way - 1) * float(p[off].mean())
        measured = _ncc_error_by_simulation(gen, means, sigma, n_way, k, episodes=4000)
        assert measured <= bound
        if sigma == 0.15 and k == 5:
            assert bound < 1
    # the pairwise bound against the exact 1-D two-class error, where errors are common
    s = 0.5
    p = ncc_pair_error_bound(torch.tensor([s * s, s * s], dtype=D64), torch.tensor([[0.0], [1.0]], dtype=D64), 1)
    err = _ncc_error_by_simulation(gen, torch.tensor([[0.0], [1.0]], dtype=D64), s, 2, 1, episodes=20000)
    assert 0.1 < err <= float(p[0, 1])


def test_fewshot_bound_metrics_report_vacuous_bounds():
    x = torch.tensor([[0.0], [1.0], [0.0], [1.0]], dtype=D64)                 # classes 3 and 7 coincide
    out = fewshot_bound_metrics(x, torch.tensor([3, 3, 7, 7]), 1, 2, measured_error=0.3)
    assert out["ncc_error_1shot"] == 0.3 and out["ncc_error_bound_vacuous_1shot"] == 1.0
    assert out["ncc_error_bound_1shot"] == 1.0                                 # p = 1 both ways
    assert out["ncc_error_bound_ratio_1shot"] == pytest.approx(out["ncc_error_bound_1shot"] / 0.3)
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1], [9.0], [9.1]], dtype=D64)
    out = fewshot_bound_metrics(x, torch.tensor([3, 3, 7, 7, 9, 9]), 5, 3, measured_error=0.0)
    assert out["ncc_error_bound_vacuous_5shot"] == 0.0
    assert out["ncc_error_bound_capped_5shot"] == out["ncc_error_bound_5shot"] < 1   # informative: unchanged
    assert out["ncc_error_bound_ratio_5shot"] == math.inf                     # measured 0: ratio inf
    with pytest.raises(ValueError, match="n_way"):
        fewshot_error_bound(class_moments(x, torch.tensor([0, 0, 1, 1, 2, 2])), 1, 4)


def test_fewshot_bound_is_capped_at_one_beside_the_raw_value():
    """Issue 28: with every pair overlapping the raw bound is n_way − 1 (= 4 for 5-way); the capped column
    says 1 (an error cannot exceed it) while the raw one keeps its value, and the vacuity flag is set."""
    x = torch.zeros(10, 2, dtype=D64)                                         # five coinciding classes
    labels = torch.arange(5).repeat_interleave(2)
    out = fewshot_bound_metrics(x, labels, 5, 5, measured_error=0.8)
    raw = fewshot_error_bound(class_moments(x, labels), 5, 5)
    assert out["ncc_error_bound_5shot"] == raw == 4.0                         # (n_way − 1) · 1
    assert out["ncc_error_bound_capped_5shot"] == 1.0 and out["ncc_error_bound_vacuous_5shot"] == 1.0
    with pytest.raises(ValueError, match="n_shot"):
        ncc_pair_error_bound(torch.ones(2), torch.eye(2), 0)


@pytest.mark.parametrize("delta", [0, 1, 2.5, True, "0.05"])
def test_cdnv_bound_task_rejects_a_bad_delta(delta):
    from ncbench.tasks import TaskSpec
    from ncbench.tasks.cdnv_bound import CDNVBound

    with pytest.raises(ValueError, match="options.delta must be a number in"):
        CDNVBound(TaskSpec(name="cb", kind="cdnv_bound", version=1, options={"delta": delta}))
    assert CDNVBound(TaskSpec(name="cb", kind="cdnv_bound", version=1, options={"delta": 0.01})).options["delta"] == 0.01


def test_heldout_halves_split_every_class_by_its_order_of_appearance():
    labels = torch.tensor([0, 1, 0, 0, 1, 2, 2, 0, 1])
    first, second = heldout_halves(labels)
    # class 0 at 0, 2, 3, 7 -> 0, 3 | 2, 7; class 1 at 1, 4, 8 -> 1, 8 | 4; class 2 at 5, 6 -> 5 | 6
    assert torch.nonzero(first).flatten().tolist() == [0, 1, 3, 5, 8]
    assert torch.nonzero(second).flatten().tolist() == [2, 4, 6, 7]
    assert not (first & second).any() and (first | second).all()


def test_the_bound_from_one_heldout_half_is_checked_on_the_other():
    """`bound_samples(heldout_halves)`: the moments of each half equal those of the half picked by hand,
    and on Gaussian classes (population CDNV known) the bound computed from one half holds with the
    other half's CDNV beside it; the train sample is ignored (a fitted network's train features are
    not a fresh sample)."""
    from ncbench.tasks.cdnv_bound import bound_samples

    g = torch.Generator().manual_seed(3)
    K, m, d = 4, 400, 8
    means = 6.0 * torch.eye(K, d, dtype=D64)
    y = torch.arange(K).repeat(m)                                      # interleaved classes
    x = means[y] + torch.randn(K * m, d, generator=g, dtype=D64)
    junk = (torch.zeros(3, d, dtype=D64), torch.tensor([0, 1, 2]))     # a train sample that must not matter
    sample, check = bound_samples(junk, (x, y), K, "heldout_halves")
    by_hand = [torch.cat([x[y == k][i::2] for k in range(K)]) for i in (0, 1)]
    labels = torch.arange(K).repeat_interleave(m // 2)
    for mom, ref in zip((sample, check), by_hand):
        want = class_moments(ref, labels, K)
        assert torch.equal(mom.count, want.count)
        assert torch.allclose(mom.mean, want.mean, rtol=0, atol=1e-12)
        assert torch.allclose(mom.variance, want.variance, rtol=1e-12)
    table, summary = population_bound_table(sample, check, delta=0.05)
    population = d / 36.0                                              # Var = d, ‖μ_i − μ_j‖² = 72: 2d / (2 · 72)
    assert (table["bound"] >= population).all() and summary["bound_holds_fraction_nonvacuous"] == 1.0
    train_mode = bound_samples((x, y), junk, K, "train")
    assert torch.equal(train_mode[0].count, torch.full((K,), float(m), dtype=D64).to(train_mode[0].count.dtype))


def test_the_cdnv_bound_task_on_heldout_halves_and_on_the_random_init(tmp_path, one_thread):
    """One tiny training read twice: the default bound (train features vs test) and the held-out one
    with the random initialisation beside it; the held-out rows are computed from half of each test
    class, the random-init rows carry variant baseline=random_init."""
    import pandas as pd

    from ncbench.runner.suite import run_tasks
    from ncbench.tasks import TaskSpec

    recipe = {"epochs": 2, "batch_size": 256, "lr": 0.05, "eval_every": 1, "checkpoint_every": 1}
    spec = lambda name, **o: TaskSpec(name=name, kind="cdnv_bound", version=1, dataset="digits",
                                      model="test_resnet", seed=0, recipe=recipe, options={"baselines": False, **o})
    _, (train, held) = run_tasks("s", [spec("cb_train"), spec("cb_held", bound_sample="heldout_halves",
                                                              bound_random_init=True)],
                                 tmp_path, progress=False, log=lambda m: None)
    a, b = (pd.read_csv(r.csv, keep_default_na=False) for r in (train, held))
    key = "bound_holds_fraction_nonvacuous"
    n_test = int(a[(a.metric == "test_error") & (a.split == "summary")].n_samples.iloc[0])
    trained = b[(b.metric == key) & (b.variant == "")]
    init = b[(b.metric == key) & (b.variant == "baseline=random_init")]
    assert len(trained) == len(init) == 1 and len(a[(a.metric == key) & (a.variant == "")]) == 1
    assert abs(int(trained.n_samples.iloc[0]) - n_test / 2) <= 5         # half of each of the 10 test classes
    assert a[a.metric == key].n_samples.iloc[0] != trained.n_samples.iloc[0]
    assert "baseline=random_init" not in set(a.variant)
    both = pd.concat([trained, init, b[(b.metric == "bound_vacuous_fraction")]])
    assert all(v == "" or 0.0 <= float(v) <= 1.0 for v in both.value)
    assert len(b[b.metric == "bound_vacuous_fraction"]) == 2                 # trained and random init
