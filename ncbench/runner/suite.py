"""Running tasks: shared trajectories trained once, results per task written atomically as each
task finishes, finished tasks skipped by config hash (`force` redoes them).

Each task folder is written under a file lock (`<task>/.lock`, filelock): a second process running
the same task into the same `--out` waits for the first (it says so once), then finds the task
finished and skips it. A task whose results cannot be written (full disk, read-only folder) is
recorded as failed with a one-line reason and the suite goes on. config.json records each results
file's row count and sha256 (`ncbench.results.integrity`); a task counts as done only when they match.
"""
from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from ncbench.core import identity
from ncbench.provenance.record import provenance
from ncbench.results.integrity import integrity_problems, record_files
from ncbench.results.names import check_name
from ncbench.results.schema import MEMBERS_FOLDER
from ncbench.results.variants import join_variants
from ncbench.results.writer import (
    ResultsWriteError,
    atomic_write_text,
    write_json,
    write_long_csv,
    write_table_csv,
)
from ncbench.run_files import (
    ReadError,
    UnsafePathError,
    ensure_dir,
    open_text,
    read_json,
    remove,
    remove_stale_temporaries,
)
from ncbench.specs.groups import comparisons_of, group_hash, is_group, member_label, members
from ncbench.tasks import TASK_KINDS
from ncbench.tasks.base import NoMeta, Task, TaskMeta, TaskOutput, TaskSpec
from ncbench.tasks.context import TaskContext, TrajectoryStore
from ncbench.training.distributed import is_main
from ncbench.training.run_status import RunStatus, worst


@dataclass
class TaskRun:
    spec: TaskSpec
    outcome: str           # done | skipped | failed: what the runner did (measured, found done, could not)
    dir: Path
    seconds: float = 0.0
    error: str = ""
    result_status: str = "ok"  # ok | diverged | failed: the `status` its rows carry (did the runs it read do
    result_reason: str = ""    # what their recipe meant); `status_reason` of its rows
    meta: TaskMeta = field(default_factory=NoMeta)  # the kind's TaskOutput.meta (done or skipped: config.json's)
    tables: tuple[str, ...] = ()                   # the extra tables it wrote (names, results.csv aside)

    @property
    def csv(self) -> Path:
        return self.dir / "results.csv"


def run_id_for(suite: str, specs: list[TaskSpec]) -> str:
    return identity.run_id(suite, [s.config_hash() for s in specs])


LOCK_NAME = ".lock"
"""The lock file of a task folder (held while the task runs and writes)."""


def is_done(spec: TaskSpec, task_dir: Path, log=None, root: Path | None = None) -> bool:
    """Finished with this config hash, and its results files are the ones the run wrote (files that
    are links out of `root`, the run folder, FIFOs or malformed JSON: not done, said in one line)."""
    cfg_path = task_dir / "config.json"
    if not (cfg_path.exists() and (task_dir / "results.csv").exists()):
        return False
    try:
        cfg = read_json(cfg_path, root or task_dir)
        if cfg["config_hash"] != spec.config_hash():
            return False
    except (UnsafePathError, ReadError) as e:
        if log:
            log(f"[{spec.name}] {e}: recomputing")
        return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    problems = integrity_problems(task_dir, cfg, root or task_dir)
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


@dataclass(frozen=True)
class RunSettings:
    """How each task of a run is run: the run's id, its shared training runs, `force` (measure and
    train again), `main` (this process writes: rank 0 under torchrun), the log, how long to wait for
    another process's lock (None: as long as it runs)."""

    run_id: str
    store: TrajectoryStore
    force: bool = False
    main: bool = True
    log: Callable[[str], None] = print
    lock_timeout: float | None = None


@dataclass
class RunPlan:
    """A validated run before any work: its folder and id, the shared training runs (cache, the probes
    of every trajectory), each spec with its tasks (one per group member), the log to use."""

    run_dir: Path
    run_id: str
    store: TrajectoryStore
    grouped: list[tuple[TaskSpec, list[Task]]]
    main: bool
    log: Callable[[str], None]

    def settings(self, force: bool, lock_timeout: float | None) -> RunSettings:
        return RunSettings(self.run_id, self.store, force, self.main, self.log, lock_timeout)

    def task_dir(self, spec: TaskSpec, task: Task) -> Path:
        """Where `task` (the spec itself, or one member of a group spec) writes."""
        if not is_group(spec):
            return self.run_dir / spec.name
        return self.run_dir / spec.name / MEMBERS_FOLDER / member_label(task.spec, spec)


