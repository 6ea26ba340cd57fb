"""torch.distributed glue: rank/world size, exact (unpadded) sharding, all-reduce of plain sums."""
from __future__ import annotations

import os

import torch


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of `indices`: every index exactly once over all ranks (no padding)."""
    if not is_distributed():
        return indices
    return torch.tensor_split(indices, world_size())[rank()]


def all_reduce_sum(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    if not is_distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def init_from_env(device: str) -> None:
    """Join the process group torchrun describes (RANK/WORLD_SIZE set), NCCL on CUDA else gloo."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not is_distributed():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
