"""Epoch pace: say so when a training epoch runs far slower than this run's own expected time.

The expected time of an epoch is the fastest training epoch of the run so far (evaluation is not
timed). An epoch `SLOW_FACTOR`× slower than that is almost never the model: it is a CPU shared with
other busy processes, often with more torch threads than free cores (see `ncbench.provenance.threads`). The
warning names the load, the thread count and the fix, once per run.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable

#: An epoch this many times slower than the fastest one is reported.
SLOW_FACTOR = 3.0


def slow_epoch_fix(threads: int) -> str:
    """What to do about a slow epoch: fewer threads if there are several; with one, the busy
    processes themselves. Linux's autogroup scheduling gives each session (terminal, job) one fair
    share of the CPUs, split among its processes: jobs started from the same shell as the run take
    their CPU from it (`scripts/loaded_epoch.py --same-session`: 3x with two busy processes)."""
    if threads > 1:
        return "Fewer threads avoid the slow-down: rerun with --threads 1 (or NCBENCH_THREADS=1)"
    return ("With one thread the slow-down is the other busy processes: busy jobs started from this "
            "shell (same session) share this run's CPU slice, so start them from another terminal")


class EpochPace:
    """`start()` before an epoch's training, `stop(epoch)` after it; warns once when slow."""

    def __init__(self, warn: Callable[[str], None], factor: float = SLOW_FACTOR, clock=time.perf_counter):
        self.warn, self.factor, self.clock = warn, factor, clock
        self.best: float | None = None
        self.warned = False
        self._t0: float | None = None

    def start(self) -> None:
        self._t0 = self.clock()

    def stop(self, epoch: int) -> float | None:
        """Seconds the epoch took (None without a `start`); warns if `factor`× the fastest."""
        if self._t0 is None:
            return None
        seconds, self._t0 = self.clock() - self._t0, None
        if self.best is not None and seconds > self.factor * self.best and not self.warned:
            self.warned = True
            import torch

            try:
                load = f"{os.getloadavg()[0]:.1f}"
            except OSError:  # pragma: no cover - not Linux
                load = "?"
            threads = torch.get_num_threads()
            self.warn(f"epoch {epoch} took {seconds:.1f} s, {seconds / self.best:.1f}x this run's fastest "
                      f"({self.best:.1f} s): the CPU looks shared (1-minute load {load} on "
                      f"{os.cpu_count()} CPUs, {threads} torch threads). {slow_epoch_fix(threads)}")
        self.best = seconds if self.best is None else min(self.best, seconds)
        return seconds
