"""Where independent jobs run (as timm's bulk runner gives each model its own process): `inline` (this
process, one after another), `local` (a pool of worker processes: `concurrent.futures` with the
`spawn` start method, `ncbench.runner.jobs.JobSlots` saying how many, their threads and GPUs) or `slurm`
(`submitit`, the optional extra `pip install 'ncbench[slurm]'`; `cluster=local` runs submitit's
local executor). The suite's `--jobs` / `--launcher` (`ncbench.runner.suite_jobs`) and `transfer_ranking`'s
zoo both run here.

A job's exception is its failure, recorded as one line (`Outcome.error`); the other jobs go on. A
worker process that dies (killed for memory, a crash) fails only the job it ran: the jobs caught with
it are retried one at a time. Ctrl-C (KeyboardInterrupt in the caller) stops every worker (slurm:
cancels the jobs) and is raised again; the workers ignore SIGINT themselves, so a terminal's Ctrl-C
reaches them only through the caller.

The launcher runs callables and knows no task: `transfer_ranking`'s zoo jobs (a TaskSpec each, run
by the runner) are `ncbench.runner.zoo_jobs`.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ncbench.runner.jobs import JobSlots

LAUNCHERS = ("inline", "local", "slurm")


@dataclass
class Outcome:
    """What one job returned (`value`), or why it failed (`error`, one line)."""

    value: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


def call(fn: Callable, item) -> Outcome:
    """`fn(item)` as an Outcome: a job's exception is its failure, never the pool's."""
    try:
        return Outcome(fn(item))
    except Exception as e:  # noqa: BLE001 - one failing job is recorded, the others go on
        return Outcome(error=one_line(e))


def _init_worker(slots: JobSlots, counter, human_to_stderr: bool = False) -> None:
    """In each new worker: ignore SIGINT (the parent stops us), send the human output where the parent
    sends it (stderr under `--json`, whose stdout is one JSON document), take the next worker number,
    set its environment (its GPU) before anything touches CUDA, then the thread count of every job."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if human_to_stderr:
        sys.stdout = sys.stderr
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    os.environ.update(slots.env(index))
    from ncbench.provenance.threads import configure_threads

    configure_threads(slots.threads)


DIED = "its worker process died (killed, e.g. for lack of memory, or crashed); rerun to retry it"

OnDone = Callable[[int, Outcome], None]


def run_pool(fn: Callable, items: Sequence, slots: JobSlots, on_done: OnDone | None = None) -> list[Outcome]:
    """`fn(item)` for every item in `slots.jobs` worker processes (`WorkerPool`, closed after)."""
    with WorkerPool(slots) as pool:
        return pool.run(fn, items, on_done)


