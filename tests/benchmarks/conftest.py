"""`make benchmark`'s summary: one table of every benchmark's ratios, printed at the end of the run.

Each benchmark calls `ratio_table.add(benchmark, what, against, ratio, target)` after asserting
that the implementations it compares give the same numbers; the row also goes to the benchmark's
`extra_info`. The table states the date and the machine load (1-minute load average at the start
and the end) it was measured under: ratios, unlike times, are comparable across loads, but only
roughly on a shared machine. The same table goes to `$NCBENCH_RATIO_TABLE` (default
`.benchmarks/ratio-table.md`), from which `scripts/performance_table.py` (`make performance-table`)
rewrites the table of docs/performance.md.
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

_ROWS: list[tuple[str, str, str, float, str, int]] = []
_LOAD: list[float] = []
_THREADS: list[int] = []
_START: list[float] = []
#: Where the table is also written (`NCBENCH_RATIO_TABLE` overrides).
TABLE_FILE = Path(__file__).resolve().parents[2] / ".benchmarks" / "ratio-table.md"


class RatioTable:
    def add(self, benchmark, what: str, against: str, ratio: float, target: str = "") -> None:
        """Record `ratio` of `what` against `against` (e.g. engine time / floor time)."""
        import torch

        name = benchmark.name if benchmark is not None else "-"
        _ROWS.append((name, what, against, float(ratio), target, torch.get_num_threads()))
        if benchmark is not None:
            benchmark.extra_info.setdefault("ratios", {})[f"{what} / {against}"] = float(ratio)


@pytest.fixture(scope="session")
def ratio_table() -> RatioTable:
    return RatioTable()


def _thread_counts() -> list[int]:
    from ncbench.provenance.threads import available_cpus

    return sorted({1, available_cpus()})


@pytest.fixture(params=_thread_counts(), ids=lambda n: f"{n}thr")
def threads(request):
    """Run the benchmark at one thread, then at every CPU this process may use (issue 25: a ratio
    measured at one thread only hides a slow-down at more). Engine and floor run at the same count."""
    from ncbench.provenance.threads import match_blas_threads, torch_threads

    with torch_threads(request.param):
        match_blas_threads()
        yield request.param
    match_blas_threads()


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not Linux
        return float("nan")


def pytest_sessionstart(session):
    """The benchmarks run under ncbench's thread policy (as `ncbench run` does): the free CPUs."""
    from ncbench.provenance.threads import configure_threads

    _LOAD.append(load_average())
    _THREADS.append(configure_threads())
    _START.append(dt.datetime.now().timestamp())


def format_table(rows, load_start: float, load_end: float, threads: int | None = None,
                 seconds: float | None = None) -> str:
    """The ratio table as Markdown (what `make benchmark` prints)."""
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    took = "" if seconds is None else f", the run took {int(seconds // 60)} min {int(seconds % 60)} s"
    lines = [(f"ratio table, {when}, {os.cpu_count()} CPUs, {threads} torch threads by default (each "
              f"row says its own), load average {load_start:.1f} at the start, {load_end:.1f} at the "
              f"end{took}"),
             "", "| benchmark | measured | against | threads | ratio | target |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {w} | {a} | {th} | {r:.3g} | {t} |" for n, w, a, r, t, th in rows]
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    seconds = dt.datetime.now().timestamp() - _START[0] if _START else None
    table = format_table(_ROWS, _LOAD[0] if _LOAD else float("nan"), load_average(),
                         _THREADS[0] if _THREADS else None, seconds)
    terminalreporter.write_line("")
    terminalreporter.write_line(table)
    out = Path(os.environ.get("NCBENCH_RATIO_TABLE") or TABLE_FILE)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")
        terminalreporter.write_line(f"(also written to {out})")
    except OSError as e:  # pragma: no cover - read-only checkout
        terminalreporter.write_line(f"(could not write {out}: {e})")
