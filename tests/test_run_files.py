"""Hostile run folders (issue 23, items 1-7, 12, 13): nothing escapes the run folder, nothing hangs,
cached state that fails to load is reported and recomputed, write failures are one line naming the
file and the cause, and a resumed run writes the same file as an uninterrupted one.

`probe` tasks (`run_files_probe`) return fixed rows: they exercise the runner and the files, not a
metric; the trajectory tests train the smallest real run (test_resnet on digits, one or two epochs).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
import torch

from ncbench import run_files
from ncbench.results.report import write_report
from ncbench.runner.suite import run_tasks
from ncbench.tasks import TASK_KINDS
from ncbench.tasks.base import Task, TaskOutput, TaskSpec, register_task

if "run_files_probe" not in TASK_KINDS:
    @register_task("run_files_probe")
    class RunFilesProbe(Task):
        """Fixed rows and one extra table."""

        default_options: ClassVar[dict] = {}

        def run(self, ctx):
            rows = [{"split": "summary", "metric": f"m{i}", "value": 0.5 * i, "n_samples": 4} for i in range(3)]
            return TaskOutput(rows, tables={"pairs": pd.DataFrame({"i": [0, 1], "value": [0.5, 0.25]})})

ONE_EPOCH = {"protocol": "cpu-mnist5k", "epochs": 1, "batch_size": 256, "eval_every": 1}
DEEP = "[" * 100_000 + "]" * 100_000


def probe(name="p") -> TaskSpec:
    return TaskSpec(name=name, kind="run_files_probe", version=1)


def trained(name="t", epochs=1) -> TaskSpec:
    return TaskSpec(name=name, kind="train_collapse", version=1, dataset="digits", model="test_resnet", seed=0,
                    recipe={**ONE_EPOCH, "epochs": epochs})


def run(specs, out, **kw):
    lines = []
    run_dir, runs = run_tasks("s", specs, out, run_id="s-x", progress=False, log=lines.append, **kw)
    return run_dir, runs, lines


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class Hung(BaseException):
    """Raised by `deadline` (a BaseException: no `except Exception` or `except OSError` swallows it)."""


@contextlib.contextmanager
def deadline(seconds: int = 30):
    """Fail (instead of hanging the suite) when the block blocks, e.g. on a FIFO."""
    def hung(*_):
        raise Hung(f"blocked for {seconds} s")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def one_line(text: str) -> None:
    assert "\n" not in text.strip() and "Traceback" not in text, text


def trajectory_key(spec: TaskSpec) -> str:
    return TASK_KINDS.get(spec.kind)(spec).trajectories()[0].key()


# ------------------------------------------------------------------ the module itself, unit by unit

@pytest.mark.parametrize("make, what", [
    (lambda p: os.mkfifo(p), "FIFO"),
    (lambda p: p.mkdir(), "folder"),
    (lambda p: p.symlink_to("/dev/zero"), "character device"),
])
def test_reads_refuse_what_is_not_a_regular_file_without_blocking(tmp_path, make, what):
    target = tmp_path / "config.json"
    make(target)
    with deadline(20), pytest.raises(run_files.UnsafePathError, match=what) as e:
        run_files.read_json(target)          # no root: the file type alone refuses it
    one_line(str(e.value))
    assert str(target) in str(e.value)


def test_reads_refuse_a_link_out_of_the_run_folder(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "leak.csv").symlink_to(secret)
    (run_dir / "inner.csv").write_text("ok")
    (run_dir / "alias.csv").symlink_to(run_dir / "inner.csv")       # a link that stays inside is fine
    with pytest.raises(run_files.UnsafePathError, match="outside the run folder"):
        run_files.read_text(run_dir / "leak.csv", run_dir)
    assert run_files.read_text(run_dir / "alias.csv", run_dir) == "ok"
    assert run_files.read_text(run_dir / "leak.csv") == "SECRET", "without a root only the file type is checked"


@pytest.mark.parametrize("depth, ok", [(run_files.MAX_JSON_DEPTH, True), (run_files.MAX_JSON_DEPTH + 1, False),
                                       (100_000, False)])
def test_json_depth_limit(tmp_path, depth, ok):
    path = tmp_path / "d.json"
    path.write_text("[" * depth + "]" * depth)
    if ok:
        doc = run_files.read_json(path)
        for _ in range(depth - 1):
            doc = doc[0]
        assert doc == []
    else:
        with pytest.raises(run_files.ReadError, match="deeper than"):
            run_files.read_json(path)


def test_json_depth_skips_brackets_inside_strings_and_matches_the_parser():
    text = json.dumps({"a": ["[[[[", {"b": '}}}"}\\'}], "c": [[1]]})
    assert run_files.json_depth(text) == 3          # {"c": [[1]]}: object, list, list


def test_json_size_limit(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(["x" * 100]))
    with pytest.raises(run_files.ReadError, match="larger than 50 bytes"):
        run_files.read_json(path, max_bytes=50)
    assert run_files.read_json(path, max_bytes=200) == ["x" * 100]


def test_deletes_refuse_links_out_and_special_files(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep me")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "_trajectories").symlink_to(outside)
    os.mkfifo(run_dir / "config.json")
    with pytest.raises(run_files.UnsafePathError, match="outside the run folder"):
        run_files.remove_tree(run_dir / "_trajectories", run_dir)
    with pytest.raises(run_files.UnsafePathError, match="outside the run folder"):
        run_files.remove(run_dir / "_trajectories" / "victim", run_dir)
    with pytest.raises(run_files.UnsafePathError, match="FIFO"):
        run_files.remove(run_dir / "config.json", run_dir)
    assert (outside / "victim").read_text() == "keep me"
    assert run_files.remove(run_dir / "absent", run_dir) is False


def test_writes_never_go_through_a_link_out_of_the_run_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "task").symlink_to(outside)
    with pytest.raises(run_files.UnsafePathError, match="outside the run folder"):
        run_files.replace_text(run_dir / "task" / "results.csv", "x", run_dir)
    with pytest.raises(run_files.UnsafePathError, match="outside the run folder"):
        run_files.ensure_dir(run_dir / "task" / "deeper" / "still", run_dir)
    assert list(outside.iterdir()) == [], "nothing was created outside"
    # a link in place of the file itself is replaced, never written through
    (outside / "target").write_text("keep me")
    (run_dir / "fig.png").symlink_to(outside / "target")
    run_files.replace_bytes(run_dir / "fig.png", b"png", run_dir)
    assert (outside / "target").read_text() == "keep me" and (run_dir / "fig.png").read_bytes() == b"png"


def dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            pass
        pid -= 1


def test_only_temporaries_of_dead_writers_are_removed(tmp_path):
    dead, mine = dead_pid(), os.getpid()
    names = {f".checkpoint.pt.tmp{dead}-7": False, f".checkpoint.pt.tmp{dead}": False,   # killed writers: removed
             ".checkpoint.pt.tmp1-7": True,                    # pid 1 is alive: a live writer, kept
             f".checkpoint.pt.tmp{mine}-1": True,              # another thread of this process, kept
             "checkpoint.pt": True, ".lock": True, "notes.tmp5": True}    # not temporaries
    for n in names:
        (tmp_path / n).write_text("x")
    run_files.remove_stale_temporaries(tmp_path, tmp_path)
    assert {n: (tmp_path / n).exists() for n in names} == names


# ------------------------------------------------------------------------- item 1: links out of --out

def test_force_never_deletes_or_writes_through_a_linked_trajectories_folder(tmp_path):
    spec = trained()
    outside = tmp_path / "outside"
    (outside / trajectory_key(spec)).mkdir(parents=True)
    (outside / trajectory_key(spec) / "victim.pt").write_text("keep me")
    (outside / "other").write_text("keep me too")
    run_dir = tmp_path / "out" / "s-x"
    run_dir.mkdir(parents=True)
    (run_dir / "_trajectories").symlink_to(outside)
    before = snapshot(outside)
    for force in (True, False):
        _, runs, _ = run([spec], tmp_path / "out", force=force)
        assert runs[0].outcome == "failed"
        one_line(runs[0].error)
        assert "refusing" in runs[0].error and "outside the run folder" in runs[0].error
        assert snapshot(outside) == before, "files outside --out were deleted or written"


def test_a_task_folder_linked_out_of_the_run_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    run_dir = tmp_path / "out" / "s-x"
    run_dir.mkdir(parents=True)
    (run_dir / "p").symlink_to(outside)
    _, runs, _ = run([probe("p"), probe("q")], tmp_path / "out")
    assert [r.outcome for r in runs] == ["failed", "done"]
    assert "outside the run folder" in runs[0].error and list(outside.iterdir()) == []


# ---------------------------------------------------------------------- item 2: report follows no link

def test_report_never_embeds_a_file_a_link_points_to(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("user,hash\nroot,SECRET-HASH\n")
    run_dir, runs, _ = run([probe()], tmp_path / "out")
    (runs[0].dir / "leak.csv").symlink_to(secret)
    page = write_report(run_dir).read_text()
    assert "SECRET-HASH" not in page
    assert "leak.csv" in page and "outside the run folder" in page


def test_report_refuses_a_linked_results_file(tmp_path):
    secret = tmp_path / "shadow.csv"
    run_dir, runs, _ = run([probe()], tmp_path / "out")
    shutil.copy(runs[0].csv, secret)
    secret.write_text(secret.read_text().replace("m1", "SECRET-METRIC"))
    runs[0].csv.unlink()
    runs[0].csv.symlink_to(secret)
    page = write_report(run_dir).read_text()
    assert "SECRET-METRIC" not in page and "outside the run folder" in page


# ---------------------------------------------------------------------------------- item 3: FIFOs

@pytest.mark.parametrize("name", ["config.json", "error.json", "pairs.csv", "extra.csv"])
def test_a_fifo_in_a_task_folder_never_hangs_run_or_report(tmp_path, name):
    run_dir, runs, _ = run([probe()], tmp_path / "out")
    fifo = runs[0].dir / name
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    if name == "error.json":
        runs[0].csv.unlink()                            # a failed task: the report reads its error.json
    with deadline(60):
        page = write_report(run_dir).read_text()
        _, again, _lines = run([probe()], tmp_path / "out")
    assert "FIFO" in page
    if name in ("config.json", "error.json"):         # refused in one line, never read nor deleted
        assert again[0].outcome == "failed" and "FIFO" in again[0].error and str(fifo) in again[0].error
        one_line(again[0].error)
    else:
        assert again[0].outcome in ("done", "skipped")


def test_a_fifo_in_place_of_a_cached_record_is_refused_not_read(tmp_path):
    from ncbench.training.record_store import RecordError, load_record

    os.mkfifo(tmp_path / "record.json")
    with deadline(20), pytest.raises(RecordError, match="FIFO"):
        load_record(tmp_path, tmp_path)


def test_a_fifo_results_file_never_hangs_load_results(tmp_path):
    from ncbench.results.load import load_results

    os.mkfifo(tmp_path / "results.csv")
    with deadline(20), pytest.raises(run_files.UnsafePathError, match="FIFO"):
        load_results(tmp_path / "results.csv")


# ------------------------------------------------------------------------------ item 4: deep JSON

@pytest.mark.parametrize("name", ["config.json", "error.json", "suite.json"])
def test_deeply_nested_json_is_one_line_in_run_report_and_submit(tmp_path, name):
    from ncbench.leaderboard.submit import SubmissionRefused, collect_entries

    run_dir, runs, _ = run([probe()], tmp_path / "out")
    target = run_dir / name if name == "suite.json" else runs[0].dir / name
    target.write_text(DEEP)
    if name == "error.json":
        runs[0].csv.unlink()                            # a failed task: the report reads its error.json
    page = write_report(run_dir).read_text()             # no RecursionError
    if name != "suite.json":
        assert "deeper than" in page
    with contextlib.suppress(SubmissionRefused):          # refused or not: never a RecursionError
        collect_entries([run_dir])
    _, again, lines = run([probe()], tmp_path / "out")
    assert again[0].outcome in ("done", "skipped")
    if name == "config.json":
        assert again[0].outcome == "done" and any("deeper than" in m for m in lines)


def test_submit_names_a_deep_config_in_one_line(tmp_path):
    from ncbench.leaderboard.submit import _read_run

    _run_dir, runs, _ = run([probe()], tmp_path / "out")
    (runs[0].dir / "config.json").write_text(DEEP)
    with pytest.raises(ValueError, match="deeper than") as e:
        _read_run(runs[0].dir)
    one_line(str(e.value))


# ----------------------------------------------------- items 5-7: cached state that poisons reruns

def small_record():
    from ncbench.training.evaluation import SplitEval
    from ncbench.training.records import EpochRecord, TrajectoryRecord

    split = SplitEval(1.0, 0.5, 10, {"nc1": 1.0}, {"min_sq_mean_distance": 2.0})
    return TrajectoryRecord({"dataset": "digits"}, [EpochRecord(1, 0.1, 1.0, 0.5, split, split, {})], [5, 5])


def corrupt(doc: dict, how: str) -> dict:
    rec = doc["record"]
    if how == "no record":
        return {"schema": doc["schema"]}
    if how == "string record":
        return {**doc, "record": "nonsense"}
    changed = {"epochs []": {"epochs": []}, "epochs dict": {"epochs": {"0": rec["epochs"][0]}},
               "epochs string": {"epochs": "abc"}, "epoch items strings": {"epochs": ["x"]},
               "accuracy string": {"epochs": [{**rec["epochs"][0], "train": {**rec["epochs"][0]["train"],
                                                                              "accuracy": "high"}}]},
               "probes list": {"epochs": [{**rec["epochs"][0], "probes": [1, 2]}]},
               "class_counts dict": {"class_counts": {"a": 1}}}[how]
    return {**doc, "record": {**rec, **changed}}


@pytest.mark.parametrize("how", ["no record", "string record", "epochs []", "epochs dict", "epochs string",
                                 "epoch items strings", "accuracy string", "probes list", "class_counts dict"])
def test_a_cached_record_of_the_wrong_shape_is_reported_not_trusted(tmp_path, how, capsys):
    from ncbench.training.recipe import Recipe
    from ncbench.training.record_store import RecordError, load_record, save_record
    from ncbench.training.trajectory import Trajectory, TrajectoryConfig

    save_record(small_record(), tmp_path)
    assert load_record(tmp_path).final().train.accuracy == 0.5          # the intact record reads back
    path = tmp_path / "record.json"
    path.write_text(json.dumps(corrupt(json.loads(path.read_text()), how)))
    with pytest.raises(RecordError) as e:
        load_record(tmp_path)
    one_line(str(e.value))
    traj = Trajectory(TrajectoryConfig("digits", "test_resnet", Recipe.from_dict(ONE_EPOCH)), tmp_path)
    traj.dir = tmp_path
    assert traj.cached({"some_probe": None}) is None, "a damaged record must be recomputed"
    out = capsys.readouterr()
    assert "training again" in out.out + out.err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished 1-epoch train_collapse run (its folder is copied by each test that damages it)."""
    from ncbench.provenance.threads import torch_threads

    out = tmp_path_factory.mktemp("finished")
    with torch_threads(1):
        run_dir, runs, _ = run([trained()], out)
    assert runs[0].outcome == "done"
    return run_dir


