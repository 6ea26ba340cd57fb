"""What identifies a cached training run, so that a cache hit is the run that would be trained now.

The key of a trajectory hashes (i) its configuration (data set, class subset, imbalance, model and
kwargs, recipe, seed, head, device, world size), (ii) the **content** of a `--checkpoint` file
(SHA-256: a file replaced in place is another run) and (iii) the **training code**: the SHA-256 of
every Python source of the `ncbench` package plus the torch, timm and numpy versions. The rule is
deliberately conservative: any edit to ncbench's code, or another torch/timm/numpy, trains again
(a hand-maintained version number would be forgotten the one time it matters). `--force` always
trains again.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 (16 hex digits) of ncbench's Python sources and the torch/timm/numpy versions."""
    import numpy
    import timm
    import torch

    root = Path(__file__).resolve().parent.parent   # the ncbench package
    h = hashlib.sha256(f"torch={torch.__version__}|timm={timm.__version__}|numpy={numpy.__version__}".encode())
    for src in sorted(root.rglob("*.py")):
        h.update(str(src.relative_to(root)).encode() + b"\0" + src.read_bytes() + b"\0")
    return h.hexdigest()[:16]
