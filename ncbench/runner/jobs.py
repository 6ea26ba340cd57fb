"""How many runs go at once (`--jobs N|auto`, or `NCBENCH_JOBS`) and what each worker process gets.

`auto`: on the CPU, the CPUs this process may use ÷ the threads of one job (`ncbench.provenance.threads`); on
CUDA (`--device cuda`), one job per visible GPU, worker i seeing only GPU i (`CUDA_VISIBLE_DEVICES`),
so `cuda` inside a job is its own card. Every job runs with the thread count a `--jobs 1` run would
use: the thread count orders the float reductions, so the values are bit-identical to `--jobs 1` on
the same machine.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

#: Environment variable that sets the default of `--jobs` (like `NCBENCH_THREADS` for `--threads`).
JOBS_ENV = "NCBENCH_JOBS"


@dataclass(frozen=True)
class JobSlots:
    """`jobs` worker processes with `threads` torch threads each; `gpus`: the CUDA_VISIBLE_DEVICES
    entry of each worker (round robin when there are more workers than GPUs), empty on the CPU."""

    jobs: int
    threads: int
    gpus: tuple[str, ...] = ()

    def env(self, worker: int) -> dict[str, str]:
        """The environment worker number `worker` (0-based) sets before it touches CUDA."""
        return {"CUDA_VISIBLE_DEVICES": self.gpus[worker % len(self.gpus)]} if self.gpus else {}

    def describe(self) -> str:
        where = f", GPUs {','.join(self.gpus[:self.jobs])} (CUDA_VISIBLE_DEVICES per job)" if self.gpus else ""
        return f"{self.jobs} job{'s' if self.jobs != 1 else ''} × {self.threads} thread{'s' if self.threads != 1 else ''}{where}"


def parse_jobs(value: str | int | None, what: str = "--jobs") -> int | None:
    """A positive job count, or None for `auto`; `value` None: `NCBENCH_JOBS`, else `auto`."""
    if value is None:
        value, what = os.environ.get(JOBS_ENV) or "auto", JOBS_ENV
    if str(value).strip().lower() == "auto":
        return None
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{what} must be a positive integer number of parallel jobs or 'auto', got {value!r}")
    return n


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as `CUDA_VISIBLE_DEVICES` entries: that variable's own entries
    when it is set (indices or UUIDs), else `0..torch.cuda.device_count()-1`."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        entries = [e.strip() for e in listed.split(",") if e.strip()]
        return entries[:count] if count else []
    return [str(i) for i in range(count)]


def resolve_jobs(value: str | int | None, device: str, threads: int, *, world_size: int = 1,
                 cpus: int | None = None) -> JobSlots:
    """The slots of a run on `device` whose jobs use `threads` threads each.

    `cuda` (no index): one job per visible GPU for `auto`, each job its own GPU; `cuda:N` names one
    GPU, so all jobs share it (`auto`: 1, as on `mps`). Under torchrun (`world_size` > 1) the processes are the
    DDP ranks: one job."""
    from ncbench.provenance.threads import available_cpus

    n = parse_jobs(value)
    if world_size > 1:
        if n not in (None, 1):
            raise ValueError(f"--jobs {n} under torchrun: the {world_size} processes already are one DDP run; "
                             f"drop --jobs (or use --jobs 1)")
        return JobSlots(1, threads)
    gpus: tuple[str, ...] = ()
    if re.fullmatch(r"cuda", str(device)):
        gpus = tuple(visible_gpus())
        if n is None:
            n = max(1, len(gpus))
    elif n is None and str(device) != "cpu":   # cuda:N, mps: one device, one job
        n = 1
    elif n is None:
        n = max(1, (cpus or available_cpus()) // max(1, threads))
    return JobSlots(n, threads, gpus if n > 1 else ())
