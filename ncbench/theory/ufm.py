"""Unconstrained-features model (UFM): features `H ∈ R^{d×N}`, classifier `W ∈ R^{K×d}`, bias `b`
are free variables, optimised by full-batch gradient descent (review §3.1; Mixon et al. 2020,
Zhu et al. 2021, Tirer & Bruna 2022, Yang et al. 2022 for the fixed-ETF classifier).

Objective (Zhu et al. 2021; review §3.1.2), with `Z = W H + b 1ᵀ`:

    (1/N) Σ_i ℓ(z_i, y_i) + λ_W/2 ‖W‖_F² + λ_H/2 ‖H‖_F² + λ_b/2 ‖b‖²

`ℓ` is cross-entropy or the squared error `½‖z − e_y‖²`; bias-free (`bias=False`) and
unregularised-bias (`lambda_b=0`) cases included. Gradients are written out (`∇_Z = (P − Y)/N` for
CE, `(Z − Y)/N` for MSE), so a step costs three small matmuls; a test checks them against autograd.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from ncbench.metrics import collapse_metrics
from ncbench.models.etf_head import simplex_etf

DTYPE = torch.float64


@dataclass(frozen=True)
class UFMConfig:
    """One UFM simulation. `class_counts[k]` = n_k (balanced when all equal).

    `fixed_etf`: W is frozen to the unit-row simplex ETF `ncbench.models.etf_head.simplex_etf(dim, K,
    seed)` (Yang et al. 2022) and not regularised.
    `init_scale`: standard deviation of the Gaussian initialisation of H, W, b (Mixon et al.: near 0
    gives strong collapse). Plain gradient descent by default (`momentum=0`, the discretised
    gradient flow the theory is about); `momentum` > 0 uses Nesterov's accelerated gradient.
    """

    class_counts: tuple[int, ...] = (5, 5, 5, 5)
    dim: int = 8
    loss: Literal["ce", "mse"] = "ce"
    lambda_w: float = 5e-3
    lambda_h: float = 5e-3
    lambda_b: float = 0.0
    bias: bool = True
    fixed_etf: bool = False
    init_scale: float = 1.0
    lr: float = 1.0
    momentum: float = 0.0
    steps: int = 2000
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        counts = tuple(int(c) for c in self.class_counts)
        object.__setattr__(self, "class_counts", counts)
        if len(counts) < 2 or min(counts) < 1:
            raise ValueError(f"class_counts needs >= 2 classes with >= 1 sample each, got {counts}")
        if self.loss not in ("ce", "mse"):
            raise ValueError(f"loss must be 'ce' or 'mse', got {self.loss!r}")
        if min(self.lambda_w, self.lambda_h, self.lambda_b) < 0:
            raise ValueError("regularisation strengths lambda_w, lambda_h, lambda_b must be >= 0")
        if self.fixed_etf and self.dim < self.num_classes:
            raise ValueError(f"a fixed simplex ETF of K={self.num_classes} rows needs dim >= K, "
                             f"got dim={self.dim}")
        if self.lr <= 0 or not 0 <= self.momentum < 1 or self.steps < 0 or self.init_scale < 0:
            raise ValueError("need lr > 0, 0 <= momentum < 1, steps >= 0, init_scale >= 0")

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)

    @property
    def balanced(self) -> bool:
        return len(set(self.class_counts)) == 1


@dataclass
class UFMRun:
    """Logged rows and the final parameters: `features (N, d)` (= Hᵀ), `weight (K, d)`, `bias (K,)`."""

    rows: list[dict[str, float]]
    features: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    labels: torch.Tensor
    config: UFMConfig = field(repr=False)


def labels_for(counts: tuple[int, ...], device: str | torch.device = "cpu") -> torch.Tensor:
    """Labels sorted by class: `n_0` zeros, then `n_1` ones, ..."""
    return torch.repeat_interleave(torch.arange(len(counts), device=device),
                                   torch.tensor(counts, device=device))


def ufm_objective(cfg: UFMConfig, H: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None,
                  labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(data loss, full objective) of `H (d×N)`, `W (K×d)`, `b (K,)`; autograd-differentiable."""
    Z = W @ H
    if b is not None:
        Z = Z + b.unsqueeze(1)
    N = labels.numel()
    if cfg.loss == "ce":
        loss = torch.nn.functional.cross_entropy(Z.T, labels, reduction="sum") / N
    else:
        Y = torch.nn.functional.one_hot(labels, cfg.num_classes).T.to(Z.dtype)
        loss = 0.5 * ((Z - Y) ** 2).sum() / N
    reg = 0.5 * cfg.lambda_h * (H * H).sum()
    if not cfg.fixed_etf:
        reg = reg + 0.5 * cfg.lambda_w * (W * W).sum()
    if b is not None:
        reg = reg + 0.5 * cfg.lambda_b * (b * b).sum()
    return loss, loss + reg


