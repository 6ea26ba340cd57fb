"""`ufm`: the unconstrained-features model simulated by gradient descent, as ground truth (SPEC §8).

Features, classifier and bias are free variables (Mixon et al. 2020, Zhu et al. 2021; review §3.1);
`ncbench.theory.run_ufm` runs full-batch GD in float64 and logs the SPEC §2 metrics. Options map
onto `ncbench.theory.UFMConfig`: `class_counts` (a list of n_k), or `K` classes of `n` samples each
(not both); `dim, loss, lambda_w, lambda_h, lambda_b, bias, fixed_etf, init_scale, lr, momentum,
steps`; plus `log_every`. The seed and the device are the spec's.

Rows: `split="train"`, **`epoch` = the GD step** (the UFM has no epochs: one full-batch step is its
unit of time), layer empty, `n_samples` = N, one row per logged step (0, every `log_every`, the
last) and metric: SPEC §2, `loss` (data term), `objective` (with the regularisers), `grad_norm` and,
for MSE, the strong-collapse residuals `snc1..snc3` (Mixon et al.; empty for imbalanced classes).
Summary rows: the values at the last logged step. A diverging run stops at the first non-finite
objective (lower `lr`); its summary then holds the NaNs (written empty).

No data set or backbone is involved: results record dataset "ufm" and model "none" whatever
`--dataset`/`--model` say, and `recipe` (so `--epochs`) is not read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, make_dataclass
from typing import Any, ClassVar

from ncbench.provenance.threads import torch_threads
from ncbench.tasks.base import Task, TaskMeta, TaskOutput, TaskSpec, register_task, rows_from
from ncbench.tasks.options import Options, coerce, coerced
from ncbench.theory import UFMConfig, run_ufm

_DEFAULT = UFMConfig()
_CONFIG_KEYS = tuple(f.name for f in fields(UFMConfig) if f.name not in ("class_counts", "seed", "device"))


def class_counts(value):
    """null (then `K` classes of `n`) or a list of per-class sample counts, each read as an int."""
    if value is None:
        return value
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a list of per-class sample counts")  # noqa: TRY004 - a user input error: exit 2
    return tuple(coerce(c, int) for c in value)


UFMOptions = make_dataclass(
    "UFMOptions", [("class_counts", Any, None), ("K", int, len(_DEFAULT.class_counts)), ("n", int, _DEFAULT.class_counts[0]),
                   *((k, Any, getattr(_DEFAULT, k)) for k in _CONFIG_KEYS), ("log_every", int, 100)],
    bases=(Options,), frozen=True,
    namespace={"__doc__": "`ncbench.theory.UFMConfig`'s fields (defaults and types from it), `K` classes of `n` "
                          "or `class_counts`, and `log_every`.",
               "CHECKS": {"class_counts": class_counts, "K": coerced(int), "n": coerced(int),
                          **{k: coerced(type(getattr(_DEFAULT, k))) for k in _CONFIG_KEYS},
                          "log_every": coerced(int, low=1)}})


@dataclass(frozen=True)
class UFMSetup(TaskMeta):
    """The UFM problem that was solved (`UFMConfig`'s facts the figures title with)."""
    loss: str
    num_classes: int
    class_counts: list[int]
    dim: int
    lambda_w: float
    lambda_h: float
    init_scale: float


@dataclass(frozen=True)
class UFMMeta(TaskMeta):
    class_counts: list[int]
    precision: str
    last_step: int               # the last logged optimisation step
    config: UFMSetup
    diverged: bool               # the objective became non-finite


@register_task("ufm")
class UFMTask(Task):
    MODEL_FREE = ("ufm", "none")
    OPTIONS: ClassVar[type[Options]] = UFMOptions
    META: ClassVar[type[TaskMeta]] = UFMMeta

    def __init__(self, spec: TaskSpec):
        super().__init__(spec)
        self.log_every = self.options["log_every"]
        self.config = self.ufm_config()           # bad options fail here, before any task runs

    def ufm_config(self) -> UFMConfig:
        o, name = self.options, self.spec.name
        counts = o["class_counts"]
        if counts is None:
            counts = (o["n"],) * o["K"]
        elif "K" in self.spec.options or "n" in self.spec.options:
            raise ValueError(f"task '{name}': give either class_counts or K and n, not both")
        kw = {k: o[k] for k in _CONFIG_KEYS}
        try:
            return UFMConfig(class_counts=counts, seed=self.spec.seed, device=self.spec.device, **kw)
        except ValueError as e:
            raise ValueError(f"task '{name}': {e}") from None

    def run(self, ctx) -> TaskOutput:
        cfg = self.config
        with torch_threads(1):                   # d×N matrices of a few hundred entries: threads only cost
            run = run_ufm(cfg, self.log_every)
        N = sum(cfg.class_counts)
        rows = []
        for r in run.rows:
            rows += rows_from({k: v for k, v in r.items() if k != "step"}, split="train", epoch=int(r["step"]),
                              n_samples=N)
        last = run.rows[-1]
        rows += rows_from({k: v for k, v in last.items() if k != "step"}, split="summary", epoch=int(last["step"]),
                          n_samples=N)
        config = UFMSetup(cfg.loss, cfg.num_classes, list(cfg.class_counts), cfg.dim, cfg.lambda_w, cfg.lambda_h,
                          cfg.init_scale)
        meta = UFMMeta(list(cfg.class_counts), "fp64", int(last["step"]), config,
                       not math.isfinite(last["objective"]))
        return TaskOutput(rows, meta=meta, precision=meta.precision)
