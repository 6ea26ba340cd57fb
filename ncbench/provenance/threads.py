"""CPU thread policy: how many intra-op threads torch (and the BLAS that scipy brings) may use.

On a CPU shared with other busy processes, OpenMP threads that spin-wait at the end of every
parallel region burn the time slices that a parked sibling thread needs, and each op waits for the
slowest thread: a cliff, not a slope. Measured here (`scripts/thread_cliff.py`, one training epoch
of the default suite's test_resnet on MNIST-5k, 2 cores, load ~14 from other jobs): 1 thread 10-15
s, 2 threads with libgomp's default spinning 91 s (250 s beside two busy processes of our own),
2 threads with `OMP_WAIT_POLICY=PASSIVE` 2.5-14 s. In both alternating runs (background loads of
2.3 and ~10) one passive thread beat two: 1.3 against 2.2 s per epoch at 2.3, 3.6 against 5.8 s
beside two busy processes of our own (one earlier unpaired run at ~14 showed the opposite). So waiting threads sleep (`prefer_sleeping_waits`, set by the CLI, the Makefile and
the test suite before torch loads), the default count is half the CPUs this process may run on
(affinity mask, cgroup quota), at least 1 (one on this project's 2-core machines; it does not follow
the momentary load, so that the same command on the same machine reduces floats in the same
order), `--threads N` / `NCBENCH_THREADS` override it, and the count goes into each result's
provenance (`thread_provenance`): it changes the order of float reductions, hence the last bits.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

#: Environment variable that fixes the thread count (like `--threads`).
THREADS_ENV = "NCBENCH_THREADS"


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota if any."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def default_threads() -> int:
    """Threads for a run: `NCBENCH_THREADS` if set, else half of `available_cpus()`, at least 1
    (leaves room for the other processes of a shared machine and for SMT siblings)."""
    env = os.environ.get(THREADS_ENV)
    if env:
        return parse_threads(env, THREADS_ENV)
    return max(1, available_cpus() // 2)


def parse_threads(value: str | int, what: str = "--threads") -> int:
    """A thread count from text, between 1 and `available_cpus()` (more threads than CPUs only wait
    for each other, and a huge count exhausts memory creating them), or ValueError saying what was wrong."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ValueError(f"{what} must be a positive integer number of CPU threads, got {value!r}")
    cpus = available_cpus()
    if n > cpus:
        raise ValueError(f"{what} {value}: this process may run on {cpus} CPU(s) (its affinity mask and cgroup "
                         f"quota); use 1 to {cpus}")
    return n


def prefer_sleeping_waits() -> None:
    """Make idle threads sleep rather than spin, unless the user chose otherwise: torch's OpenMP pool
    (`OMP_WAIT_POLICY=PASSIVE`; effective before torch is first imported) and the OpenBLAS pool of
    scipy's `dsyrk` (`OPENBLAS_THREAD_TIMEOUT=1`: OpenBLAS's minimum, 2⁴ cycles, against its default
    2²⁸, about 0.1 s; effective before scipy.linalg is first imported). The engine alternates the two
    pools every batch; a spinning OpenBLAS pool took the cores from torch's threads for the rest of
    the batch (issue 25: the K = 1,000 pass one at two threads, docs/performance.md)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads (and the BLAS pool's) to `n`, default `default_threads()`."""
    import torch

    n = default_threads() if n is None else parse_threads(n)
    torch.set_num_threads(n)
    match_blas_threads()
    return n


def thread_provenance() -> dict[str, str]:
    """Thread settings that a result depends on (float reduction order), for its provenance."""
    import torch

    return {"torch_threads": str(torch.get_num_threads()),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}


_blas_threads: list = [None, None]   # [the loaded BLAS pools' controllers, the count last set]


def match_blas_threads() -> None:
    """Give scipy's/numpy's OpenBLAS pools torch's current intra-op thread count (cheap when the
    count has not changed), so that `--threads` governs the BLAS calls ncbench makes too."""
    import torch

    n = torch.get_num_threads()
    if _blas_threads[1] == n:
        return
    if _blas_threads[0] is None:
        try:
            import scipy.linalg.blas  # noqa: F401  (load the library before scanning for it)
            from threadpoolctl import ThreadpoolController
            _blas_threads[0] = ThreadpoolController().select(user_api="blas").lib_controllers
        except (ImportError, OSError, AttributeError):  # pragma: no cover - BLAS keeps its default
            _blas_threads[0] = []
    for lib in _blas_threads[0]:
        lib.set_num_threads(n)
    _blas_threads[1] = n


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` intra-op CPU threads (None: unchanged), then restore the old count.
    Thousands of tiny ops (UFM, layer-peeled, few-shot episodes) only pay synchronisation for threads."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
