"""Thread counts on resume, skip, `verify` and `submit --model` (issue 23 items 14, 15): the float
reduction order of a rerun is the recorded one, and a change is said and recorded."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_leaderboard import TASK, make_run, make_task

from ncbench import leaderboard as lb
from ncbench import leaderboard_cli
from ncbench.cli import main
from ncbench.provenance import threads
from ncbench.results.writer import write_json
from ncbench.runner import suite
from ncbench.training.trajectory import resumed_provenance


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Boards in tmp; four CPUs as far as the thread policy knows (default: 2 threads); torch's thread
    count restored afterwards."""
    monkeypatch.setenv("NCBENCH_LEADERBOARDS", str(tmp_path / "leaderboards"))
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    threads.match_blas_threads()


@pytest.fixture
def rerun_threads(monkeypatch):
    """`run_tasks` replaced by a recorder of torch's thread count at the call, writing fixture results."""
    seen = []

    def run_tasks(name, specs, out_root, *, force=False, progress=True, run_id=None, log=print):
        seen.append(torch.get_num_threads())
        run_dir = Path(out_root) / f"{name}-fake{len(seen)}"
        runs = [suite.TaskRun(s, "done", make_task(run_dir, s.name, model=s.model, seed=s.seed)) for s in specs]
        write_json(run_dir / "suite.json", {"suite": name, "run_id": run_dir.name, "tasks": [{"name": s.name} for s in specs]})
        return run_dir, runs

    monkeypatch.setattr(suite, "run_tasks", run_tasks)
    return seen


def _submitted(tmp_path, recorded: str | None) -> Path:
    run = make_run(tmp_path, "sub")
    cfg_path = run / TASK / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if recorded is not None:
        cfg["provenance"]["torch_threads"] = recorded
    write_json(cfg_path, cfg)
    lb.submit(run)
    return run


@pytest.mark.parametrize("recorded", ["1", "3"])
def test_verify_reruns_with_the_thread_count_the_rows_run_recorded(tmp_path, rerun_threads, recorded):
    _submitted(tmp_path, recorded)
    torch.set_num_threads(2)
    logs = []
    leaderboard_cli.verify("sub", out=tmp_path, device="cpu", progress=False, log=logs.append)
    assert rerun_threads == [int(recorded)]
    assert any(f"rerunning with {recorded} torch thread(s), as the row's run recorded" in m for m in logs)


def test_verify_without_the_run_folder_uses_the_run_policy_and_says_so(tmp_path, rerun_threads):
    _submitted(tmp_path, "1")
    torch.set_num_threads(3)                      # whatever torch had: verify configures, as `run` does
    logs = []
    leaderboard_cli.verify("sub", out=tmp_path / "elsewhere", device="cpu", progress=False, log=logs.append)
    assert rerun_threads == [2]                   # half of the 4 CPUs, the default of `ncbench run`
    assert any("is not under" in m and "--threads N to match" in m for m in logs)
    leaderboard_cli.verify("sub", out=tmp_path, device="cpu", progress=False, log=logs.append, threads="3")
    assert rerun_threads[-1] == 3                 # --threads wins over the record


def test_verify_refuses_a_recorded_count_above_the_cpus(tmp_path, rerun_threads):
    _submitted(tmp_path, "8")
    with pytest.raises(ValueError, match=r"used 8 torch threads, this process may run on 4 CPU\(s\)"):
        leaderboard_cli.verify("sub", out=tmp_path, device="cpu", progress=False, log=lambda m: None)
    assert rerun_threads == []


def test_submit_model_configures_threads_like_run(tmp_path, rerun_threads):
    torch.set_num_threads(3)
    argv = ["submit", "--model", "test_resnet", "--seed", "0", "--device", "cpu", "--threads", "1",
            "--out", str(tmp_path / "results"), "--no-progress"]
    assert main(argv) == 0
    assert rerun_threads == [1]


def test_a_resume_under_another_thread_count_is_said_and_recorded(capsys):
    torch.set_num_threads(1)
    trained_by = {"torch_threads": 2, "git_hash": "x"}
    out = resumed_provenance(trained_by, 5, Path("run/checkpoint.pt"))
    assert out == {**trained_by, "threads_changed": [{"epoch": 5, "torch_threads": 1}]}
    assert "trained with 2 torch thread(s) up to epoch 5; this run has 1" in capsys.readouterr().out
    assert resumed_provenance(out, 7, Path("c")) is out           # still 1 thread: nothing new to say
    torch.set_num_threads(2)
    again = resumed_provenance(out, 9, Path("c"))                  # back to 2: recorded too
    assert again["threads_changed"] == [{"epoch": 5, "torch_threads": 1}, {"epoch": 9, "torch_threads": 2}]
    assert resumed_provenance({"torch_threads": 2}, 3, Path("c")) == {"torch_threads": 2}


def test_a_finished_task_skipped_under_another_thread_count_says_what_its_results_hold():
    torch.set_num_threads(2)
    logs = []
    suite._say_other_threads({"provenance": {"torch_threads": "1"}}, "t", logs.append)
    suite._say_other_threads({"provenance": {"torch_threads": "2"}}, "t", logs.append)
    assert logs == [("[t] its results were measured with 1 torch thread(s), this command has 2: they are kept as "
                     "measured with 1 (config.json); --force measures again with 2")]
