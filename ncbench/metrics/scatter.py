"""Symmetric rank-k accumulation of a scatter matrix `T += Xᵀ X` into one triangle.

A scatter matrix is symmetric, so half of the GEMM `Xᵀ X` is wasted work. On CPU in float64 the
update is BLAS `dsyrk` (upper triangle only, scipy's OpenBLAS, about 1.8× faster than torch's GEMM on
this project's machines); elsewhere (CUDA, other dtypes) torch's `addmm` of the full matrix. The
BLAS pool is given torch's intra-op thread count (`ncbench.provenance.threads.match_blas_threads`), so one
`--threads` setting governs both. `full()` returns the symmetric matrix.
"""
from __future__ import annotations

import torch

from ncbench.provenance.threads import match_blas_threads

try:
    from scipy.linalg.blas import dsyrk as _dsyrk
except ImportError:  # pragma: no cover - scipy is a dependency; the GEMM path still works
    _dsyrk = None


class ScatterAccumulator:
    """Running `Σ Xᵀ X` of the row blocks `X (B, d)` given to `add` (float64 on `device`)."""

    def __init__(self, dim: int, device: torch.device | str, dtype: torch.dtype = torch.float64):
        self.dim, self.device, self.dtype = dim, torch.device(device), dtype
        self._tri = self.device.type == "cpu" and dtype == torch.float64 and _dsyrk is not None
        # dsyrk writes the upper triangle of a Fortran-ordered d×d array, i.e. the lower
        # triangle of this C-ordered tensor (its transpose).
        self._t = torch.zeros(dim, dim, dtype=dtype, device=self.device)

    def add(self, x: torch.Tensor) -> None:
        """`T += xᵀ x` for a (B, d) block."""
        if x.shape[0] == 0:
            return
        if self._tri:
            match_blas_threads()
            a = x.contiguous().numpy().T                      # (d, B), Fortran order: no copy
            _dsyrk(1.0, a, beta=1.0, c=self._t.numpy().T, lower=0, overwrite_c=1)
        else:
            self._t.addmm_(x.T, x)

    def add_matrix(self, t: torch.Tensor) -> None:
        """`T += t` for a symmetric d×d matrix `t` (e.g. another accumulator's `full()`)."""
        self._t += t.to(self._t.device, self._t.dtype)

    def full(self) -> torch.Tensor:
        """The symmetric d×d matrix accumulated so far (a new tensor, exactly symmetric: its lower
        triangle mirrored)."""
        return torch.tril(self._t) + torch.tril(self._t, -1).T

    def diagonal(self) -> torch.Tensor:
        """The diagonal `Σ x_i²` per coordinate (a view)."""
        return self._t.diagonal()

    def reset(self) -> None:
        self._t.zero_()
