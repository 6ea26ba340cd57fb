"""Trustworthy run folders (issue 13): names cannot escape --out (item 5), ordinary OS errors are one
line and cost one task only (item 6), results files are checked against the row count and sha256
config.json records (item 9), and two runs into one folder do not both compute (item 11).

The task kind here (`integrity_probe`) is bookkeeping: it returns fixed rows and counts its runs, so
these tests exercise the runner and the results files, not any metric.
"""
from __future__ import annotations

import errno
import json
import threading
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from ncbench import run_files
from ncbench.cli import main
from ncbench.results import writer
from ncbench.results.integrity import csv_rows, file_sha256, integrity_problems
from ncbench.runner.suite import LOCK_NAME, is_done, run_tasks
from ncbench.tasks import TASK_KINDS
from ncbench.tasks.base import Task, TaskOutput, TaskSpec, register_task

RUNS: list[str] = []
GATES: dict[str, threading.Event] = {}

if "integrity_probe" not in TASK_KINDS:
    @register_task("integrity_probe")
    class IntegrityProbe(Task):
        """Fixed rows; waits on GATES[name] when one is set (to hold a task open in a thread)."""

        default_options: ClassVar[dict] = {"n": 3}

        def run(self, ctx):
            gate = GATES.get(self.spec.name)
            if gate is not None:
                assert gate.wait(60), "the test never opened the gate"
            RUNS.append(self.spec.name)
            rows = [{"split": "summary", "epoch": None, "layer": None, "metric": f"m{i}", "value": 0.125 * i,
                     "n_samples": 10} for i in range(self.options["n"])]
            import pandas as pd
            return TaskOutput(rows, tables={"pairs": pd.DataFrame({"i": [0, 1], "value": [0.5, 0.25]})})


@pytest.fixture(autouse=True)
def _reset():
    RUNS.clear()
    GATES.clear()
    yield
    GATES.clear()


def spec(name="probe_a", **kw) -> TaskSpec:
    return TaskSpec(name=name, kind="integrity_probe", version=1, **kw)


def quiet(_msg):
    pass


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name]


# --------------------------------------------------------------------------- item 5: names

@pytest.mark.parametrize("name", ["../../escaped", "/tmp/ncbench_abs_escape", "..", ".hidden", "a/b", "a\\b",
                                  "x\n", ""])
def test_a_task_name_cannot_write_outside_out(name, tmp_path):
    out = tmp_path / "deep" / "out"
    with pytest.raises(ValueError, match="cannot name a folder"):
        run_tasks("suite", [spec(name)], out, log=quiet)
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/ncbench_abs_escape").exists()
    assert not out.exists(), "something was written before the name was checked"
    assert RUNS == []


def test_a_suite_name_or_run_id_cannot_escape_either(tmp_path):
    with pytest.raises(ValueError, match="suite name '../up' cannot name a folder"):
        run_tasks("../up", [spec()], tmp_path / "out", log=quiet)
    with pytest.raises(ValueError, match="run id"):
        run_tasks("ok", [spec()], tmp_path / "out", run_id="../../r", log=quiet)
    assert not (tmp_path / "out").exists() and not (tmp_path / "up").exists()


def test_cli_refuses_an_escaping_spec_name_with_exit_2(tmp_path, capsys):
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump({"name": "../../evil", "kind": "integrity_probe", "version": 1}))
    out = tmp_path / "a" / "b"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot name a folder" in err and "Traceback" not in err
    assert not (tmp_path / "evil").exists() and not out.exists()


# --------------------------------------------------------------------------- item 6: OS errors

