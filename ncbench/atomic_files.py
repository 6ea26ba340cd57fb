"""Atomic file replacement, now owned by `ncbench.run_files` (one module for every read, replacement
and deletion in a run folder); these names stay importable for existing callers."""
from __future__ import annotations

from pathlib import Path

from ncbench.run_files import replacing, save_torch, temporary_path

__all__ = ["replacing", "temporary_path", "torch_save"]


def torch_save(obj, path: str | Path) -> Path:
    """`torch.save(obj, path)`, atomically (the folder is created if needed)."""
    return save_torch(obj, path)
