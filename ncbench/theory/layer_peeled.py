"""Layer-peeled model (LPM) and minority collapse (Fang, He, Long, Su 2021; review §3.1.5, eq. 14).

    min_{W,H}  (1/N) Σ_k Σ_{i≤n_k} CE(W h_i^k, k)
    s.t. (1/K) Σ_k (1/n_k) Σ_i ‖h_i^k‖² ≤ E_H,   (1/K) Σ_k ‖w_k‖² ≤ E_W

with step imbalance: the first K_A classes have n_A samples, the other K_B = K − K_A have n_A / R.

Reductions used (both exact):
1. One feature per class. CE is convex in h and the budget is a per-class average of ‖h‖², so
   replacing a class's features by their mean (Jensen) lowers the loss and does not raise the
   budget: at the optimum all features of a class coincide. The problem becomes
   min Σ_k π_k CE(W h_k, k) s.t. (1/K)Σ‖h_k‖² ≤ E_H, (1/K)Σ‖w_k‖² ≤ E_W, with the class-size
   weights π_k = n_k/N (R/(K_A R + K_B) for majority, 1/(K_A R + K_B) for minority classes).
   With class-balanced weights 1/K the problem would be the balanced one for every R: the
   imbalance enters only through π.
2. Active budgets. At the optimum both constraints hold with equality (as in Fang et al. 2021;
   checked here against projected gradient descent on the two balls in the tests). We
   therefore optimise on the product of two spheres, W = √(K E_W) V/‖V‖_F, H = √(K E_H) U/‖U‖_F,
   an unconstrained smooth problem in (V, U), solved by L-BFGS with a strong-Wolfe line search
   in float64 (projected gradient descent on the two balls reaches the same points, much slower
   near the collapse threshold where the curvature vanishes). The feature dimension defaults to
   d = 2K, where the LPM is equivalent to its convex semidefinite relaxation (Fang et al. 2021),
   and the best of a few random restarts is kept.

For small E_H and K_A >= K_B the optimum can set the minority classifier rows to zero (all of the
classifier budget goes to the majority); their cosine is then undefined and reported as NaN, with
`minority_norm` = mean minority ‖w_k‖ / √E_W (1 at R = 1) saying so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from ncbench.metrics.minority import minority_cosine

DTYPE = torch.float64
VANISHED = 1e-5  # minority rows shorter than this (relative to √E_W) count as zero


@dataclass(frozen=True)
class LPMConfig:
    """One LPM instance: K classes, the first `num_majority` (K_A) are the majority, ratio R."""

    num_classes: int = 10
    num_majority: int = 5
    ratio: float = 1.0
    energy_h: float = 5.0
    energy_w: float = 1.0
    dim: int | None = None
    seed: int = 0
    restarts: int = 2
    max_iter: int = 2000
    tol: float = 1e-11

    def __post_init__(self) -> None:
        K, KA = self.num_classes, self.num_majority
        if K < 2 or not 1 <= KA <= K - 2:
            raise ValueError(f"need num_classes >= 3 and 1 <= num_majority <= num_classes - 2 (at least two "
                             f"minority classes to compare), got K={K}, K_A={KA}")
        if not self.ratio >= 1:
            raise ValueError(f"imbalance ratio R = n_majority / n_minority must be >= 1, got {self.ratio}")
        if self.energy_h <= 0 or self.energy_w <= 0:
            raise ValueError(f"budgets E_H, E_W must be > 0, got {self.energy_h}, {self.energy_w}")
        if self.dim is not None and self.dim < K:
            raise ValueError(f"dim must be >= num_classes ({K}) for the LPM, got {self.dim}")
        if self.restarts < 1 or self.max_iter < 1:
            raise ValueError("restarts and max_iter must be >= 1")

    @property
    def feature_dim(self) -> int:
        return self.dim if self.dim is not None else 2 * self.num_classes

    def class_weights(self) -> torch.Tensor:
        """π_k = n_k/N for step imbalance: R for the K_A majority classes, 1 for the rest, normalised."""
        K, KA = self.num_classes, self.num_majority
        w = torch.ones(K, dtype=DTYPE)
        w[:KA] = self.ratio
        return w / w.sum()


@dataclass
class LPMSolution:
    """Optimal classifier `weight (K×d)`, one feature per class `features (K×d)`, diagnostics."""

    weight: torch.Tensor
    features: torch.Tensor
    objective: float
    kkt_residual: float
    iterations: int
    config: LPMConfig

    @property
    def minority_norm(self) -> float:
        """Mean ‖w_k‖ over minority classes relative to √E_W (the row norm of the balanced optimum)."""
        rows = self.weight[self.config.num_majority:]
        return float(rows.norm(dim=1).mean()) / math.sqrt(self.config.energy_w)

    @property
    def minority_cosine(self) -> float:
        """Mean pairwise cosine between minority classifier rows (Fang et al.; SPEC §7); NaN when the
        rows vanished (`minority_norm` < VANISHED)."""
        if self.minority_norm < VANISHED:
            return math.nan
        return minority_cosine(self.weight, range(self.config.num_majority, self.config.num_classes))


def _objective(cfg: LPMConfig, V: torch.Tensor, U: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    K = cfg.num_classes
    W = math.sqrt(K * cfg.energy_w) * V / V.norm()
    H = math.sqrt(K * cfg.energy_h) * U / U.norm()
    logits = H @ W.T                                   # row k: logits of class k's feature
    return (pi * (torch.logsumexp(logits, 1) - logits.diagonal())).sum()


def _solve_once(cfg: LPMConfig, seed: int) -> LPMSolution:
    K, d = cfg.num_classes, cfg.feature_dim
    g = torch.Generator().manual_seed(seed)
    V = torch.randn(K, d, generator=g, dtype=DTYPE).requires_grad_(True)
    U = torch.randn(K, d, generator=g, dtype=DTYPE).requires_grad_(True)
    pi = cfg.class_weights()
    opt = torch.optim.LBFGS([V, U], lr=1.0, max_iter=cfg.max_iter, history_size=50,
                            tolerance_grad=cfg.tol, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        f = _objective(cfg, V, U, pi)
        f.backward()
        return f

    opt.step(closure)
    iters = int(opt.state[opt._params[0]].get("n_iter", 0))
    with torch.no_grad():
        W = math.sqrt(K * cfg.energy_w) * V / V.norm()
        H = math.sqrt(K * cfg.energy_h) * U / U.norm()
    # Riemannian gradient on the spheres (the Euclidean gradient in V is tangent, scaled by 1/‖V‖).
    Vn, Un = V.detach() / V.detach().norm(), U.detach() / U.detach().norm()
    Vn.requires_grad_(True)
    Un.requires_grad_(True)
    f = _objective(cfg, Vn, Un, pi)
    gV, gU = torch.autograd.grad(f, (Vn, Un))
    kkt = math.sqrt(float((gV * gV).sum() + (gU * gU).sum()))
    return LPMSolution(W, H, float(f.detach()), kkt, iters, cfg)


def solve_lpm(cfg: LPMConfig) -> LPMSolution:
    """Global-optimum estimate of the LPM: best objective over `cfg.restarts` seeded L-BFGS runs."""
    sols = [_solve_once(cfg, cfg.seed * 1000 + r) for r in range(cfg.restarts)]
    return min(sols, key=lambda s: s.objective)


def minority_collapse_curve(num_classes: int, num_majority: int, ratios, energy_h_list,
                            energy_w: float = 1.0, **solver) -> pd.DataFrame:
    """Minority cosine of the LPM optimum against R for each E_H (Fang et al. 2021, Fig. 3).

    Columns: E_H, ratio, minority_cosine, minority_norm, objective, kkt_residual, iterations.
    `solver` keywords (dim, seed, restarts, max_iter, tol) go to `LPMConfig`.
    """
    rows = []
    for e_h in energy_h_list:
        for r in ratios:
            cfg = LPMConfig(num_classes=num_classes, num_majority=num_majority, ratio=float(r),
                            energy_h=float(e_h), energy_w=float(energy_w), **solver)
            sol = solve_lpm(cfg)
            rows.append({"E_H": float(e_h), "ratio": float(r), "minority_cosine": sol.minority_cosine,
                         "minority_norm": sol.minority_norm,
                         "objective": sol.objective, "kkt_residual": sol.kkt_residual,
                         "iterations": float(sol.iterations)})
    return pd.DataFrame(rows)


def threshold_ratio(curve: pd.DataFrame, level: float = 0.0) -> dict[float, float]:
    """Per E_H, the first R at which the minority cosine exceeds `level`, interpolated linearly in
    log R between grid points (NaN when it never does, R of the first point when it starts above)."""
    out: dict[float, float] = {}
    for e_h, grp in curve.sort_values("ratio").groupby("E_H"):
        r = grp["ratio"].to_numpy(float)
        c = grp["minority_cosine"].to_numpy(float)
        above = (c > level).nonzero()[0]
        if len(above) == 0:
            out[float(e_h)] = math.nan
        elif above[0] == 0:
            out[float(e_h)] = float(r[0])
        else:
            i = above[0]
            t = (level - c[i - 1]) / (c[i] - c[i - 1])
            out[float(e_h)] = float(math.exp(math.log(r[i - 1]) + t * (math.log(r[i]) - math.log(r[i - 1]))))
    return out
