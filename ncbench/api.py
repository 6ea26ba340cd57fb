"""The Python API: `ncbench.run(task, model=..., data=...)`, the same runner as `ncbench run`.

`run` loads the task spec with the same overrides the command line applies (`--model`, `--dataset`,
`--checkpoint`, `--seed`/`--seeds`, `--epochs`, `--model-kwargs`, `--device`), checks it
(`ncbench.runner.preflight.check_spec`) and runs it with `ncbench.runner.suite.run_tasks`: the same spec gives the
same config hash, folder and numbers as the CLI. What the CLI cannot take:

- `model=nn.Module`: a feature extractor `(B, C, H, W) -> (B, d)`, named by the SHA-256 of its
  architecture and weights (`ncbench.models.in_memory`); trained by a trained-tier task, measured
  frozen by a `frozen_transfer` task;
- `data=(train, test)`: two map-style torch Datasets of `(image, label)`, named by the SHA-256 of their
  contents (`ncbench.data.in_memory`).

`RunResult.to_dict()` is also the document `ncbench run/suite --json` prints.
"""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


@dataclass(frozen=True, eq=False)
class TaskResult:
    """One task of a run: `status` done|skipped|failed (did it run), `run_status` ok|failed|diverged
    (did its training do what the recipe meant, SPEC §9), the reason, its folder and files."""

    task: str
    status: str
    run_status: str
    reason: str
    dir: Path
    files: tuple[Path, ...]

    @property
    def results_csv(self) -> Path:
        return self.dir / "results.csv"

    @property
    def ok(self) -> bool:
        return self.status != "failed" and self.run_status == "ok"


