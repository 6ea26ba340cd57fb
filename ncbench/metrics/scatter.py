"""Symmetric rank-k accumulation of a scatter matrix `T += Xᵀ X` into one triangle.

A scatter matrix is symmetric, so half of the GEMM `Xᵀ X` is wasted work. On CPU in float64 the
update fills the lower triangle only, with one thread pool in the hot path:

- one intra-op thread: BLAS `dsyrk` (scipy's OpenBLAS, given one thread: it runs in the caller, no
  pool), about 1.8× faster than torch's GEMM;
- more threads: torch's GEMM on the blocks on and below the diagonal (`(b+1)/2b` of the full GEMM's
  work for `b` blocks of `BLOCK` columns), in torch's own pool. OpenBLAS's pthread pool beside
  torch's OpenMP pool made the engine *slower* with two threads than with one: its workers spin for
  a while after every call (OpenBLAS's thread time-out) on the cores torch's threads then need.

Elsewhere (CUDA, other dtypes) torch's `addmm` of the full matrix. `full()` returns the symmetric
matrix. The summation order, and so the last bits, depend on the thread count, as every reduction
does (SPEC §11: the thread count is part of what a run records).
"""
from __future__ import annotations

import torch

from ncbench.threads import match_blas_threads

try:
    from scipy.linalg.blas import dsyrk as _dsyrk
except ImportError:  # pragma: no cover - scipy is a dependency; the GEMM path still works
    _dsyrk = None

#: Column-block width of the multi-threaded triangular update.
BLOCK = 256


class ScatterAccumulator:
    """Running `Σ Xᵀ X` of the row blocks `X (B, d)` given to `add` (float64 on `device`)."""

    def __init__(self, dim: int, device: torch.device | str, dtype: torch.dtype = torch.float64):
        self.dim, self.device, self.dtype = dim, torch.device(device), dtype
        self._tri = self.device.type == "cpu" and dtype == torch.float64
        # The lower triangle of this C-ordered tensor is what dsyrk writes as the upper triangle of
        # the Fortran-ordered d×d array (its transpose), and what the blocked GEMMs write.
        self._t = torch.zeros(dim, dim, dtype=dtype, device=self.device)
        self._blocks = [(s, min(s + BLOCK, dim)) for s in range(0, dim, BLOCK)]

    def set_block(self, width: int) -> None:
        """Use column blocks of `width` in the multi-threaded path (tests exercise many blocks)."""
        self._blocks = [(s, min(s + width, self.dim)) for s in range(0, self.dim, width)]

    def add(self, x: torch.Tensor) -> None:
        """`T += xᵀ x` for a (B, d) block."""
        if x.shape[0] == 0:
            return
        if not self._tri:
            self._t.addmm_(x.T, x)
        elif torch.get_num_threads() == 1 and _dsyrk is not None:
            match_blas_threads()                              # OpenBLAS at one thread: no pool
            a = x.contiguous().numpy().T                      # (d, B), Fortran order: no copy
            _dsyrk(1.0, a, beta=1.0, c=self._t.numpy().T, lower=0, overwrite_c=1)
        else:
            for i, (r0, r1) in enumerate(self._blocks):       # block row i, columns 0..i
                xr = x[:, r0:r1].T
                for c0, c1 in self._blocks[:i + 1]:
                    self._t[r0:r1, c0:c1].addmm_(xr, x[:, c0:c1])

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
