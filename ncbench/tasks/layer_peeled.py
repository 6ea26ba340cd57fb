r"""`layer_peeled`: minority collapse in the layer-peeled model, solved to optimality (SPEC §7–8).

Fang, He, Long, Su 2021 (review §3.1.5, eq. 14): K classes, the first K_A with n samples, the rest
n/R; features and classifier under the budgets E_H and E_W. For a log grid of R,
`ncbench.theory.solve_lpm` finds the optimum and the task reports the mean pairwise cosine of the
minority classifier rows: −1/(K−1) at R = 1, rising with R, 1 (collapse) past a threshold that grows
with E_H. Options: `K`, `K_A`, `ratios` (a list of R ≥ 1, or a log grid `{min, max, num}` =
`numpy.geomspace`), `E_H` (one feature budget), `E_W`; solver: `restarts`, `dim` (None: 2K). Several
budgets are a group declared in YAML (`sweep: {E_H: [1, 2, 5, 10]}`, `ncbench.specs.groups`), with
the trend of the threshold along E_H declared beside it (`aggregate:`, Spearman ρ).

Encoding (tidy long rows, SPEC §9). One row per R and quantity: `split="train"` (the optimum of the
training objective), `epoch` and `layer` empty (nothing evolves in time, no network), `variant`
`R=<R>` (6 significant digits; in a group `E_H=<E_H>,R=<R>`), `metric` one of `minority_cosine`,
`minority_norm`, `objective`, `kkt_residual`. The exact curve is also the extra table `curve.csv`
(columns E_H, ratio, minority_cosine, minority_norm, objective, kkt_residual, iterations).

Summary rows: `threshold_ratio`, the first R where the minority cosine exceeds 0, and
`collapse_ratio`, the first R where it reaches 1 − 1e-3 (minority collapse proper), both
interpolated in log R (`ncbench.theory.threshold_ratio`) and empty (NaN) when the grid never gets
there; plus `max_kkt_residual` (solver check). Minority rows that vanish (w_k = 0, possible for small
E_H when K_A ≥ K − K_A) have no cosine: NaN, never counted as crossing.

No data set or backbone is involved: results record dataset "layer_peeled", model "none" and device
"cpu" (the solver is CPU float64) whatever the command line says; `recipe` is not read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ncbench.provenance.threads import torch_threads
from ncbench.tasks.base import Task, TaskMeta, TaskOutput, TaskSpec, register_task, rows_from
from ncbench.tasks.options import Options, coerce, coerced
from ncbench.theory import (
    LPMConfig,
    minority_collapse_curve,
    threshold_ratio,
)

COLLAPSED = 1 - 1e-3          # minority cosine counted as full collapse
ROW_METRICS = ("minority_cosine", "minority_norm", "objective", "kkt_residual")


def ratio_variant(ratio: float) -> str:
    """The `variant` of one point of the R grid, e.g. `"R=3.16228"`."""
    return f"R={ratio:.6g}"


@dataclass(frozen=True)
class LayerPeeledOptions(Options):
    K: int = 10
    K_A: int = 3
    ratios: dict | list = field(default_factory=lambda: {"min": 1.0, "max": 1000.0, "num": 13})
    E_H: float = 5.0
    E_W: float = 1.0
    restarts: int = 2
    dim: int | None = None
    CHECKS: ClassVar[dict] = {"K": coerced(int), "K_A": coerced(int), "restarts": coerced(int),
                              "dim": coerced(int, optional=True), "E_H": coerced(float), "E_W": coerced(float)}


@dataclass(frozen=True)
class LayerPeeledMeta(TaskMeta):
    precision: str
    num_classes: int              # K
    num_majority: int             # K_A
    vanished_points: int          # points of the curve where the minority cosine is undefined (NaN)


@register_task("layer_peeled")
class LayerPeeledTask(Task):
    MODEL_FREE = ("layer_peeled", "none")
    OPTIONS: ClassVar[type[Options]] = LayerPeeledOptions
    META: ClassVar[type[TaskMeta]] = LayerPeeledMeta

    def __init__(self, spec: TaskSpec):
        super().__init__(spec)
        o = self.options
        self.ratios = self._ratios(o["ratios"])
        self.energies_h = [o["E_H"]]
        labels = [ratio_variant(r) for r in self.ratios]
        if len(set(labels)) != len(labels):
            raise ValueError(f"task '{spec.name}': ratios must be distinct to 6 significant digits")
        try:                                       # bad K, K_A, budgets fail here, before any task runs
            for e in self.energies_h:
                LPMConfig(num_classes=o["K"], num_majority=o["K_A"], ratio=self.ratios[0], energy_h=e,
                          energy_w=float(o["E_W"]), dim=o["dim"], restarts=o["restarts"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"task '{spec.name}': {err}") from None

    def _numbers(self, name: str, values) -> list[float]:
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"task '{self.spec.name}': options.{name} must be a non-empty list of numbers, "
                             f"got {values!r}")
        try:
            return [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"task '{self.spec.name}': options.{name} must hold numbers, got {values!r}") from None

    def _ratios(self, spec) -> list[float]:
        if isinstance(spec, dict):
            if set(spec) != {"min", "max", "num"}:
                raise ValueError(f"task '{self.spec.name}': a ratio grid is {{min, max, num}} (log-spaced), got "
                                 f"keys {sorted(spec)}")
            grid = {}
            for k, t in (("min", float), ("max", float), ("num", int)):
                try:
                    grid[k] = coerce(spec[k], t)
                except ValueError as e:
                    raise ValueError(f"task '{self.spec.name}': options.ratios.{k} {e}, got {spec[k]!r}") from None
            lo, hi, num = grid["min"], grid["max"], grid["num"]
            if not 1 <= lo <= hi or num < 1:
                raise ValueError(f"task '{self.spec.name}': ratio grid needs 1 <= min <= max and num >= 1, got {spec}")
            ratios = np.geomspace(lo, hi, num).tolist()
        else:
            ratios = self._numbers("ratios", spec)
        if min(ratios) < 1:
            raise ValueError(f"task '{self.spec.name}': imbalance ratios R must be >= 1, got {min(ratios)}")
        return sorted(ratios)

    def run(self, ctx) -> TaskOutput:
        o = self.options
        with torch_threads(1):                   # K×2K matrices: threads only add overhead
            curve = minority_collapse_curve(o["K"], o["K_A"], self.ratios, self.energies_h,
                                            energy_w=float(o["E_W"]), restarts=o["restarts"], dim=o["dim"],
                                            seed=self.spec.seed)
        rows = []
        for p in curve.itertuples(index=False):
            rows += rows_from({m: getattr(p, m) for m in ROW_METRICS}, split="train", variant=ratio_variant(p.ratio))
        (e,) = self.energies_h
        summary = {"threshold_ratio": threshold_ratio(curve)[e],
                   "collapse_ratio": threshold_ratio(curve, level=COLLAPSED)[e],
                   "max_kkt_residual": float(curve["kkt_residual"].max())}
        rows += rows_from(summary, split="summary")
        meta = LayerPeeledMeta("fp64", o["K"], o["K_A"], int(curve["minority_cosine"].isna().sum()))
        return TaskOutput(rows, tables={"curve": curve}, meta=meta, precision=meta.precision)