def prepare_run(suite: str, specs: list[TaskSpec], out_root: Path, *, force: bool = False,
                progress: bool = True, run_id: str | None = None, log=print) -> RunPlan:
    """Validate names, kinds and options, collect every trajectory's probes (so each run trains once)
    and write suite.json (the run folder must be writable before any work)."""
    check_name("suite name", suite)
    for s in specs:
        check_name("task name", s.name)
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"suite '{suite}' lists tasks twice: {sorted(dup)}")
    grouped = [(s, [_task(m, s) for m in members(s)]) for s in specs]   # validates kinds and options first
    for s, _ in grouped:
        comparisons_of(s)
    run_id = check_name("run id", run_id or run_id_for(suite, specs))
    run_dir = Path(out_root) / run_id
    store = TrajectoryStore(run_dir / "_trajectories", run_dir, progress=progress, force=force)
    for _, tasks in grouped:                        # probes of all tasks, so each run trains once
        for t in tasks:
            for cfg in t.trajectories():
                store.probes.setdefault(cfg.key(), {}).update(t.probes())
    main = is_main()   # under torchrun every rank runs the tasks (collectives), rank 0 writes
    if not main:
        log = lambda message: None
    else:   # the run folder must be writable before any work (a regular file, read-only: one clear error)
        write_json(run_dir / "suite.json", {"suite": suite, "run_id": run_id, "tasks": [s.to_dict() for s in specs]},
                   run_dir)
    return RunPlan(run_dir, run_id, store, grouped, main, log)


def run_tasks(suite: str, specs: list[TaskSpec], out_root: Path, *, force: bool = False,
              progress: bool = True, run_id: str | None = None, log=print,
              lock_timeout: float | None = None) -> tuple[Path, list[TaskRun]]:
    """Run `specs` into `out_root/<run_id>/<task>/`; returns the run folder and one TaskRun per spec.

    A group spec (`seeds:` / `sweep:`, `ncbench.specs.groups`) runs each member into
    `<task>/_members/<variant,seed>/` and then writes the group's own files (`write_group`).
    Bad names (a task or suite named `../x`) and an `out_root` that cannot be written are errors
    before any work. `lock_timeout`: seconds to wait for another process holding a task's lock
    (None: wait as long as it runs); after it, that task fails and the suite goes on.
    (`ncbench.runner.suite_jobs` runs the same plan in parallel processes: `--jobs`, `--launcher`.)
    """
    plan = prepare_run(suite, specs, out_root, force=force, progress=progress, run_id=run_id, log=log)
    run = plan.settings(force, lock_timeout)
    runs = []
    for spec, tasks in plan.grouped:
        if not is_group(spec):
            runs.append(_guarded(tasks[0], plan.task_dir(spec, tasks[0]), run))
            continue
        member_runs = [_guarded(t, plan.task_dir(spec, t), run, plot=False) for t in tasks]
        runs.append(_run_group(spec, tasks[0], member_runs, run))
    return plan.run_dir, runs


def run_member(task: Task, task_dir: Path, run: RunSettings, plot: bool = True) -> TaskRun:
    """One task, or one member of a group, into `task_dir` (lock, skip when done, write; a failure is
    recorded): what a parallel job runs (`ncbench.runner.suite_jobs`)."""
    return _guarded(task, task_dir, run, plot)


def finish_group(spec: TaskSpec, task: Task, member_runs: list[TaskRun], run: RunSettings) -> TaskRun:
    """A group's own files once its members ran (`_run_group`)."""
    return _run_group(spec, task, member_runs, run)


def _task(member: TaskSpec, group: TaskSpec) -> Task:
    try:
        return TASK_KINDS.get(member.kind)(member)
    except ValueError as e:
        if not member.variant:
            raise
        raise ValueError(f"{e} (in the sweep point {member.variant} of task '{group.name}': check its "
                         f"`sweep:` keys against the kind's options)") from None


def _guarded(task: Task, task_dir: Path, run: RunSettings, plot: bool = True) -> TaskRun:
    """`_run_one`, with this task's write and lock failures recorded (the suite goes on)."""
    try:
        return _run_one(task, task_dir, run, plot)
    except (ResultsWriteError, TimeoutError, ValueError) as e:
        run.log(f"[{_label(task.spec, task_dir)}] FAILED: {e}")
        return TaskRun(task.spec, "failed", task_dir, 0.0, str(e))


def _label(spec: TaskSpec, task_dir: Path | None = None) -> str:
    """`name`, or `name member` for a group member (its folder: variant and seed)."""
    if task_dir is not None and task_dir.parent.name == MEMBERS_FOLDER:
        return f"{spec.name} {task_dir.name}"
    return f"{spec.name} {spec.variant}".strip()


