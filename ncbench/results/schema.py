"""The tidy long-format result schema of SPEC §9: one row per metric value."""
from __future__ import annotations

COLUMNS: tuple[str, ...] = (
    "run_id", "task", "task_version", "model", "pretrained", "dataset", "split", "epoch",
    "layer", "metric", "value", "seed", "n_samples", "ncbench_version", "torch_version",
    "timm_version", "device", "precision", "git_hash", "config_hash", "started_at",
)
"""Column order of every long-format results CSV."""

ROW_KEYS = ("split", "epoch", "layer", "metric", "value", "n_samples")
"""What a task supplies per row; the rest comes from the run's provenance."""
