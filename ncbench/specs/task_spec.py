"""`TaskSpec`: a versioned task instance as data (one `tasks/<name>.yaml`), torch-free.

A spec declares what to measure (`kind`, `options`), on what (`dataset`, `model`, weights), with
which budget (`recipe`) and seed. A spec with `seeds:` or `sweep:` is a group: the runner expands it
into one member run per (sweep point, seed) (`ncbench.specs.groups`), lm-evaluation-harness style.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

from ncbench.core import identity
from ncbench.specs.schema import as_number, check_fields


@dataclass
class TaskSpec:
    """A versioned task instance: what to measure, on which data and backbone, with which budget."""

    name: str
    kind: str
    version: int
    description: str = ""
    dataset: str = "mnist5k"
    model: str = "resnet18"
    pretrained: bool | str = False
    checkpoint: str | None = None
    seed: int = 0
    recipe: dict | str = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    leaderboard: dict = field(default_factory=dict)
    tier: str = "cpu"
    data_dir: str | None = None
    download: bool = False
    device: str = "cpu"
    world_size: int = 1            # DDP processes (set by the CLI under torchrun); part of the identity
    min_train_accuracy: float | None = None   # below it a trained run is `failed` (ncbench.training.run_status)
    seeds: list[int] | None = None  # a group: one run per seed (ncbench.specs.groups)
    sweep: dict = field(default_factory=dict)      # a group: one run per point of these option values
    aggregate: list = field(default_factory=list)  # per-seed comparisons across the sweep's points
    variant: str = ""              # a group member: its sweep point (`ratio=10,classifier=etf`)
    source: str = ""
    overrides: dict = field(default_factory=dict)  # what the command line changed (`--recipe`, `--set`), recorded

    RUNTIME: ClassVar[tuple[str, ...]] = ("description", "leaderboard", "data_dir", "download", "source",
                                          "variant", "overrides")

    def __post_init__(self) -> None:
        """Every field against its annotation (`ncbench.specs.schema`), one line naming the file; a
        recipe value that YAML read as text but spells a number (`lr: 1.0e12`) becomes that number."""
        check_fields(self, f"task spec {self.source or self.name}")
        if isinstance(self.recipe, dict) and any(as_number(v) is not v for v in self.recipe.values()):
            self.recipe = {k: as_number(v) for k, v in self.recipe.items()}

    @classmethod
    def from_dict(cls, d: dict, source: str = "") -> TaskSpec:
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("name", "kind", "version") if k not in d]
        if missing:
            raise ValueError(f"task spec {source or d.get('name', '?')} lacks {', '.join(missing)}")
        unknown = sorted(set(d) - known)
        if unknown:
            import difflib
            hint = {u: difflib.get_close_matches(u, known, 1) for u in unknown}
            raise ValueError(f"task spec {source or d['name']}: unknown keys " + ", ".join(
                u + (f" (did you mean {h[0]}?)" if h else "") for u, h in hint.items()))
        return cls(**{**d, "source": source or d.get("source", "")})

    def to_dict(self) -> dict:
        return asdict(self)

    def config_hash(self) -> str:
        """Hash of everything that changes the numbers (not paths or descriptions; a checkpoint by the
        SHA-256 of its bytes, so a file replaced in place is another configuration)."""
        return identity.config_hash(self.to_dict(), self.RUNTIME)