def _run_one(task: Task, task_dir: Path, run: RunSettings, plot: bool = True) -> TaskRun:
    spec = task.spec
    if not run.main:   # under torchrun only rank 0 writes, so only rank 0 locks (the others would deadlock)
        return _measure(task, task_dir, run, plot)
    ensure_dir(task_dir, run.store.root)
    lock = _task_lock(task_dir, _label(spec, task_dir), run.lock_timeout, run.log)
    try:
        remove_stale_temporaries(task_dir, run.store.root)
        return _measure(task, task_dir, run, plot)
    finally:
        lock.release()


def _measure(task: Task, task_dir: Path, run: RunSettings, plot: bool = True) -> TaskRun:
    """Run one task (or skip it when done) and write its files; OS errors of the writes fail the task.
    The task gets a fresh frozen `TaskContext`; nothing of it outlives the task."""
    spec = task.spec
    label = _label(spec, task_dir)
    root, main, log = run.store.root, run.main, run.log
    if not run.force and is_done(spec, task_dir, log if main else None, root):
        cfg = read_json(task_dir / "config.json", root)
        try:
            meta = task.META.from_dict(cfg.get("meta", {}), str(task_dir / "config.json"))
        except ValueError as e:
            log(f"[{label}] measuring again: {e}")
        else:
            log(f"[{label}] already done (config {spec.config_hash()}): {task_dir / 'results.csv'}")
            _say_other_threads(cfg, label, log)
            return TaskRun(spec, "skipped", task_dir, result_status=cfg.get("status", "ok"),
                           result_reason=cfg.get("status_reason", ""), meta=meta,
                           tables=_table_names(cfg.get("files", {})))
    log(f"[{label}] running {spec.kind} v{spec.version} on {spec.dataset} with {spec.model} ({spec.device})")
    t0 = time.perf_counter()
    prov = provenance(spec.device)
    ctx = TaskContext(task_dir, run.store, spec.min_train_accuracy)
    try:
        out = task.run(ctx)
    except KeyboardInterrupt:
        log(f"[{label}] interrupted: rerun the same command to resume from the last checkpoint")
        raise
    except Exception as e:  # noqa: BLE001 - one failing task is recorded, the suite goes on
        from ncbench.models.input_size import input_size_hint

        reason = input_size_hint(e, spec.model) or f"{type(e).__name__}: {e}"
        run = TaskRun(spec, "failed", task_dir, time.perf_counter() - t0, reason)
        log(f"[{label}] FAILED: {reason}")
        if main:
            try:
                write_json(task_dir / "error.json", {"error": str(e), "traceback": traceback.format_exc()}, root)
            except (ResultsWriteError, UnsafePathError) as w:
                log(f"[{label}] and its error.json could not be written either: {w}")
        return run
    if not main:
        return TaskRun(spec, "done", task_dir, time.perf_counter() - t0)
    status = worst([*(r.status for r in ctx.reads), out.status])
    if not status.ok:
        log(f"[{label}] flagged {status.status}: {status.reason} (its rows carry status={status.status}; "
            f"leaderboards do not rank it)")
    context = _context(spec, run.run_id, prov, out.precision, status)
    rows = [{**r, "variant": join_variants(spec.variant, r.get("variant") or "")} for r in out.rows]
    remove(task_dir / "config.json", root)   # the folder is "done" again only once all is written
    written = []
    for name, df in out.tables.items():
        check_name(f"table of task {spec.name}", name)
        written.append(write_table_csv(task_dir / f"{name}.csv", df, root).name)
    written.insert(0, write_long_csv(task_dir / "results.csv", rows, context, root).name)
    # the figures get the rows as written (run context, seed included), as a group's figures do
    plots = _plot(task, replace(out, rows=[{**context, **r} for r in rows]), task_dir, log) if plot else []
    seconds = time.perf_counter() - t0
    write_json(task_dir / "config.json", {"spec": spec.to_dict(), "config_hash": spec.config_hash(),
                                          "provenance": prov, "seconds": seconds, "plots": plots,
                                          "meta": out.meta.to_dict(), "training": _unique([r.trained for r in ctx.reads]),
                                          "status": status.status, "status_reason": status.reason,
                                          "files": record_files(task_dir, written)}, root)
    remove(task_dir / "error.json", root)
    log(f"[{label}] done in {seconds:.1f}s: {task_dir / 'results.csv'}")
    return TaskRun(spec, "done", task_dir, seconds, result_status=status.status, result_reason=status.reason,
                   meta=out.meta, tables=_table_names(written))