@dataclass(frozen=True, eq=False)
class RunResult:
    """What a run wrote: the run folder, each task's outcome, every tidy row (SPEC §9) and the headline
    summary (`split == "summary"`, final epoch, mean over seeds: task, variant, metric, value)."""

    run_dir: Path
    tasks: tuple[TaskResult, ...]
    results: pd.DataFrame
    summary: pd.DataFrame

    @property
    def ok(self) -> bool:
        """Every task ran and every training it read is `ok` (the CLI's exit status 0)."""
        return all(t.ok for t in self.tasks)

    @classmethod
    def from_runs(cls, run_dir: Path, runs) -> RunResult:
        """From `ncbench.runner.suite.run_tasks`'s folder and `TaskRun`s."""
        from ncbench.results.load import load_results
        from ncbench.runner.suite import summary_table

        tasks = tuple(TaskResult(r.spec.name, r.outcome, r.result_status, r.error or r.result_reason, Path(r.dir),
                                 _files(Path(r.dir)) if r.outcome != "failed" else ()) for r in runs)
        csvs = [t.results_csv for t in tasks if t.status != "failed" and t.results_csv.exists()]
        results = load_results(csvs) if csvs else pd.DataFrame()
        return cls(Path(run_dir), tasks, results, summary_table(runs))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready document: `ok`, `run_dir`, per task its status and files, the summary rows
        (NaN as null)."""
        return {"ok": self.ok, "run_dir": str(self.run_dir),
                "tasks": [{"task": t.task, "status": t.status, "run_status": t.run_status, "reason": t.reason,
                           "dir": str(t.dir), "results_csv": str(t.results_csv) if t.status != "failed" else None,
                           "files": [str(f) for f in t.files]} for t in self.tasks],
                "summary": [{"task": r.task, "variant": r.variant, "metric": r.metric, "value": _plain(r.value)}
                            for r in self.summary.itertuples(index=False)]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)


def _files(task_dir: Path) -> tuple[Path, ...]:
    """The files a finished task recorded in its config.json (CSVs, figures), config.json itself."""
    from ncbench.run_files import read_json

    try:
        cfg = read_json(task_dir / "config.json", task_dir)
    except (OSError, ValueError):
        return ()
    names = [*cfg.get("files", {}), *cfg.get("plots", []), "config.json"]
    return tuple(task_dir / n for n in dict.fromkeys(names))


def _plain(value) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def run(task: str | Path, *, model: Any = None, data: str | tuple | None = None,
        recipe: dict | str | None = None, seeds: int | Sequence[int] | None = None, out: str | Path = "results",
        epochs: int | None = None, arch: str | None = None, model_kwargs: dict | None = None,
        options: dict | None = None, device: str = "auto", threads: int | None = None, force: bool = False,
        progress: bool = True, data_dir: str | None = None, download: bool = False) -> RunResult:
    """Run task `task` (a name from `ncbench list tasks` or a YAML path) and return its `RunResult`.

    `model`: a timm name, a checkpoint file (a `Path`, or a str naming an existing file; architecture
    `arch` or the spec's) or an `nn.Module` feature extractor. `data`: a registered name,
    `imagefolder:PATH`, or a `(train, test)` pair of torch Datasets. `recipe`: a protocol name or a
    mapping of `ncbench.training.recipe.Recipe` fields over the spec's recipe. `seeds`: one seed, or
    several (a group: one run per seed). `progress`: bars and log lines on stderr.
    """
    from ncbench.provenance.threads import torch_threads
    from ncbench.runner.preflight import check_spec, resolve_device
    from ncbench.runner.suite import run_tasks
    from ncbench.specs import load_task

    overrides: dict[str, Any] = {"device": resolve_device(device), "data_dir": data_dir,
                                 "download": download or None}
    module = None
    if _is_checkpoint(model):
        overrides["checkpoint"] = str(model)
        overrides["model"] = arch
    elif isinstance(model, str):
        overrides["model"] = model
    elif model is not None:
        module = model
    if data is not None:
        overrides["dataset"] = _dataset_name(data)
    if seeds is not None:
        overrides.update(_seeds(seeds))
    spec = load_task(str(task), **overrides)
    if recipe is not None or epochs is not None:
        spec.recipe = _merged_recipe(spec.recipe, recipe, epochs)
    extra = dict(options or {})
    if model_kwargs is not None:
        extra["model_kwargs"] = {**dict(spec.options.get("model_kwargs") or {}), **model_kwargs}
    spec.options = {**spec.options, **extra}
    if module is not None:
        spec.model = _register_module(module, spec)
    log = (lambda message: print(message, file=sys.stderr)) if progress else (lambda message: None)
    with torch_threads(threads):
        check_spec(spec)
        run_dir, runs = run_tasks(spec.name, [spec], Path(out), force=force, progress=progress, log=log)
    return RunResult.from_runs(run_dir, runs)


def _is_checkpoint(model) -> bool:
    if isinstance(model, Path):
        return True
    return isinstance(model, str) and (model.endswith(CHECKPOINT_SUFFIXES) or Path(model).expanduser().is_file())


def _dataset_name(data) -> str:
    if isinstance(data, (str, Path)):
        return str(data)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        from ncbench.data.in_memory import register_pair

        return register_pair(*data)
    raise ValueError(f"data must be a data set name, 'imagefolder:PATH' or a (train, test) pair of torch Datasets, "
                     f"not {type(data).__name__}")


def _seeds(seeds) -> dict:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return {"seed": seeds}
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ValueError(f"seeds must be one integer or distinct non-negative integers, got {seeds!r}")
    return {"seeds": seeds}


def _merged_recipe(base: dict | str, recipe: dict | str | None, epochs: int | None) -> dict:
    """The spec's recipe with `recipe` (a protocol name replaces it; a mapping is laid over it) and
    `epochs`; checked by `Recipe.from_dict` (unknown keys with did-you-mean)."""
    from ncbench.training.recipe import Recipe

    merged = {"protocol": base} if isinstance(base, str) else dict(base or {})
    if isinstance(recipe, str):
        merged = {"protocol": recipe}
    elif recipe is not None:
        merged.update(recipe)
    if epochs is not None:
        merged["epochs"] = epochs
    Recipe.from_dict(merged)
    return merged


def _register_module(module, spec) -> str:
    """Register `module` for this run; its feature width from timm's attributes or a forward pass of two
    train images (refusing a model whose output is not `(B, d)` features)."""
    import torch

    from ncbench.models.backbone import feature_dim
    from ncbench.models.in_memory import register_module

    if not isinstance(module, torch.nn.Module):
        raise ValueError(  # noqa: TRY004 - a user input error: exit 2
            f"model must be a timm name, a checkpoint path or a torch.nn.Module, not {type(module).__name__}")
    if getattr(module, "num_classes", 0) and callable(getattr(module, "reset_classifier", None)):
        raise ValueError(f"model: this timm {type(module).__name__} has a {module.num_classes}-class classifier; "
                         "pass the feature extractor (timm.create_model(..., num_classes=0), or call "
                         "model.reset_classifier(0)): ncbench adds its own head")
    if getattr(module, "head_hidden_size", None) or getattr(module, "num_features", None):
        return register_module(module, feature_dim(module))
    from ncbench.data import load_dataset

    train = load_dataset(spec.dataset, "train", spec.data_dir, spec.download)
    if not hasattr(train, "batch"):
        raise ValueError(f"model: set model.num_features (its feature width): it cannot be inferred on the "
                         f"streamed data set {spec.dataset}")
    x, _ = train.batch(torch.arange(min(2, len(train))))
    was_training = module.training
    try:
        with torch.no_grad():
            h = module.eval()(x)
    except Exception as e:  # noqa: BLE001 - any failure of the user's forward is one clear line
        raise ValueError(f"model: its forward pass on two {spec.dataset} train images {tuple(x.shape)} failed "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    finally:
        module.train(was_training)
    if not isinstance(h, torch.Tensor) or h.ndim != 2:
        raise ValueError(f"model: its output on images {tuple(x.shape)} is "
                         f"{tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__}, not (B, d) "
                         "features: pass the feature extractor (pooled, no classifier)")
    return register_module(module, h.shape[1])