def test_out_on_a_regular_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("I am a file\n")
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump({"name": "probe_a", "kind": "integrity_probe", "version": 1}))
    assert main(["run", str(path), "--out", str(blocker), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("ncbench: error: cannot write") and "regular file" in err and "Traceback" not in err
    assert blocker.read_text() == "I am a file\n" and RUNS == []


def fail_writes(monkeypatch, code: int, when):
    """Make the writes of `ncbench.run_files` fail with `code` for paths `when(path)` accepts, after half of
    the temporary file reached the disk (the way a full disk fails a write)."""
    real_write = run_files.write_new_file
    failing = []

    def fake_write(path, data):
        if when(Path(path)):
            failing.append(Path(path))
            real_write(path, data[: len(data) // 2])                   # half a file reaches the disk
            raise OSError(code, __import__("os").strerror(code))
        return real_write(path, data)

    monkeypatch.setattr(run_files, "write_new_file", fake_write)
    return failing


def test_a_full_disk_fails_one_task_cleans_up_and_the_suite_goes_on(tmp_path, monkeypatch):
    failing = fail_writes(monkeypatch, errno.ENOSPC, lambda p: p.parent.name == "probe_a" and "results.csv" in p.name)
    run_dir, runs = run_tasks("s", [spec("probe_a"), spec("probe_b")], tmp_path, log=quiet)
    assert failing, "the fault was never injected"
    assert [r.outcome for r in runs] == ["failed", "done"]
    assert "cannot write" in runs[0].error and "disk is full" in runs[0].error and "\n" not in runs[0].error
    assert temporaries(tmp_path) == [], "a temporary file was left behind"
    assert not is_done(spec("probe_a"), run_dir / "probe_a"), "a failed write counts as done"
    assert is_done(spec("probe_b"), run_dir / "probe_b")
    monkeypatch.undo()
    _, again = run_tasks("s", [spec("probe_a"), spec("probe_b")], tmp_path, log=quiet)
    assert [r.outcome for r in again] == ["done", "skipped"]     # the failed task is redone, the other kept


def test_cli_summary_lists_the_failed_write(tmp_path, monkeypatch, capsys):
    suite = tmp_path / "two.yaml"
    suite.write_text(yaml.safe_dump({"suite": "two", "tasks": [
        {"name": "probe_a", "kind": "integrity_probe", "version": 1},
        {"name": "probe_b", "kind": "integrity_probe", "version": 1}]}))
    fail_writes(monkeypatch, errno.EROFS, lambda p: p.parent.name == "probe_a" and "config.json" in p.name)
    assert main(["suite", str(suite), "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress"]) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.strip().startswith("failed")]
    assert len(failed) == 1 and "probe_a" in failed[0] and "read-only" in failed[0]
    assert any(line.strip().startswith("done") and "probe_b" in line for line in out.splitlines())
    assert "Traceback" not in out and temporaries(tmp_path) == []


@pytest.mark.parametrize("code, hint", [(errno.EROFS, "read-only"), (errno.ENOSPC, "disk is full"),
                                        (errno.EACCES, "permission denied")])
def test_report_out_on_an_unwritable_path_is_one_line(code, hint, tmp_path, monkeypatch, capsys):
    run_dir, _ = run_tasks("s", [spec()], tmp_path / "out", log=quiet)
    fail_writes(monkeypatch, code, lambda p: "report" in p.name)
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and hint in err and "Traceback" not in err
    assert temporaries(tmp_path) == [] and not (tmp_path / "report.html").exists()


def test_report_out_under_a_regular_file_is_one_line(tmp_path, capsys):
    run_dir, _ = run_tasks("s", [spec()], tmp_path / "out", log=quiet)
    (tmp_path / "file").write_text("x")
    assert main(["report", str(run_dir), "--out", str(tmp_path / "file" / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "regular file" in err


def test_atomic_write_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch):
    target = tmp_path / "x.csv"
    target.write_text("old\n")
    fail_writes(monkeypatch, errno.ENOSPC, lambda p: True)
    with pytest.raises(writer.ResultsWriteError, match=r"cannot write .*x.csv: .*disk is full"):
        writer.atomic_write_text(target, "new\n" * 100)
    assert target.read_text() == "old\n" and temporaries(tmp_path) == []


def test_stale_temporaries_of_a_killed_writer_are_removed_on_the_next_run(tmp_path):
    task_dir = tmp_path / "s-x" / "probe_a"
    task_dir.mkdir(parents=True)
    (task_dir / ".results.csv.tmp4242").write_text("half")
    run_tasks("s", [spec()], tmp_path, run_id="s-x", log=quiet)
    assert temporaries(tmp_path) == []


# --------------------------------------------------------------------------- item 9: integrity

def test_config_records_rows_and_sha256_of_every_results_file(tmp_path):
    _, runs = run_tasks("s", [spec(options={"n": 4})], tmp_path, log=quiet)
    task_dir = runs[0].dir
    files = json.loads((task_dir / "config.json").read_text())["files"]
    assert sorted(files) == ["pairs.csv", "results.csv"]
    lines = (task_dir / "results.csv").read_text().splitlines()
    assert files["results.csv"] == {"rows": 4, "sha256": file_sha256(task_dir / "results.csv")} and len(lines) == 5
    assert files["pairs.csv"]["rows"] == 2 and csv_rows(task_dir / "pairs.csv") == 2
    assert integrity_problems(task_dir) == []


@pytest.mark.parametrize("damage, needle", [
    (lambda t: t.rsplit("\n", 2)[0] + "\n", "has 3 rows, config.json records 4"),     # cut at a line boundary
    (lambda t: t[: t.rindex("0.375") + 3], "sha256"),                                # cut mid-number, same rows
    (lambda t: t.replace("0.375", "0.875"), "sha256"),                               # edited by hand
])
def test_a_damaged_results_csv_is_not_done_and_is_recomputed(damage, needle, tmp_path):
    s = spec(options={"n": 4})
    run_dir, _ = run_tasks("s", [s], tmp_path, log=quiet)
    csv = run_dir / "probe_a" / "results.csv"
    csv.write_text(damage(csv.read_text()))
    assert any(needle in p for p in integrity_problems(csv.parent))
    messages = []
    _, runs = run_tasks("s", [s], tmp_path, log=messages.append)
    assert runs[0].outcome == "done" and RUNS == ["probe_a", "probe_a"]
    assert any("not intact" in m and needle in m for m in messages)
    assert integrity_problems(csv.parent) == []


def test_a_folder_without_records_is_not_done(tmp_path):
    s = spec()
    run_dir, _ = run_tasks("s", [s], tmp_path, log=quiet)
    cfg_path = run_dir / "probe_a" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["files"]
    cfg_path.write_text(json.dumps(cfg))
    assert not is_done(s, run_dir / "probe_a")
    assert "older ncbench" in integrity_problems(run_dir / "probe_a")[0]


def test_report_does_not_render_a_damaged_value(tmp_path):
    from ncbench.results.report import render_report

    run_dir, _ = run_tasks("s", [spec(options={"n": 4})], tmp_path, log=quiet)
    csv = run_dir / "probe_a" / "results.csv"
    text = csv.read_text()
    csv.write_text(text[: text.rindex("0.375") + 3])               # "0.3": a value truncated mid-number
    page = render_report(run_dir, tmp_path / "r.html")
    assert "Damaged results" in page and "0.3<" not in page and "0.125" not in page


# --------------------------------------------------------------------------- item 11: the task lock

def test_a_locked_task_folder_fails_that_task_with_a_clear_message(tmp_path):
    from filelock import FileLock

    task_dir = tmp_path / "s-x" / "probe_a"
    task_dir.mkdir(parents=True)
    other = FileLock(str(task_dir / LOCK_NAME))
    other.acquire()
    try:
        messages = []
        _, runs = run_tasks("s", [spec("probe_a"), spec("probe_b")], tmp_path, run_id="s-x",
                            log=messages.append, lock_timeout=0.05)
    finally:
        other.release()
    assert [r.outcome for r in runs] == ["failed", "done"] and RUNS == ["probe_b"]
    assert "held by another ncbench process" in runs[0].error
    assert any("waiting" in m for m in messages)


def test_a_second_run_into_the_same_folder_waits_then_skips(tmp_path):
    """Run A holds the task open; run B starts and says it waits; only then may A finish. B must not compute
    the task again (old code: both computed it and the last writer won)."""
    gate = GATES["probe_a"] = threading.Event()
    a_running = threading.Event()
    result = {}

    def log_a(message):
        if "running" in message:          # logged once A holds the task's lock
            a_running.set()

    a = threading.Thread(target=lambda: result.update(a=run_tasks("s", [spec()], tmp_path, log=log_a)))
    a.start()
    assert a_running.wait(60)
    messages = []

    def log_b(message):
        messages.append(message)
        if "waiting" in message:
            gate.set()                    # B is about to block on the lock: let A finish

    _, runs_b = run_tasks("s", [spec()], tmp_path, log=log_b)
    a.join(60)
    assert result["a"][1][0].outcome == "done" and runs_b[0].outcome == "skipped"
    assert RUNS == ["probe_a"], "the task was computed twice"
    assert any("another ncbench process" in m for m in messages)