def _table_names(files) -> tuple[str, ...]:
    """The extra tables among a task's written files (results.csv aside), in file-name order."""
    return tuple(f.removesuffix(".csv") for f in sorted(files) if f != "results.csv")


def _say_other_threads(cfg: dict, label: str, log) -> None:
    """A finished task skipped under another thread count than it was measured with: say which
    count its results hold (they stay as measured; `--force` measures again with this one)."""
    from ncbench.provenance.threads import thread_provenance

    was = str((cfg.get("provenance") or {}).get("torch_threads", ""))
    now = thread_provenance()["torch_threads"]
    if was and was != now:
        log(f"[{label}] its results were measured with {was} torch thread(s), this command has {now}: they are "
            f"kept as measured with {was} (config.json); --force measures again with {now}")


def _context(spec: TaskSpec, run_id: str, prov: dict, precision: str, status: RunStatus) -> dict:
    """The columns every row of a run shares (SPEC §9)."""
    return {"run_id": run_id, "task": spec.name, "task_version": spec.version, "model": spec.model,
            "pretrained": identity.weights_identity(spec.checkpoint, spec.pretrained), "dataset": spec.dataset,
            "seed": spec.seed, "precision": precision, "status": status.status, "status_reason": status.reason,
            "config_hash": spec.config_hash(), **prov}


def _plot(task: Task, out: TaskOutput, out_dir: Path, log) -> list[str]:
    """The kind's figures beside the CSVs (file names); a failing plot never costs the numbers."""
    from ncbench.plots import plot_task

    try:
        paths = plot_task(task.spec.kind, out, task.spec, out_dir)
        return [Path(p).name for p in paths]
    except Exception as e:  # noqa: BLE001 - a plot never costs the numbers
        log(f"[{task.spec.name}] plot failed ({type(e).__name__}: {e}); the CSVs are written")
        return []


def _run_group(spec: TaskSpec, task: Task, member_runs: list[TaskRun], run: RunSettings) -> TaskRun:
    """After its members ran: the group's results.csv (every member's rows, then the declared
    comparisons), aggregate.csv (over seeds), the member tables stacked, the figures, config.json."""
    gdir = member_runs[0].dir.parent.parent
    failed = [r for r in member_runs if r.outcome == "failed"]
    status = worst(RunStatus(r.result_status, r.result_reason) for r in member_runs if r.outcome != "failed")
    if failed:
        error = "; ".join(f"{r.spec.variant or r.spec.seed}: {r.error}" for r in failed)
        return TaskRun(spec, "failed", gdir, sum(r.seconds for r in member_runs),
                       f"{len(failed)} of {len(member_runs)} runs failed ({error}); rerun to retry them")
    if not run.main:
        return TaskRun(spec, "done", gdir)
    log = run.log
    ident = task.spec          # what the members record (a model-free kind's placeholders)
    spec = replace(spec, dataset=ident.dataset, model=ident.model, pretrained=ident.pretrained,
                   checkpoint=ident.checkpoint, device=ident.device)
    ghash = group_hash(spec, [r.spec for r in member_runs])
    seconds = sum(r.seconds for r in member_runs)
    root = gdir.parent       # the run folder
    lock = _task_lock(ensure_dir(gdir, root), spec.name, run.lock_timeout, log)
    try:
        if not run.force and all(r.outcome == "skipped" for r in member_runs) and _group_done(gdir, ghash):
            log(f"[{spec.name}] already done ({len(member_runs)} runs): {gdir / 'results.csv'}")
            return TaskRun(spec, "skipped", gdir, result_status=status.status, result_reason=status.reason)
        remove_stale_temporaries(gdir, root)
        remove(gdir / "config.json", root)
        written, out = write_group(spec, member_runs, run.run_id, status, gdir)
        plots = _plot(task, out, gdir, log)
        write_json(gdir / "config.json", {
            "spec": spec.to_dict(), "sweep_order": list(spec.sweep),   # config.json sorts keys; the sweep's order names its runs
            "config_hash": ghash, "provenance": provenance(spec.device),
            "seconds": seconds, "plots": plots, "status": status.status, "status_reason": status.reason,
            "members": [{"folder": str(r.dir.relative_to(gdir)), "variant": r.spec.variant, "seed": r.spec.seed,
                         "config_hash": r.spec.config_hash(), "status": r.result_status} for r in member_runs],
            "files": record_files(gdir, written)}, root)
    finally:
        lock.release()
    log(f"[{spec.name}] done: {len(member_runs)} runs in {gdir / 'results.csv'}")
    return TaskRun(spec, "done", gdir, seconds, result_status=status.status, result_reason=status.reason)


