"""Fan a model zoo out as independent jobs, one (model, target) measurement each (as timm's bulk
runner gives each model its own process): `inline` (this process), `local` (subprocesses,
`max_parallel` at a time) or `slurm` (`submitit`, the optional extra `pip install 'ncbench[slurm]'`;
`slurm: {cluster: local}` runs submitit's local executor). Every job writes an ordinary task folder
`<out_root>/<run_id>/<task>/` (results.csv, config.json, or error.json): results merge into one run
folder, a rerun skips finished jobs (config hash), and one failed job never stops the others.

`python -m ncbench.transfer.launcher JOB.json` runs one job (what `local` and `slurm` start).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ncbench.run_files import read_json, read_text, replace_text

LAUNCHERS = ("inline", "local", "slurm")


@dataclass
class Job:
    spec: dict           # a TaskSpec as a dict
    out_root: str        # jobs' run folders live here
    run_id: str

    @property
    def task_dir(self) -> Path:
        return Path(self.out_root) / self.run_id / self.spec["name"]

    def status(self) -> tuple[str, str]:
        """`("done", "")`, `("failed", reason)` or `("missing", "")` from the files the job wrote."""
        if (self.task_dir / "results.csv").is_file() and (self.task_dir / "config.json").is_file():
            return "done", ""
        err = self.task_dir / "error.json"
        if err.is_file():
            try:
                return "failed", read_json(err, self.task_dir)["error"]
            except (ValueError, KeyError, TypeError) as e:
                return "failed", f"unreadable error.json ({e})"
        return "missing", ""


def run_job(job: Job) -> tuple[str, str]:
    """Run one job in this process (the function submitit pickles); returns its status."""
    from ncbench.suite import run_tasks
    from ncbench.tasks.base import TaskSpec

    spec = TaskSpec.from_dict(job.spec)
    run_tasks(job.run_id, [spec], Path(job.out_root), progress=False, run_id=job.run_id, log=lambda m: None)
    return job.status()


def _job_file(job: Job) -> Path:
    p = Path(job.out_root) / f"{job.run_id}.job.json"
    replace_text(p, json.dumps(asdict(job), default=str), job.out_root)
    return p


def run_local(jobs: list[Job], max_parallel: int = 1, poll: float = 0.2) -> list[tuple[str, str]]:
    """Each job in its own `python -m ncbench.transfer.launcher` subprocess, `max_parallel` at once."""
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < max(1, int(max_parallel)):
            job = pending.pop(0)
            log = _job_file(job).with_suffix("").with_suffix(".log")
            with open(log, "w") as fh:
                running.append(subprocess.Popen([sys.executable, "-m", "ncbench.transfer.launcher",
                                                 str(_job_file(job))], stdout=fh, stderr=subprocess.STDOUT))
        running = [p for p in running if p.poll() is None]
        if running:
            time.sleep(poll)
    return [_checked(j) for j in jobs]


def _checked(job: Job) -> tuple[str, str]:
    status = job.status()
    if status[0] == "missing":
        log = Path(job.out_root) / f"{job.run_id}.log"
        tail = read_text(log, job.out_root).strip().splitlines()[-1:] if log.is_file() else []
        return "failed", "the job wrote no results" + (f" ({tail[0][:200]})" if tail else "")
    return status


def run_slurm(jobs: list[Job], folder: Path, **params) -> list[tuple[str, str]]:
    """One submitit job per entry (`map_array`); `cluster` (None: SLURM if available, `local`,
    `debug`) and any `update_parameters` keys (`timeout_min`, `slurm_partition`, `gpus_per_node`...)."""
    try:
        import submitit
    except ImportError:
        raise ValueError("launcher 'slurm' needs submitit: pip install 'ncbench[slurm]'") from None
    cluster = params.pop("cluster", None)
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    executor.update_parameters(**({"timeout_min": 60} | params))
    handles = executor.map_array(run_job, jobs)
    for h in handles:
        h.wait()                  # a failed job leaves its error.json (or nothing): see _checked
    return [_checked(j) for j in jobs]


def run_jobs(jobs: list[Job], launcher: str = "inline", *, max_parallel: int = 1,
             slurm: dict | None = None) -> list[tuple[str, str]]:
    if launcher not in LAUNCHERS:
        from ncbench.registry import suggest
        raise suggest("launcher", launcher, list(LAUNCHERS))
    todo = [j for j in jobs if j.status()[0] != "done"]
    if launcher == "inline":
        for j in todo:
            run_job(j)
    elif launcher == "local":
        run_local(todo, max_parallel)
    elif todo:
        run_slurm(todo, Path(todo[0].out_root) / "_submitit", **dict(slurm or {}))
    return [_checked(j) for j in jobs]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ncbench.transfer.launcher JOB.json", file=sys.stderr)
        return 2
    job = Job(**read_json(args[0]))
    status, why = run_job(job)
    if status != "done":
        print(f"job {job.run_id}: {status}: {why}", file=sys.stderr)
    return 0 if status == "done" else 1


if __name__ == "__main__":
    raise SystemExit(main())
