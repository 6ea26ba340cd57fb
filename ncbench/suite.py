"""Running tasks: shared trajectories trained once, results per task written atomically as each
task finishes, finished tasks skipped by config hash (`force` redoes them)."""
from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ncbench.preflight import weights_identity
from ncbench.provenance import provenance
from ncbench.results.writer import write_json, write_long_csv, write_table_csv
from ncbench.tasks import TASK_KINDS
from ncbench.tasks.base import RunContext, Task, TaskSpec
from ncbench.training.distributed import is_main


@dataclass
class TaskRun:
    spec: TaskSpec
    status: str            # done | skipped | failed
    dir: Path
    seconds: float = 0.0
    error: str = ""

    @property
    def csv(self) -> Path:
        return self.dir / "results.csv"


def run_id_for(suite: str, specs: list[TaskSpec]) -> str:
    h = hashlib.sha1("".join(s.config_hash() for s in specs).encode()).hexdigest()[:8]
    return f"{suite}-{h}"


def is_done(spec: TaskSpec, task_dir: Path) -> bool:
    cfg = task_dir / "config.json"
    if not (cfg.exists() and (task_dir / "results.csv").exists()):
        return False
    try:
        return json.loads(cfg.read_text())["config_hash"] == spec.config_hash()
    except (ValueError, KeyError):
        return False


def run_tasks(suite: str, specs: list[TaskSpec], out_root: Path, *, force: bool = False,
              progress: bool = True, run_id: str | None = None, log=print) -> tuple[Path, list[TaskRun]]:
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"suite '{suite}' lists tasks twice: {sorted(dup)}")
    tasks: list[Task] = [TASK_KINDS.get(s.kind)(s) for s in specs]   # validates kinds and options first
    run_id = run_id or run_id_for(suite, specs)
    run_dir = Path(out_root) / run_id
    ctx = RunContext(run_dir, run_dir / "_trajectories", progress, force=force)
    for t in tasks:                                 # probes of all tasks, so each run trains once
        for cfg in t.trajectories():
            ctx.probes.setdefault(cfg.key(), {}).update(t.probes())
    main = is_main()   # under torchrun every rank runs the tasks (collectives), rank 0 writes
    if not main:
        log = lambda message: None  # noqa: E731
    else:
        write_json(run_dir / "suite.json", {"suite": suite, "run_id": run_id, "tasks": [s.to_dict() for s in specs]})
    runs = []
    for task in tasks:
        spec = task.spec
        task_dir = run_dir / spec.name
        if not force and is_done(spec, task_dir):
            log(f"[{spec.name}] already done (config {spec.config_hash()}): {task_dir / 'results.csv'}")
            runs.append(TaskRun(spec, "skipped", task_dir))
            continue
        log(f"[{spec.name}] running {spec.kind} v{spec.version} on {spec.dataset} with {spec.model} ({spec.device})")
        t0 = time.perf_counter()
        prov = provenance(spec.device)
        ctx.out_dir = task_dir
        ctx.trained = []
        try:
            out = task.run(ctx)
        except KeyboardInterrupt:
            log(f"[{spec.name}] interrupted: rerun the same command to resume from the last checkpoint")
            raise
        except Exception as e:  # one failing task is recorded, the suite goes on
            runs.append(TaskRun(spec, "failed", task_dir, time.perf_counter() - t0, f"{type(e).__name__}: {e}"))
            if main:
                write_json(task_dir / "error.json", {"error": str(e), "traceback": traceback.format_exc()})
            log(f"[{spec.name}] FAILED: {type(e).__name__}: {e}")
            continue
        if not main:
            runs.append(TaskRun(spec, "done", task_dir, time.perf_counter() - t0))
            continue
        context = {"run_id": run_id, "task": spec.name, "task_version": spec.version, "model": spec.model,
                   "pretrained": weights_identity(spec), "dataset": spec.dataset,
                   "seed": spec.seed, "precision": out.meta.get("precision", "fp32"),
                   "config_hash": spec.config_hash(), **prov}
        for name, df in out.tables.items():
            write_table_csv(task_dir / f"{name}.csv", df)
        write_long_csv(task_dir / "results.csv", out.rows, context)
        df = pd.read_csv(task_dir / "results.csv")
        try:
            plots = [Path(p).name for p in task.plot(df, task_dir)]   # beside results.csv
        except Exception as e:  # a plot never costs the numbers
            plots = []
            log(f"[{spec.name}] plot failed ({type(e).__name__}: {e}); the CSVs are written")
        seconds = time.perf_counter() - t0
        write_json(task_dir / "config.json", {"spec": spec.to_dict(), "config_hash": spec.config_hash(),
                                              "provenance": prov, "seconds": seconds, "plots": plots,
                                              "meta": out.meta, "training": _unique(ctx.trained)})
        (task_dir / "error.json").unlink(missing_ok=True)
        runs.append(TaskRun(spec, "done", task_dir, seconds))
        log(f"[{spec.name}] done in {seconds:.1f}s: {task_dir / 'results.csv'}")
    return run_dir, runs


def _unique(trained: list[dict]) -> list[dict]:
    """Who trained each trajectory the task read (one entry per trajectory): `provenance` says who
    measured, this says who trained (versions, git hash, time, world size, training seconds)."""
    seen = {}
    for t in trained:
        seen.setdefault(t["trajectory"], t)
    return list(seen.values())


def summary_table(runs: list[TaskRun]) -> pd.DataFrame:
    """Headline (`split == "summary"`) metrics of each finished task, one row per task and metric."""
    frames = []
    for r in runs:
        if r.csv.exists():
            df = pd.read_csv(r.csv)
            frames.append(df[df["split"] == "summary"][["task", "metric", "value"]])
    if not frames:
        return pd.DataFrame(columns=["task", "metric", "value"])
    return pd.concat(frames, ignore_index=True)
