"""`transfer_ranking`'s zoo jobs: one TaskSpec per model, run by the runner (`ncbench.runner.suite.run_tasks`)
into an ordinary task folder `<out_root>/<run_id>/<task>/` (results.csv, config.json, or error.json),
inline, in local worker processes or on Slurm (`ncbench.runner.launcher`): results merge into one run folder,
a rerun skips finished jobs (config hash).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ncbench.run_files import read_json
from ncbench.runner.jobs import JobSlots
from ncbench.runner.launcher import LAUNCHERS, Outcome, run_pool, run_slurm, slurm_executor


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
    """Run one job in this process (what a worker or a Slurm job runs); returns its status."""
    from ncbench.runner.suite import run_tasks
    from ncbench.tasks.base import TaskSpec

    spec = TaskSpec.from_dict(job.spec)
    run_tasks(job.run_id, [spec], Path(job.out_root), progress=False, run_id=job.run_id, log=lambda m: None)
    return job.status()


def _checked(job: Job, outcome: Outcome | None = None) -> tuple[str, str]:
    status = job.status()
    if status[0] == "missing":
        why = outcome.error if outcome is not None and outcome.error else "the job wrote no results"
        return "failed", why
    return status


def run_jobs(jobs: list[Job], launcher: str = "inline", *, max_parallel: int = 1,
             slurm: dict | None = None) -> list[tuple[str, str]]:
    """Every job not done yet, inline, in `max_parallel` local worker processes, or on Slurm."""
    if launcher not in LAUNCHERS:
        from ncbench.registry import suggest
        raise suggest("launcher", launcher, list(LAUNCHERS))
    todo = [j for j in jobs if j.status()[0] != "done"]
    outcomes: dict[int, Outcome] = {}
    if launcher == "inline":
        for j in todo:
            run_job(j)
    elif launcher == "local" and todo:
        import torch

        slots = JobSlots(max(1, int(max_parallel)), torch.get_num_threads())
        outcomes = {id(j): o for j, o in zip(todo, run_pool(run_job, todo, slots))}
    elif todo:
        executor = slurm_executor(Path(todo[0].out_root) / "_submitit", slurm)
        outcomes = {id(j): o for j, o in zip(todo, run_slurm(executor, run_job, todo))}
    return [_checked(j, outcomes.get(id(j))) for j in jobs]

