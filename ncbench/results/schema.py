"""The tidy long-format result schema of SPEC §9: one row per metric value."""
from __future__ import annotations

COLUMNS: tuple[str, ...] = (
    "run_id", "task", "task_version", "model", "pretrained", "dataset", "split", "epoch",
    "layer", "variant", "metric", "value", "seed", "status", "status_reason", "n_samples",
    "ncbench_version", "torch_version",
    "timm_version", "device", "precision", "git_hash", "config_hash", "started_at",
)
"""Column order of every long-format results CSV.

`layer` names a network layer only; `variant` names the sweep point a row belongs to, as
`key=value` pairs joined by commas in the sweep's declared order (`ratio=10,classifier=etf`, `S=5`;
empty: no sweep; see `ncbench.results.variants`); `metric` is a fixed name per task kind (no `/`, `=`
or `[`). `status` is the run's outcome (`ok` / `diverged` / `failed`, SPEC §9), with
`status_reason` saying why when it is not `ok`."""

ROW_KEYS = ("split", "epoch", "layer", "variant", "metric", "value", "n_samples")
"""What a task supplies per row; the rest comes from the run's provenance."""

MEMBERS_FOLDER = "_members"
"""Inside a group's folder, the folder of its member runs; the group's own results.csv holds all their
rows, so readers (`load_results`) skip it, as they skip `_trajectories`."""