def ufm_gradients(cfg: UFMConfig, H: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None,
                  Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Closed-form gradients of the objective: `G = ∇_Z` then `(GHᵀ + λ_W W, WᵀG + λ_H H, G1 + λ_b b)`.

    `Y (K×N)` is the one-hot label matrix. W's gradient is zero when it is a fixed ETF.
    """
    Z = W @ H
    if b is not None:
        Z = Z + b.unsqueeze(1)
    N = Y.shape[1]
    G = (torch.softmax(Z, dim=0) - Y) / N if cfg.loss == "ce" else (Z - Y) / N
    gW = torch.zeros_like(W) if cfg.fixed_etf else G @ H.T + cfg.lambda_w * W
    gH = W.T @ G + cfg.lambda_h * H
    gb = None if b is None else G.sum(1) + cfg.lambda_b * b
    return gW, gH, gb


def snc_residuals(H: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None,
                  counts: tuple[int, ...]) -> dict[str, float]:
    """Strong neural collapse (Mixon et al. 2020), each relative to the norm of its target:

    SNC1 ‖AAᵀ − √n(I − 11ᵀ/K)‖, SNC2 ‖F − (1/√n)(A⊗1_n)ᵀ‖, SNC3 ‖b − 1/K‖ (A = W, F = H sorted by
    class, n = N/K). Defined for balanced classes only: NaN otherwise. No bias counts as b = 0.
    """
    K = len(counts)
    if len(set(counts)) != 1:
        return {"snc1": math.nan, "snc2": math.nan, "snc3": math.nan}
    n = counts[0]
    eye = torch.eye(K, dtype=W.dtype, device=W.device)
    t1 = math.sqrt(n) * (eye - 1.0 / K)
    t2 = W.repeat_interleave(n, dim=0).T / math.sqrt(n)
    t3 = torch.full((K,), 1.0 / K, dtype=W.dtype, device=W.device)
    bb = torch.zeros_like(t3) if b is None else b

    def rel(x: torch.Tensor, t: torch.Tensor) -> float:
        return float(torch.linalg.norm(x - t) / torch.linalg.norm(t))

    return {"snc1": rel(W @ W.T, t1), "snc2": rel(H, t2), "snc3": rel(bb, t3)}


def run_ufm(cfg: UFMConfig, log_every: int = 100) -> UFMRun:
    """Full-batch gradient descent (optionally Nesterov) on the UFM. Logs a row at step 0, every
    `log_every` steps and after the last step: `step, loss` (data term), `objective` (with the
    regularisers), `grad_norm`, the SPEC §2 metrics from `ncbench.metrics.collapse_metrics` and, for
    MSE, `snc1..snc3`. A non-finite objective at a logged step stops the run (lower `lr`)."""
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    dev = torch.device(cfg.device)
    K, d = cfg.num_classes, cfg.dim
    labels = labels_for(cfg.class_counts, dev)
    N = labels.numel()
    Y = torch.nn.functional.one_hot(labels, K).T.to(DTYPE)
    g = torch.Generator().manual_seed(cfg.seed)
    H = (cfg.init_scale * torch.randn(d, N, generator=g, dtype=DTYPE)).to(dev)
    W = (cfg.init_scale * torch.randn(K, d, generator=g, dtype=DTYPE)).to(dev)
    b = (cfg.init_scale * torch.randn(K, generator=g, dtype=DTYPE)).to(dev) if cfg.bias else None
    if cfg.fixed_etf:
        W = simplex_etf(d, K, cfg.seed, dtype=DTYPE).to(dev)
    params = [p for p in (W, H, b) if p is not None]
    velocity = [torch.zeros_like(p) for p in params]
    rows: list[dict[str, float]] = []

    def log(step: int) -> bool:
        loss, obj = ufm_objective(cfg, H, W, b, labels)
        grads = [x for x in ufm_gradients(cfg, H, W, b, Y) if x is not None]
        row = {"step": float(step), "loss": float(loss), "objective": float(obj),
               "grad_norm": math.sqrt(sum(float((x * x).sum()) for x in grads))}
        row.update(collapse_metrics(H.T, labels, W, b, num_classes=K))
        if cfg.loss == "mse":
            row.update(snc_residuals(H, W, b, cfg.class_counts))
        rows.append(row)
        return math.isfinite(row["objective"])

    mu = cfg.momentum
    for step in range(cfg.steps):
        if step % log_every == 0 and not log(step):
            break                                          # diverged: the last row holds the NaNs
        # Nesterov (Sutskever et al. 2013): gradient at the look-ahead point x + μv.
        look = [p + mu * v for p, v in zip(params, velocity)] if mu else params
        lW, lH = look[0], look[1]
        lb = look[2] if b is not None else None
        grads = [x for x in ufm_gradients(cfg, lH, lW, lb, Y) if x is not None]
        for p, v, gr in zip(params, velocity, grads):
            v.mul_(mu).sub_(cfg.lr * gr)
            p.add_(v)
    else:
        log(cfg.steps)
    return UFMRun(rows, H.T.contiguous(), W, b if b is not None else torch.zeros(K, dtype=DTYPE, device=dev),
                  labels, cfg)


def simulate_ufm(cfg: UFMConfig, log_every: int = 100) -> list[dict[str, float]]:
    """The logged rows of `run_ufm` (one dict per logged step)."""
    return run_ufm(cfg, log_every).rows
