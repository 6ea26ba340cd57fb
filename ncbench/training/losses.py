"""Losses beyond torch's: dot regression for a fixed ETF classifier (Yang et al. 2022, SPEC §7), squentropy.

`L = ½ · mean_i (w_{y_i}ᵀ h_i − ‖w_{y_i}‖ ‖h_i‖)² / ‖h_i‖`, with `‖h_i‖` treated as a constant
(detached). Yang et al. 2022 ("Inducing neural collapse in imbalanced learning", NeurIPS, eq. 14)
write `L_DR(h, W*) = ½ (w_yᵀh − √(E_W E_H))²` under the norm constraints `‖w‖² = E_W`, `‖h‖² ≤ E_H`;
their code (`reg_dot_loss`) puts the current lengths `‖w_y‖ ‖h‖` in the target and divides by
`‖h‖`, which ncbench follows (tests/test_imbalance_etf.py checks it on a case computed by hand). The gradient `∂L/∂h_i = (1/N) (w_yᵀh_i − ‖w_y‖‖h_i‖)/‖h_i‖ · w_y` pulls each feature
towards the direction of its own class vector only; unlike cross-entropy it has no repulsion from
the other (e.g. majority) classes, which is the point for imbalanced data. The trainer uses it with
`recipe.loss = "dot_regression"` on `head.project(h)` and `head.weight` of a `FixedETFHead`.
"""
from __future__ import annotations

import torch

NORM_EPS = 1e-8   # ‖h‖ is clamped here (as in the reference code) so a zero feature gives no NaN


def dot_regression_loss(features: torch.Tensor, labels: torch.Tensor, etf_weight: torch.Tensor, *,
                        norms: torch.Tensor | None = None) -> torch.Tensor:
    """`½ mean((w_yᵀh − ‖w_y‖‖h‖)² / ‖h‖)` of features `(N, d)`, labels `(N,)`, classifier `(K, d)`.

    `norms` (N,) replaces the detached `‖h‖` (default `features.norm(dim=1).detach()`, clamped at
    1e-8); it exists so the gradient can be checked with `‖h‖` held fixed. `‖w_y‖` is not detached
    (the ETF is a buffer, so it carries no gradient anyway). Computed in at least float32.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be (N, d), got shape {tuple(features.shape)}")
    if etf_weight.ndim != 2 or etf_weight.shape[1] != features.shape[1]:
        raise ValueError(f"etf_weight must be (K, d) with d = features.shape[1] = {features.shape[1]}, "
                         f"got {tuple(etf_weight.shape)}: pass head.project(h) and head.weight")
    if labels.shape != (features.shape[0],):
        raise ValueError(f"labels must be (N,) = ({features.shape[0]},), got {tuple(labels.shape)}")
    dtype = torch.promote_types(torch.promote_types(features.dtype, etf_weight.dtype), torch.float32)
    h = features.to(dtype)                                           # fp16/bf16 (autocast) -> fp32
    w = etf_weight.to(dtype)[labels]                                 # (N, d) the target rows
    if norms is None:
        norms = h.detach().norm(dim=1)
    norms = norms.to(dtype).clamp_min(NORM_EPS)
    dot = (h * w).sum(1)
    return 0.5 * ((dot - w.norm(dim=1) * norms) ** 2 / norms).mean()


def squentropy_loss(logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0) -> torch.Tensor:
    """Squentropy (Hui, Belkin & Wright 2023, "Cut your losses with squentropy", ICML):
    `mean_i [CE(z_i, y_i) + 1/(K−1) · Σ_{j≠y_i} z_ij²]`, cross-entropy plus the mean squared logit
    of the incorrect classes (the square loss towards 0 on them). `label_smoothing` smooths the CE term
    as `F.cross_entropy` does. Computed in at least float32."""
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be (N, K) with K >= 2, got shape {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must be (N,) = ({logits.shape[0]},), got {tuple(labels.shape)}")
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    K = z.shape[1]
    ce = torch.nn.functional.cross_entropy(z, labels, label_smoothing=label_smoothing)
    wrong = torch.ones_like(z).scatter_(1, labels.view(-1, 1), 0.0)
    return ce + ((z * z) * wrong).sum(1).mean() / (K - 1)
