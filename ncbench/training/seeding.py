"""Deterministic seeds for python, numpy and torch (CPU and CUDA)."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The RNG of one epoch's shuffling/augmentation: a pure function of (seed, epoch), so a run
    resumed at any epoch draws exactly what the uninterrupted run drew."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)
