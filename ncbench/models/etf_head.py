"""A fixed simplex-ETF classifier (SPEC §7; Zhu et al. 2021, Yang et al. 2022).

`W = (√(K/(K-1)) · P (I − 11ᵀ/K))ᵀ ∈ R^{K×d}` with `P ∈ R^{d×K}` a random partial orthogonal matrix
(`PᵀP = I`) from the QR factorisation of a seeded Gaussian matrix. Its rows are unit-norm with
pairwise cosine −1/(K−1): `W Wᵀ = (K/(K-1)) (I − 11ᵀ/K)`, the simplex equiangular tight frame that
neural collapse converges to, fixed from the start instead of learnt.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def simplex_etf(d: int, K: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The `(K, d)` simplex ETF `(√(K/(K-1)) P (I − 11ᵀ/K))ᵀ`, `P` from a seeded QR (needs d ≥ K ≥ 2).

    Built in float64 on the CPU with its own `torch.Generator(seed)` (the global RNG is untouched),
    then cast to `dtype`; the signs of `P`'s columns are fixed by `diag(R) > 0`, so `P` is Haar
    distributed and the same seed gives the same matrix on every machine.
    """
    if K < 2:
        raise ValueError(f"a simplex ETF needs K >= 2 classes, got K={K}")
    if d < K:
        raise ValueError(f"a simplex ETF of K={K} vectors needs dimension d >= K, got d={d}: project "
                         f"the features to K dimensions first (FixedETFHead does this)")
    g = torch.Generator().manual_seed(int(seed))
    A = torch.randn(d, K, generator=g, dtype=torch.float64)
    P, R = torch.linalg.qr(A)                               # reduced QR: P (d, K), PᵀP = I
    P = P * torch.sign(torch.diagonal(R)).unsqueeze(0)     # unique, Haar-distributed factor
    centring = torch.eye(K, dtype=torch.float64) - 1.0 / K
    M = math.sqrt(K / (K - 1)) * P @ centring              # (d, K), columns are the class vectors
    return M.T.contiguous().to(dtype)


class FixedETFHead(nn.Module):
    """Logits `W z` with `W` a fixed simplex ETF (a buffer, never trained) and no bias.

    With feature dimension `d >= K` the ETF lives in feature space and `z = h`. With `d < K` there
    is no K-vector simplex in R^d, so a learnable linear projection `z = A h` (`A ∈ R^{K×d}`, no bias
    unless `proj_bias`) maps the features to `d' = K` first (SPEC §7) and the ETF lives there.

    - `weight`: the fixed ETF `(K, d')`, the classifier acting on `project(h)`.
    - `project(h)`: the features the ETF acts on (`h` itself when there is no projection).
    - `effective_classifier()`: `(W A, A-bias term)` acting on the raw features `h`, for code that
      needs a classifier in feature space (`Backbone.classifier()`).

    Which features the collapse metrics should use: the projected ones, `project(h)` with `weight`.
    There the classifier is the exact ETF and "features collapse onto the fixed ETF" is what SPEC §7
    measures; `W A` on raw `h` is a valid linear classifier but has no fixed geometry. When
    `d >= K` both views coincide.
    """

    def __init__(self, in_features: int, num_classes: int, seed: int = 0, *, proj_bias: bool = False):
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be positive, got {in_features}")
        self.in_features, self.num_classes, self.seed = int(in_features), int(num_classes), int(seed)
        self.dim = max(self.in_features, self.num_classes)   # d': where the ETF lives
        self.projection: nn.Linear | None = (
            nn.Linear(self.in_features, self.num_classes, bias=proj_bias)
            if self.in_features < self.num_classes else None)
        self.register_buffer("weight", simplex_etf(self.dim, self.num_classes, seed))

    @property
    def out_features(self) -> int:
        return self.num_classes

    @property
    def bias(self) -> None:
        """No bias: `Backbone` and the metrics read `head.bias` like an `nn.Linear`'s."""
        return None

    @property
    def has_projection(self) -> bool:
        return self.projection is not None

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """The features the ETF classifies: `A h (+ a)` when `d < K`, else `h` unchanged."""
        return h if self.projection is None else self.projection(h)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.project(h)
        return z @ self.weight.to(z.dtype).T

    def effective_classifier(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(W_eff, b_eff)` with `forward(h) = h W_effᵀ + b_eff` on the raw features (detached).

        `W_eff = W A` and `b_eff = W a` (None when the projection has no bias) with a projection;
        `(W, None)` without.
        """
        W = self.weight.detach()
        if self.projection is None:
            return W, None
        A = self.projection.weight.detach()
        a = self.projection.bias
        return W @ A.to(W.dtype), None if a is None else W @ a.detach().to(W.dtype)

    def extra_repr(self) -> str:
        proj = f", projection {self.in_features}->{self.dim}" if self.projection is not None else ""
        return f"in_features={self.in_features}, num_classes={self.num_classes}, seed={self.seed}{proj}"
