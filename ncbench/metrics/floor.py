"""The cost floor of the metric engine: the work no exact float64 implementation can avoid.

- pass one: cast the `(N, d)` features to float64 and one symmetric rank-N update (`syrk` on CPU,
  the GEMM `XᵀX` on CUDA) of all of them, centred beforehand (the centring is not counted);
- pass two: cast to float64 and one GEMM of the features against the stacked means and
  classifier `[μ; W]ᵀ` (2K columns).

The benchmarks time these beside `CollapseStats` / `NearestCentrePass` in the same process and
report engine/floor ratios; `make gpu-check` does the same on CUDA.
"""
from __future__ import annotations

import torch

from ncbench.metrics.scatter import ScatterAccumulator


def pass_one_floor(features: torch.Tensor, centred: torch.Tensor) -> torch.Tensor:
    """Cast `features` to float64, then `centredᵀ centred` (float64, already centred) in one call."""
    features.to(torch.float64)
    acc = ScatterAccumulator(centred.shape[1], centred.device)
    acc.add(centred)
    return acc.full()


def pass_two_floor(features: torch.Tensor, means: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Cast `features` to float64 and one GEMM against `[means; weight]ᵀ` `(d, 2K)`."""
    stacked = torch.cat([means, weight]).to(torch.float64).T.contiguous()
    return features.to(torch.float64) @ stacked
