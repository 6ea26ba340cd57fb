"""Thread policy (issue 17): defaults from the free CPUs, `--threads`, provenance, slow-epoch warning."""
from __future__ import annotations

import pytest
import torch

from ncbench.cli import main
from ncbench.provenance import threads
from ncbench.provenance.record import provenance
from ncbench.training.pace import EpochPace


@pytest.mark.parametrize(("cpus", "want"), [(1, 1), (2, 1), (3, 1), (16, 8)])
def test_default_threads_are_half_the_cpus_this_process_may_use(monkeypatch, cpus, want):
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: cpus)
    assert threads.default_threads() == want


def test_the_environment_fixes_the_thread_count(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.default_threads() == 3
    monkeypatch.setenv(threads.THREADS_ENV, "many")
    with pytest.raises(ValueError, match="NCBENCH_THREADS must be a positive integer"):
        threads.default_threads()


def test_available_cpus_is_the_affinity_mask():
    import os

    assert 1 <= threads.available_cpus() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(ValueError, match="--threads must be a positive integer"):
        threads.parse_threads(bad)


def test_more_threads_than_cpus_are_refused_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    assert threads.parse_threads("2") == 2
    with pytest.raises(ValueError, match=r"--threads 3: this process may run on 2 CPU\(s\).*use 1 to 2"):
        threads.parse_threads("3")
    monkeypatch.setenv(threads.THREADS_ENV, "1000000")
    with pytest.raises(ValueError, match="NCBENCH_THREADS 1000000: this process may run on 2"):
        threads.default_threads()
    monkeypatch.delenv(threads.THREADS_ENV)
    before = torch.get_num_threads()
    assert main(["run", "ufm_ce_balanced", "--threads", "1000000", "--out", str(tmp_path)]) == 2
    assert torch.get_num_threads() == before             # refused before torch was touched
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--threads 1000000: this process may run on 2 CPU(s)" in err


def test_configure_threads_sets_torch_and_the_blas_pool():
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    try:
        assert threads.configure_threads("1") == 1
        assert torch.get_num_threads() == 1
        blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
        assert blas and all(i["num_threads"] == 1 for i in blas)
        assert provenance("cpu")["torch_threads"] == "1"           # recorded with the results
    finally:
        torch.set_num_threads(before)
        threads.match_blas_threads()


def test_waiting_threads_sleep_unless_the_user_chose(monkeypatch):
    """Both pools: torch's OpenMP threads and the OpenBLAS threads of scipy's dsyrk."""
    import os

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    threads.prefer_sleeping_waits()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["OPENBLAS_THREAD_TIMEOUT"] == "1"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "20")
    threads.prefer_sleeping_waits()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE" and os.environ["OPENBLAS_THREAD_TIMEOUT"] == "20"


def test_the_cli_sets_the_sleeping_waits_before_torch_and_scipy_load():
    """In a fresh interpreter `ncbench.cli.main` (here `--version`) leaves both variables set for the
    libraries that read them when they load, and neither torch nor scipy.linalg has loaded before."""
    import subprocess
    import sys

    code = ("import os, sys; from ncbench.cli import main\n"
            "print('torch' in sys.modules or 'scipy.linalg' in sys.modules)\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OPENBLAS_THREAD_TIMEOUT'))")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0] == "False" and lines[-1] == "PASSIVE 1"


def test_cli_refuses_a_bad_thread_count_in_one_line(capsys):
    assert main(["run", "ufm_ce_balanced", "--threads", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads must be a positive integer" in err[0]


class _Clock:
    def __init__(self, times):
        self.times = iter(times)

    def __call__(self):
        return next(self.times)


def test_a_slow_epoch_is_reported_once_with_the_fix():
    said = []
    # epochs of 2, 2.5, 1.8, 9 (5x the fastest), 9 s
    pace = EpochPace(said.append, clock=_Clock([0, 2, 10, 12.5, 20, 21.8, 30, 39, 40, 49]))
    with threads.torch_threads(2):              # the fix named depends on the thread count
        for epoch in range(1, 6):
            pace.start()
            pace.stop(epoch)
    assert len(said) == 1
    assert "epoch 4 took 9.0 s" in said[0] and "--threads 1" in said[0]


def test_the_slow_epoch_fix_depends_on_the_thread_count():
    from ncbench.training.pace import slow_epoch_fix

    assert "--threads 1" in slow_epoch_fix(2)
    one = slow_epoch_fix(1)
    assert "--threads" not in one and "another terminal" in one   # one thread: fewer cannot help


def test_steady_epochs_are_not_reported():
    said = []
    pace = EpochPace(said.append, clock=_Clock([0, 2, 2, 5, 5, 7.9]))
    for epoch in range(1, 4):
        pace.start()
        pace.stop(epoch)
    assert said == [] and pace.best == 2
