"""Running tasks: shared trajectories trained once, results per task written atomically as each
task finishes, finished tasks skipped by config hash (`force` redoes them).

Each task folder is written under a file lock (`<task>/.lock`, filelock): a second process running
the same task into the same `--out` waits for the first (it says so once), then finds the task
finished and skips it. A task whose results cannot be written (full disk, read-only folder) is
recorded as failed with a one-line reason and the suite goes on. config.json records each results
file's row count and sha256 (`ncbench.results.integrity`); a task counts as done only when they match.
"""
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
from ncbench.results.integrity import integrity_problems, record_files
from ncbench.results.names import check_name
from ncbench.results.writer import (
    ResultsWriteError,
    ensure_dir,
    remove_stale_temporaries,
    write_json,
    write_long_csv,
    write_table_csv,
)
from ncbench.tasks import TASK_KINDS
from ncbench.tasks.base import RunContext, Task, TaskSpec
from ncbench.training.distributed import is_main
from ncbench.training.run_status import RunStatus, worst


@dataclass
class TaskRun:
    spec: TaskSpec
    status: str            # done | skipped | failed
    dir: Path
    seconds: float = 0.0
    error: str = ""
    run_status: str = "ok"     # ok | diverged | failed: did the trained runs it read do what their recipe meant
    run_reason: str = ""

    @property
    def csv(self) -> Path:
        return self.dir / "results.csv"


def run_id_for(suite: str, specs: list[TaskSpec]) -> str:
    h = hashlib.sha1("".join(s.config_hash() for s in specs).encode()).hexdigest()[:8]
    return f"{suite}-{h}"


LOCK_NAME = ".lock"
"""The lock file of a task folder (held while the task runs and writes)."""


def is_done(spec: TaskSpec, task_dir: Path, log=None) -> bool:
    """Finished with this config hash, and its results files are the ones the run wrote."""
    cfg_path = task_dir / "config.json"
    if not (cfg_path.exists() and (task_dir / "results.csv").exists()):
        return False
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        if cfg["config_hash"] != spec.config_hash():
            return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    problems = integrity_problems(task_dir, cfg)
    if problems and log:
        log(f"[{spec.name}] the results in {task_dir} are not intact ({'; '.join(problems)}): recomputing")
    return not problems