def copy_run(finished: Path, tmp_path: Path) -> tuple[Path, Path]:
    run_dir = tmp_path / "out" / finished.name
    shutil.copytree(finished, run_dir, symlinks=True)
    return run_dir, next((run_dir / "_trajectories").iterdir())


def test_a_damaged_record_json_is_recomputed_by_the_next_run(finished, tmp_path, capsys, one_thread):
    _run_dir, traj_dir = copy_run(finished, tmp_path)
    doc = json.loads((traj_dir / "record.json").read_text())
    (traj_dir / "record.json").write_text(json.dumps(corrupt(doc, "epochs []")))
    _, runs, _ = run([trained("t2")], tmp_path / "out")      # a new task on the same training
    assert runs[0].outcome == "done", runs[0].error
    said = [m for m in capsys.readouterr().out.splitlines() if "without any evaluated epoch" in m]
    assert len(said) == 1 and "record.json" in said[0] and "training again" in said[0]
    from ncbench.training.record_store import load_record
    assert len(load_record(traj_dir).epochs) == 1, "the record was recomputed and stored again"


@pytest.mark.parametrize("damage", ["pickle", "truncated", "not a state dict"])
def test_damaged_final_weights_are_reported_and_trained_again(finished, tmp_path, damage, capsys, one_thread):
    import pickle

    from ncbench.training.recipe import Recipe
    from ncbench.training.trajectory import Trajectory, TrajectoryConfig

    run_dir, traj_dir = copy_run(finished, tmp_path)
    weights = traj_dir / "model_final.pt"
    good = weights.read_bytes()
    if damage == "pickle":
        weights.write_bytes(pickle.dumps({"a": 1}) + b"junk")
    elif damage == "truncated":
        weights.write_bytes(good[: len(good) // 3])
    else:
        torch.save([1, 2, 3], weights)
    traj = Trajectory(TrajectoryConfig("digits", "test_resnet", Recipe.from_dict(ONE_EPOCH)),
                      run_dir / "_trajectories", progress=False, root=run_dir)
    traj.dir = traj_dir
    model = traj.load_final_model()
    assert sum(p.numel() for p in model.parameters()) > 0
    assert isinstance(torch.load(weights, weights_only=True), dict), "the damaged file was replaced"
    out = capsys.readouterr()
    assert "model_final.pt" in out.out + out.err and "training again" in out.out + out.err


def test_stale_checkpoint_temporaries_are_removed_on_the_next_run(finished, tmp_path, one_thread):
    _run_dir, traj_dir = copy_run(finished, tmp_path)
    dead = dead_pid()
    stale = [traj_dir / f".checkpoint.pt.tmp{dead}", traj_dir / f".model_final.pt.tmp{dead}-123"]
    live = traj_dir / ".checkpoint.pt.tmp1-5"          # pid 1 is alive: not ours to delete
    for p in [*stale, live]:
        p.write_bytes(b"half a checkpoint")
    _, runs, _ = run([trained("t3")], tmp_path / "out")
    assert runs[0].outcome == "done"
    assert not any(p.exists() for p in stale) and live.exists()


# ------------------------------------------------------------------- item 12: full disk, EPERM, EROFS

@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EPERM, errno.EROFS])
def test_a_failed_checkpoint_write_is_one_line_naming_the_file_and_cause(tmp_path, monkeypatch, code, one_thread):
    real = run_files.write_new_file

    def failing(path, data):
        if "checkpoint.pt" in Path(path).name:
            real(path, data[:100])
            raise OSError(code, os.strerror(code))
        return real(path, data)

    monkeypatch.setattr(run_files, "write_new_file", failing)
    _, runs, _ = run([trained()], tmp_path / "out")
    assert runs[0].outcome == "failed"
    err = runs[0].error
    one_line(err)
    assert "checkpoint.pt" in err and os.strerror(code) in err and "enforce" not in err
    assert {errno.ENOSPC: "disk is full", errno.EPERM: "permission", errno.EROFS: "read-only"}[code] in err
    assert not [p for p in (tmp_path / "out").rglob("*") if ".tmp" in p.name], "a temporary was left"


