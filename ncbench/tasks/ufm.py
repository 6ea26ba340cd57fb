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
from dataclasses import fields
from typing import ClassVar

from ncbench.tasks.base import Task, TaskOutput, TaskSpec, register_task, rows_from
from ncbench.theory import UFMConfig, run_ufm
from ncbench.threads import torch_threads

_DEFAULT = UFMConfig()
_CONFIG_KEYS = tuple(f.name for f in fields(UFMConfig) if f.name not in ("class_counts", "seed", "device"))


def coerce_option(task: str, name: str, value, default):
    """`value` converted to the type of `default` (YAML reads `1e-3` as a string), or a ValueError."""
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(default, int):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(float(value))
        if isinstance(default, float):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"task '{task}': option {name}={value!r} must be a {type(default).__name__} "
                         f"(write floats such as 1.0e-3 with a dot: YAML reads 1e-3 as text)") from None


@register_task("ufm")
class UFMTask(Task):
    MODEL_FREE = ("ufm", "none")
    default_options: ClassVar[dict] = {
        "class_counts": None, "K": len(_DEFAULT.class_counts), "n": _DEFAULT.class_counts[0],
        **{k: getattr(_DEFAULT, k) for k in _CONFIG_KEYS}, "log_every": 100}

    def __init__(self, spec: TaskSpec):
        super().__init__(spec)
        self.log_every = coerce_option(spec.name, "log_every", self.options["log_every"], 1)
        if self.log_every < 1:
            raise ValueError(f"task '{spec.name}': log_every must be >= 1, got {self.log_every}")
        self.config = self.ufm_config()           # bad options fail here, before any task runs

    def ufm_config(self) -> UFMConfig:
        o, name = self.options, self.spec.name
        counts = o["class_counts"]
        if counts is None:
            K, n = (coerce_option(name, k, o[k], 1) for k in ("K", "n"))
            counts = (n,) * K
        elif "K" in self.spec.options or "n" in self.spec.options:
            raise ValueError(f"task '{name}': give either class_counts or K and n, not both")
        elif not isinstance(counts, (list, tuple)):
            raise ValueError(f"task '{name}': class_counts must be a list of per-class sample counts, got {counts!r}")
        else:
            counts = tuple(coerce_option(name, "class_counts", c, 1) for c in counts)
        kw = {k: coerce_option(name, k, o[k], getattr(_DEFAULT, k)) for k in _CONFIG_KEYS}
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
        config = {"loss": cfg.loss, "num_classes": cfg.num_classes, "class_counts": list(cfg.class_counts),
                  "dim": cfg.dim, "lambda_w": cfg.lambda_w, "lambda_h": cfg.lambda_h, "init_scale": cfg.init_scale}
        return TaskOutput(rows, meta={"class_counts": list(cfg.class_counts), "precision": "fp64",
                                      "last_step": int(last["step"]), "config": config,
                                      "diverged": not math.isfinite(last["objective"])})
