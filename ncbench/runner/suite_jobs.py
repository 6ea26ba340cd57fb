"""A suite's independent runs in parallel (`--jobs N`) or as Slurm jobs (`--launcher slurm`).

Two phases over the plan of `ncbench.runner.suite.prepare_run`:

1. **trainings**: every distinct training run (trajectory, by its cache key) that the tasks read and
   that is not cached yet, one job each: a worker trains it with the probes of every task that reads
   it and stores it in the run's trajectory cache (`<run>/_trajectories/<key>/`), as the sequential
   runner would. A failed training fails the tasks that read it (their error.json says why).
2. **tasks**: every task, and every member of a group (seeds, sweep points), one job each: it
   measures from the cache (a pure cache hit: same key, every probe present) and writes its folder
   under its lock, skipping it when done (config hash), as `ncbench.runner.suite.run_member`. The groups'
   own files (results.csv, aggregate.csv, figures) are then written here, from their members.

Jobs run in worker processes (`ncbench.runner.launcher`), each with the thread count of a `--jobs 1` run,
so every value is bit-identical to `--jobs 1` on the same machine; one progress bar counts the jobs
of both phases, each job's messages are printed when it ends. One job per run (no group, one
training) runs in this process.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ncbench.runner.jobs import JobSlots
from ncbench.runner.launcher import Outcome, WorkerPool, run_slurm, slurm_executor
from ncbench.runner.suite import (
    RunPlan,
    RunSettings,
    TaskRun,
    finish_group,
    prepare_run,
    run_member,
    run_tasks,
)
from ncbench.specs.groups import is_group
from ncbench.tasks.base import TaskSpec
from ncbench.tasks.context import TrajectoryStore


@dataclass
class Training:
    """Phase 1 job: train the run `key`, with the probes of the tasks (`specs`) that read it."""

    key: str
    specs: list[TaskSpec]
    cache_dir: Path
    force: bool


@dataclass
class Measurement:
    """Phase 2 job: one task (or group member) `spec` into `task_dir`."""

    spec: TaskSpec
    run_dir: Path
    task_dir: Path
    run_id: str
    force: bool
    plot: bool
    lock_timeout: float | None


def train(job: Training) -> str:
    """In a worker: train (or find cached) the run `job.key`; returns its label. Under a lock beside
    the cache folder, so two ncbench processes never train the same run at once."""
    from filelock import FileLock

    from ncbench.tasks import TASK_KINDS
    from ncbench.training.trajectory import Trajectory

    cfg, probes = None, {}
    for spec in job.specs:
        task = TASK_KINDS.get(spec.kind)(spec)
        for c in task.trajectories():
            if c.key() == job.key:
                cfg = c
                probes.update(task.probes())
    if cfg is None:   # pragma: no cover - the plan took the key from these tasks
        raise ValueError(f"no task of {[s.name for s in job.specs]} reads the training run {job.key}")
    job.cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(job.cache_dir / f"{job.key}.lock")):
        Trajectory(cfg, job.cache_dir, progress=False).run(probes, force=job.force)
    return f"{cfg.model} on {cfg.dataset} (seed {cfg.seed})"


def measure(job: Measurement) -> tuple[TaskRun, list[str]]:
    """In a worker: run one task from the cached trainings; returns its TaskRun and its messages."""
    from ncbench.tasks import TASK_KINDS

    messages: list[str] = []
    task = TASK_KINDS.get(job.spec.kind)(job.spec)
    store = TrajectoryStore(job.run_dir / "_trajectories", job.run_dir, progress=False)   # never retrains: phase 1 did
    settings = RunSettings(job.run_id, store, job.force, True, messages.append, job.lock_timeout)
    return run_member(task, job.task_dir, settings, job.plot), messages


def run_suite(suite: str, specs: list[TaskSpec], out_root: Path, slots: JobSlots, *, launcher: str = "local",
              slurm: dict | None = None, slurm_threads: int | None = None, force: bool = False,
              progress: bool = True, run_id: str | None = None, log=print,
              lock_timeout: float | None = None) -> tuple[Path, list[TaskRun]]:
    """`ncbench.runner.suite.run_tasks` with the independent runs as parallel jobs (`launcher` `local`: in
    `slots.jobs` worker processes; `slurm`: one submitit job each, `slurm` its parameters and
    `slurm_threads` each job's threads, None: the node's default)."""
    if launcher == "local" and slots.jobs <= 1:
        return run_tasks(suite, specs, out_root, force=force, progress=progress, run_id=run_id, log=log,
                         lock_timeout=lock_timeout)
    plan = prepare_run(suite, specs, out_root, force=force, progress=progress, run_id=run_id, log=log)
    executor = slurm_executor(plan.run_dir / "_submitit", slurm) if launcher == "slurm" else None
    trainings = _trainings(plan, force)
    measurements = [(spec, task, Measurement(task.spec, plan.run_dir, plan.task_dir(spec, task), plan.run_id,
                                             force, not is_group(spec), lock_timeout))
                    for spec, tasks in plan.grouped for task in tasks]
    if launcher == "local" and max(len(trainings), len(measurements)) <= 1:
        return run_tasks(suite, specs, out_root, force=force, progress=progress, run_id=plan.run_id, log=log,
                         lock_timeout=lock_timeout)
    bar = _Progress(len(trainings) + len(measurements), progress, plan.log)
    pool = WorkerPool(slots)     # its workers start on the first job, then serve both phases

    def launch(fn, items, on_done):
        if launcher == "slurm":
            return run_slurm(executor, fn, items, threads=slurm_threads, on_done=on_done)
        return pool.run(fn, items, on_done)

    try:
        failed = _train_all(trainings, launch, bar)
        runs = _measure_all(plan, measurements, failed, launch, bar)
    finally:
        pool.close()
        bar.close()
    return plan.run_dir, _with_groups(plan, runs, force, lock_timeout)


def _trainings(plan: RunPlan, force: bool) -> list[Training]:
    """One job per distinct training run the tasks read, unless it is cached with every probe."""
    from ncbench.training.trajectory import Trajectory

    readers: dict[str, list[TaskSpec]] = {}
    configs = {}
    for _, tasks in plan.grouped:
        for t in tasks:
            for cfg in t.trajectories():
                readers.setdefault(cfg.key(), []).append(t.spec)
                configs.setdefault(cfg.key(), cfg)
    cache = plan.store.cache_dir
    return [Training(key, specs, cache, force) for key, specs in readers.items()
            if force or Trajectory(configs[key], cache, progress=False).cached(plan.store.probes.get(key)) is None]


def _train_all(trainings: list[Training], launch, bar) -> dict[str, str]:
    """Phase 1; returns {key: why} of the trainings that failed."""
    failed: dict[str, str] = {}

    def done(i: int, outcome: Outcome) -> None:
        if outcome.ok:
            bar.step(f"[train {outcome.value}] trained: {trainings[i].cache_dir / trainings[i].key}")
        else:
            failed[trainings[i].key] = outcome.error
            bar.step(f"[train {trainings[i].key}] FAILED: {outcome.error}")

    if trainings:
        launch(train, trainings, done)
    return failed


def _measure_all(plan: RunPlan, measurements: list, failed: dict[str, str], launch, bar) -> list[TaskRun]:
    """Phase 2: the TaskRun of every task and member, in plan order; a task whose training failed is
    recorded failed without running (its error.json says which training and why)."""
    runs: list[TaskRun | None] = [None] * len(measurements)
    todo = []
    for i, (_, task, job) in enumerate(measurements):
        why = [failed[c.key()] for c in task.trajectories() if c.key() in failed]
        if why:
            runs[i] = _failed(job, f"its training run failed: {why[0]}")
            bar.step(f"[{_label(job)}] FAILED: {runs[i].error}")
        else:
            todo.append(i)

    def done(k: int, outcome: Outcome) -> None:
        i = todo[k]
        job = measurements[i][2]
        if outcome.ok:
            runs[i], messages = outcome.value
        else:   # the job died before it could record anything itself
            runs[i], messages = _failed(job, outcome.error), [f"[{_label(job)}] FAILED: {outcome.error}"]
        bar.step(*messages)

    if todo:
        launch(measure, [measurements[i][2] for i in todo], done)
    return runs  # type: ignore[return-value]


def _with_groups(plan: RunPlan, runs: list[TaskRun], force: bool, lock_timeout: float | None) -> list[TaskRun]:
    """One TaskRun per spec: a plain task's own, a group's from its members (its files written now)."""
    out, k = [], 0
    for spec, tasks in plan.grouped:
        mine, k = runs[k:k + len(tasks)], k + len(tasks)
        if not is_group(spec):
            out.append(mine[0])
            continue
        try:
            out.append(finish_group(spec, tasks[0], mine, RunSettings(plan.run_id, plan.store, force, True, plan.log,
                                                                      lock_timeout)))
        except (OSError, TimeoutError, ValueError) as e:
            plan.log(f"[{spec.name}] FAILED: {e}")
            out.append(TaskRun(spec, "failed", plan.run_dir / spec.name, 0.0, str(e)))
    return out


def _label(job: Measurement) -> str:
    return f"{job.spec.name} {job.task_dir.name}" if job.task_dir.name != job.spec.name else job.spec.name


def _failed(job: Measurement, why: str) -> TaskRun:
    """A task that could not run: recorded in its folder's error.json (when writable) and its TaskRun."""
    from ncbench.results.writer import ResultsWriteError, ensure_dir, write_json

    try:
        write_json(ensure_dir(job.task_dir) / "error.json", {"error": why, "traceback": ""})
    except ResultsWriteError:
        pass
    return TaskRun(job.spec, "failed", job.task_dir, 0.0, why)


class _Progress:
    """One bar for every job of both phases; each job's messages printed above it as it ends."""

    def __init__(self, total: int, show: bool, log):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="ncbench jobs", unit="job", disable=not show)
        self.write = tqdm.write if show else log

    def step(self, *messages: str) -> None:
        for m in messages:
            self.write(m)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