def test_a_real_write_failure_inside_torch_save_names_the_file(tmp_path, one_thread):
    """A real OS failure (file size limit, EFBIG) while the checkpoint is written: before, torch.save's
    `[enforce fail at inline_container.cc]` named no file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, hard))      # checkpoints of test_resnet are larger
    try:
        _, runs, _ = run([trained()], tmp_path / "out")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert runs[0].outcome == "failed"
    one_line(runs[0].error)
    assert "checkpoint.pt" in runs[0].error and os.strerror(errno.EFBIG) in runs[0].error
    assert "enforce" not in runs[0].error


def chattr_works(folder: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        return False
    probe_dir = folder / "chattr_probe"
    probe_dir.mkdir()
    ok = subprocess.run(["chattr", "+i", str(probe_dir)], check=False, capture_output=True).returncode == 0
    subprocess.run(["chattr", "-i", str(probe_dir)], check=False, capture_output=True)
    probe_dir.rmdir()
    return ok


@pytest.mark.root
def test_an_immutable_trajectories_folder_is_one_line(finished, tmp_path, one_thread):
    """`chattr +i` (needs root and a file system with attributes; skipped otherwise)."""
    if not chattr_works(tmp_path):
        pytest.skip("needs root and chattr (+i) on this file system")
    _run_dir, traj_dir = copy_run(finished, tmp_path)
    for f in ("record.json", "model_final.pt"):
        (traj_dir / f).unlink()                          # the run must write them again
    subprocess.run(["chattr", "+i", str(traj_dir)], check=True)
    try:
        _, runs, _ = run([trained("t4")], tmp_path / "out")
    finally:
        subprocess.run(["chattr", "-i", str(traj_dir)], check=True)
    assert runs[0].outcome == "failed"
    one_line(runs[0].error)
    assert str(traj_dir) in runs[0].error and "not permitted" in runs[0].error and "enforce" not in runs[0].error


# ------------------------------------------------------- item 13: resume after a kill while writing

def test_resume_after_a_kill_during_the_results_write_gives_the_same_file(tmp_path, monkeypatch, one_thread):
    from ncbench.runner import suite

    _, fresh, _ = run([trained(epochs=2)], tmp_path / "fresh")
    real = suite.write_long_csv

    def killed(*a, **k):
        raise KeyboardInterrupt                       # SIGINT (or a SIGKILL) while results.csv is written

    monkeypatch.setattr(suite, "write_long_csv", killed)
    with pytest.raises(KeyboardInterrupt):
        run([trained(epochs=2)], tmp_path / "cut")
    monkeypatch.setattr(suite, "write_long_csv", real)
    _, resumed, _ = run([trained(epochs=2)], tmp_path / "cut")
    cols = ["split", "epoch", "layer", "metric", "value"]
    a, b = pd.read_csv(fresh[0].csv), pd.read_csv(resumed[0].csv)
    assert len(a) > 20
    assert a[cols].astype(str).values.tolist() == b[cols].astype(str).values.tolist()
    same = [c for c in a.columns if c not in ("run_id", "started_at")]   # where and when it ran differ
    assert a[same].astype(str).equals(b[same].astype(str))