def _task_lock(task_dir: Path, name: str, timeout: float | None, log):
    """The acquired lock of `task_dir`; waits (saying so) while another process holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(task_dir / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
        return lock
    except Timeout:
        pass
    except OSError as e:
        raise ResultsWriteError(task_dir / LOCK_NAME, e) from None
    log(f"[{name}] another ncbench process is running this task into {task_dir} (lock {LOCK_NAME}): waiting "
        f"for it to finish" + (f" (at most {timeout:g} s)" if timeout is not None else ""))
    try:
        lock.acquire(timeout=-1 if timeout is None else timeout)
    except Timeout:
        raise TimeoutError(f"{task_dir / LOCK_NAME} is held by another ncbench process running the same task; "
                           f"wait for it to finish, then rerun (its finished tasks are skipped)") from None
    return lock


def run_tasks(suite: str, specs: list[TaskSpec], out_root: Path, *, force: bool = False,
              progress: bool = True, run_id: str | None = None, log=print,
              lock_timeout: float | None = None) -> tuple[Path, list[TaskRun]]:
    """Run `specs` into `out_root/<run_id>/<task>/`; returns the run folder and one TaskRun per task.

    Bad names (a task or suite named `../x`) and an `out_root` that cannot be written are errors
    before any work. `lock_timeout`: seconds to wait for another process holding a task's lock
    (None: wait as long as it runs); after it, that task fails and the suite goes on.
    """
    check_name("suite name", suite)
    for s in specs:
        check_name("task name", s.name)
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"suite '{suite}' lists tasks twice: {sorted(dup)}")
    tasks: list[Task] = [TASK_KINDS.get(s.kind)(s) for s in specs]   # validates kinds and options first
    run_id = check_name("run id", run_id or run_id_for(suite, specs))
    run_dir = Path(out_root) / run_id
    ctx = RunContext(run_dir, run_dir / "_trajectories", progress, force=force)
    for t in tasks:                                 # probes of all tasks, so each run trains once
        for cfg in t.trajectories():
            ctx.probes.setdefault(cfg.key(), {}).update(t.probes())
    main = is_main()   # under torchrun every rank runs the tasks (collectives), rank 0 writes
    if not main:
        log = lambda message: None
    else:   # the run folder must be writable before any work (a regular file, read-only: one clear error)
        write_json(run_dir / "suite.json", {"suite": suite, "run_id": run_id, "tasks": [s.to_dict() for s in specs]})
    runs = []
    for task in tasks:
        try:
            runs.append(_run_one(task, ctx, run_dir, run_id, force, main, log, lock_timeout))
        except (ResultsWriteError, TimeoutError, ValueError) as e:   # this task's folder: the suite goes on
            runs.append(TaskRun(task.spec, "failed", run_dir / task.spec.name, 0.0, str(e)))
            log(f"[{task.spec.name}] FAILED: {e}")
    return run_dir, runs


def _run_one(task: Task, ctx: RunContext, run_dir: Path, run_id: str, force: bool, main: bool, log,
             lock_timeout: float | None) -> TaskRun:
    spec = task.spec
    task_dir = run_dir / spec.name
    if not main:   # under torchrun only rank 0 writes, so only rank 0 locks (the others would deadlock)
        return _measure(task, ctx, task_dir, run_id, force, main, log)
    ensure_dir(task_dir)
    lock = _task_lock(task_dir, spec.name, lock_timeout, log)
    try:
        remove_stale_temporaries(task_dir)
        return _measure(task, ctx, task_dir, run_id, force, main, log)
    finally:
        lock.release()


def _measure(task: Task, ctx: RunContext, task_dir: Path, run_id: str, force: bool, main: bool, log) -> TaskRun:
    """Run one task (or skip it when done) and write its files; OS errors of the writes fail the task."""
    spec = task.spec
    if not force and is_done(spec, task_dir, log if main else None):
        log(f"[{spec.name}] already done (config {spec.config_hash()}): {task_dir / 'results.csv'}")
        cfg = json.loads((task_dir / "config.json").read_text(encoding="utf-8"))
        return TaskRun(spec, "skipped", task_dir, run_status=cfg.get("status", "ok"),
                       run_reason=cfg.get("status_reason", ""))
    log(f"[{spec.name}] running {spec.kind} v{spec.version} on {spec.dataset} with {spec.model} ({spec.device})")
    t0 = time.perf_counter()
    prov = provenance(spec.device)
    ctx.out_dir = task_dir
    ctx.trained, ctx.statuses, ctx.min_train_accuracy = [], [], spec.min_train_accuracy
    try:
        out = task.run(ctx)
    except KeyboardInterrupt:
        log(f"[{spec.name}] interrupted: rerun the same command to resume from the last checkpoint")
        raise
    except Exception as e:  # noqa: BLE001 - one failing task is recorded, the suite goes on
        run = TaskRun(spec, "failed", task_dir, time.perf_counter() - t0, f"{type(e).__name__}: {e}")
        log(f"[{spec.name}] FAILED: {type(e).__name__}: {e}")
        if main:
            try:
                write_json(task_dir / "error.json", {"error": str(e), "traceback": traceback.format_exc()})
            except ResultsWriteError as w:
                log(f"[{spec.name}] and its error.json could not be written either: {w}")
        return run
    if not main:
        return TaskRun(spec, "done", task_dir, time.perf_counter() - t0)
    status = worst([*ctx.statuses, RunStatus(out.meta.get("status", "ok"), out.meta.get("status_reason", ""))])
    if not status.ok:
        log(f"[{spec.name}] {status.status.upper()}: {status.reason} (its rows carry status={status.status}; "
            f"leaderboards do not rank it)")
    context = {"run_id": run_id, "task": spec.name, "task_version": spec.version, "model": spec.model,
               "pretrained": weights_identity(spec.checkpoint, spec.pretrained), "dataset": spec.dataset,
               "seed": spec.seed, "precision": out.meta.get("precision", "fp32"),
               "status": status.status, "status_reason": status.reason,
               "config_hash": spec.config_hash(), **prov}
    (task_dir / "config.json").unlink(missing_ok=True)   # the folder is "done" again only once all is written
    written = []
    for name, df in out.tables.items():
        check_name(f"table of task {spec.name}", name)
        written.append(write_table_csv(task_dir / f"{name}.csv", df).name)
    written.insert(0, write_long_csv(task_dir / "results.csv", out.rows, context).name)
    df = pd.read_csv(task_dir / "results.csv")
    try:
        plots = [Path(p).name for p in task.plot(df, task_dir)]   # beside results.csv
    except Exception as e:  # noqa: BLE001 - a plot never costs the numbers
        plots = []
        log(f"[{spec.name}] plot failed ({type(e).__name__}: {e}); the CSVs are written")
    seconds = time.perf_counter() - t0
    write_json(task_dir / "config.json", {"spec": spec.to_dict(), "config_hash": spec.config_hash(),
                                          "provenance": prov, "seconds": seconds, "plots": plots,
                                          "meta": out.meta, "training": _unique(ctx.trained),
                                          "status": status.status, "status_reason": status.reason,
                                          "files": record_files(task_dir, written)})
    (task_dir / "error.json").unlink(missing_ok=True)
    log(f"[{spec.name}] done in {seconds:.1f}s: {task_dir / 'results.csv'}")
    return TaskRun(spec, "done", task_dir, seconds, run_status=status.status, run_reason=status.reason)


def _unique(trained: list[dict]) -> list[dict]:
    """Who trained each trajectory the task read (one entry per trajectory): `provenance` says who
    measured, this says who trained (versions, git hash, time, world size, training seconds)."""
    seen = {}
    for t in trained:
        seen.setdefault(t["trajectory"], t)
    return list(seen.values())


def summary_table(runs: list[TaskRun]) -> pd.DataFrame:
    """Headline (`split == "summary"`) metrics of each finished task, one row per task and metric
    (a failed task's folder may hold an older or damaged results.csv: it is not read)."""
    frames = []
    for r in runs:
        if r.status in ("done", "skipped") and r.csv.exists():
            df = pd.read_csv(r.csv)
            frames.append(df[df["split"] == "summary"][["task", "metric", "value"]])
    if not frames:
        return pd.DataFrame(columns=["task", "metric", "value"])
    return pd.concat(frames, ignore_index=True)