class WorkerPool:
    """`slots.jobs` worker processes (`concurrent.futures`, spawn), kept across several `run`s (the
    suite's trainings, then its tasks), so each worker starts (imports torch) once."""

    def __init__(self, slots: JobSlots):
        self.slots = slots
        self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def run(self, fn: Callable, items: Sequence, on_done: OnDone | None = None) -> list[Outcome]:
        """`fn(item)` for every item; one Outcome per item, in order. `on_done(index, outcome)` is
        called in this process as each job finishes (progress, logs)."""
        results: list[Outcome | None] = [None] * len(items)
        suspects = self._round(fn, items, range(len(items)), results, on_done)
        for i in suspects:   # a worker died: each job it may have held runs alone, so only its own job fails
            self._round(fn, items, [i], results, on_done)
        return results  # type: ignore[return-value]

    def _executor(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("spawn")   # a fresh interpreter: no torch state, no forked threads
            human_to_stderr = sys.stdout is sys.stderr     # the CLI's `--json` redirects this process's stdout
            self._pool = ProcessPoolExecutor(self.slots.jobs, mp_context=ctx, initializer=_init_worker,
                                             initargs=(self.slots, ctx.Value("i", 0), human_to_stderr))
        return self._pool

    def _round(self, fn, items, indices, results: list, on_done: OnDone | None) -> list[int]:
        """Run `indices` at once; the indices a dying worker broke (none when alone: it failed)."""
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        indices = list(indices)
        broken = []
        try:
            pool = self._executor()
            futures = {pool.submit(call, fn, items[i]): i for i in indices}
            for f in as_completed(futures):
                i = futures[f]
                try:
                    results[i] = f.result()
                except BrokenProcessPool:
                    if self._pool is pool:     # the next round starts fresh workers
                        pool.shutdown(wait=False)
                        self._pool = None
                    if len(indices) > 1:
                        broken.append(i)
                        continue
                    results[i] = Outcome(error=DIED)
                except Exception as e:  # noqa: BLE001 - e.g. a result that cannot be sent back
                    results[i] = Outcome(error=one_line(e))
                if on_done is not None:
                    on_done(i, results[i])
        except BaseException:            # Ctrl-C (or a failing callback): no worker outlives us
            if self._pool is not None:
                stop_pool(self._pool)
                self._pool = None
            raise
        return sorted(broken)


def stop_pool(pool) -> None:
    """Terminate a ProcessPoolExecutor's workers now (SIGTERM), cancel what is queued, reap them."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for p in processes:
        if p.is_alive():
            p.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.join(timeout=10)


def parse_slurm(pairs: list[str], launcher: str = "slurm") -> dict:
    """`--slurm KEY=VALUE` pairs as submitit parameters (numbers and true/false typed, the rest text)."""
    if pairs and launcher != "slurm":
        raise ValueError(f"--slurm {pairs[0]} is for --launcher slurm; add --launcher slurm (or drop --slurm)")
    out: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ValueError(f"--slurm {pair!r}: write KEY=VALUE, e.g. --slurm slurm_partition=gpu or "
                             f"--slurm timeout_min=120")
        out[key.strip()] = _typed(text.strip())
    return out


def _typed(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _slurm_call(fn: Callable, threads: int | None, item) -> Outcome:
    """A Slurm job: the thread count (`None`: the node's default, `ncbench.provenance.threads`), then `fn(item)`."""
    from ncbench.provenance.threads import configure_threads

    configure_threads(threads)
    return call(fn, item)


def slurm_executor(folder: Path, params: dict | None = None):
    """A submitit executor, its parameters checked now (before any work): `cluster` (None: Slurm if
    available, `local`, `debug`) and any `update_parameters` key (`timeout_min`, `slurm_partition`,
    `gpus_per_node`, `cpus_per_task`, `slurm_array_parallelism`...)."""
    try:
        import submitit
    except ImportError:
        raise ValueError("launcher 'slurm' needs submitit: pip install 'ncbench[slurm]'") from None
    params = dict(params or {})
    executor = submitit.AutoExecutor(folder=str(folder), cluster=params.pop("cluster", None))
    try:
        executor.update_parameters(**({"timeout_min": 60} | params))
    except Exception as e:  # noqa: BLE001 - submitit says which key it does not know
        raise ValueError(f"--slurm {', '.join(f'{k}={v}' for k, v in params.items())}: {one_line(e)[:400]} "
                         f"(the keys of submitit's update_parameters)") from None
    return executor


def run_slurm(executor, fn: Callable, items: Sequence, *, threads: int | None = None,
              on_done: OnDone | None = None) -> list[Outcome]:
    """One job of `executor` (`slurm_executor`) per item (`map_array`), waited for; each job sets
    `threads` threads (None: the node's default) and runs `fn(item)`."""
    import submitit

    if not items:
        return []
    handles = executor.map_array(partial(_slurm_call, fn, threads), list(items))
    where = {id(h): i for i, h in enumerate(handles)}
    results: list[Outcome | None] = [None] * len(items)
    try:
        for h in submitit.helpers.as_completed(handles):
            i = where[id(h)]
            try:
                results[i] = h.result()
            except Exception as e:  # noqa: BLE001 - a failed or cancelled job (its log: the folder)
                results[i] = Outcome(error=f"slurm job {h.job_id} failed ({one_line(e)[:300]}); "
                                           f"its log is in {executor.folder}")
            if on_done is not None:
                on_done(i, results[i])
    except BaseException:
        for h in handles:
            if not h.done():
                h.cancel(check=False)
        raise
    return results  # type: ignore[return-value]
