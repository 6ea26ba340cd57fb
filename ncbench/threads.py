"""Temporarily set torch's CPU thread count (small batched solvers run faster on one thread)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` intra-op CPU threads (None: unchanged), then restore the old count.
    Thousands of tiny ops (UFM, layer-peeled, few-shot episodes) only pay synchronisation for threads."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