def _group_done(gdir: Path, ghash: str) -> bool:
    try:
        cfg = read_json(gdir / "config.json", gdir)
        return cfg["config_hash"] == ghash and not integrity_problems(gdir, cfg, gdir)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_group(spec: TaskSpec, member_runs: list[TaskRun], run_id: str, status: RunStatus,
                gdir: Path) -> tuple[list[str], TaskOutput]:
    """Write the group's files from its members' outputs: their rows and tables as each member wrote
    them (members may have run in other processes or an earlier invocation: their files are their
    record), their meta and table names from their `TaskRun`s. The group's aggregate and output (rows
    as written, stacked tables, the members' meta, for the figures) are built in memory: nothing the
    group writes is read back."""
    import io

    from ncbench.results.aggregation import over_seeds
    from ncbench.results.comparisons import comparison_rows
    from ncbench.results.writer import long_csv_text

    frames = []
    for r in member_runs:
        with open_text(r.csv, gdir) as f:
            frames.append(pd.read_csv(f, dtype=str, keep_default_na=False))
    rows = pd.concat(frames, ignore_index=True)
    typed = rows.assign(value=pd.to_numeric(rows.value.mask(rows.value == "")),
                        epoch=pd.to_numeric(rows.epoch.mask(rows.epoch == "")),
                        seed=pd.to_numeric(rows.seed).astype(int))
    summary = typed[typed.split == "summary"]
    derived = comparison_rows(summary, comparisons_of(spec))
    context = _context(spec, run_id, provenance(spec.device), summary.precision.iloc[0] if len(summary) else "fp32",
                       status)
    context.pop("seed"), context.pop("status"), context.pop("status_reason")
    context["config_hash"] = group_hash(spec, [r.spec for r in member_runs])
    extra = long_csv_text(derived, context).split("\n", 1)[1]
    text = rows.to_csv(index=False, lineterminator="\n") + extra
    atomic_write_text(gdir / "results.csv", text, gdir)
    written = ["results.csv"]
    all_summary = pd.concat([summary, pd.DataFrame(derived)], ignore_index=True) if derived else summary
    write_table_csv(gdir / "aggregate.csv", over_seeds(all_summary, spec.name), gdir)
    written.append("aggregate.csv")
    tables: dict[str, pd.DataFrame] = {}
    for name in dict.fromkeys(n for r in member_runs for n in r.tables):   # first-seen order
        parts = []
        for r in member_runs:
            path = r.dir / f"{name}.csv"
            if path.exists():
                with open_text(path, gdir) as f:
                    t = pd.read_csv(f)
                t.insert(0, "seed", r.spec.seed)
                t.insert(0, "variant", r.spec.variant)
                parts.append(t)
        tables[name] = pd.concat(parts, ignore_index=True)
        written.append(write_table_csv(gdir / f"{name}.csv", tables[name], gdir).name)
    metas = [r.meta for r in member_runs]
    written_rows = pd.read_csv(io.StringIO(text))     # typed as a reader of results.csv sees them
    for c in ("variant", "status", "status_reason"):
        written_rows[c] = ["" if pd.isna(v) else v for v in written_rows[c]]
    records = written_rows.to_dict("records")
    precision = str(written_rows.precision.iloc[0]) if len(written_rows) else "fp32"   # the members' (one kind)
    return written, TaskOutput(records, tables, metas[0] if metas else NoMeta(), precision=precision,
                               members=tuple(metas))


def _unique(trained: list[dict]) -> list[dict]:
    """Who trained each trajectory the task read (one entry per trajectory): `provenance` says who
    measured, this says who trained (versions, git hash, time, world size, training seconds)."""
    seen = {}
    for t in trained:
        seen.setdefault(t["trajectory"], t)
    return list(seen.values())


def summary_table(runs: list[TaskRun]) -> pd.DataFrame:
    """Headline (`split == "summary"`) metrics of each finished task, one row per task, variant and
    metric, the mean over seeds (a failed task's folder may hold an older or damaged results.csv: it is
    not read)."""
    frames = []
    for r in runs:
        if r.outcome in ("done", "skipped") and r.csv.exists():
            with open_text(r.csv, r.dir) as f:
                df = pd.read_csv(f, dtype={"variant": str}, keep_default_na=False, na_values={"value": [""]})
            df = df[df["split"] == "summary"]
            frames.append(df.groupby(["task", "variant", "metric"], sort=False, as_index=False)["value"].mean())
    if not frames:
        return pd.DataFrame(columns=["task", "variant", "metric", "value"])
    return pd.concat(frames, ignore_index=True)
