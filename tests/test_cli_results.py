"""CLI exit codes and messages, result CSV schema, atomic writes, skip and resume."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from ncbench.cli import main
from ncbench.results.schema import COLUMNS
from ncbench.results.writer import format_value, write_long_csv
from ncbench.runner.suite import run_tasks
from ncbench.tasks import TaskSpec

TINY = {"dataset": "digits", "model": "test_resnet", "seed": 0,
        "recipe": {"epochs": 2, "batch_size": 256, "lr": 0.05, "eval_every": 1, "checkpoint_every": 1}}


def tiny_spec(name="tiny", kind="train_collapse", **kw) -> TaskSpec:
    return TaskSpec(name=name, kind=kind, version=1, **{**TINY, **kw})


@pytest.mark.parametrize("argv, needle", [
    (["run", "train_colapse_mnist5k"], "Did you mean: train_collapse_mnist5k"),
    (["run", "train_collapse_mnist5k", "--model", "resnet1"], "unknown model 'resnet1'. Did you mean: resnet18"),
    (["run", "train_collapse_mnist5k", "--dataset", "cifar"], "unknown dataset 'cifar'. Did you mean: cifar10"),
    (["suite", "no_such_suite"], "unknown task 'no_such_suite'"),
    (["run", "/nonexistent/spec.yaml"], "not found"),
])
def test_bad_input_exits_2_with_a_clear_message(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ncbench: error:") and needle in err and "Traceback" not in err


def test_missing_real_dataset_names_the_fetch_command(tmp_path, capsys):
    code = main(["run", "train_collapse_cifar10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r"),
                 "--no-progress", "--device", "cpu"])
    err = capsys.readouterr()
    assert code == 1  # the task fails, the suite records it; the message is in the summary
    assert "cifar10" in err.out and "download" in err.out.lower()


def test_list_commands(capsys):
    assert main(["list", "tasks"]) == 0
    assert "train_collapse_mnist5k" in capsys.readouterr().out
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out.split()
    assert {"mnist5k", "digits", "cifar10"} <= set(out)
    assert main(["list", "models", "resnet1*"]) == 0
    assert "resnet18" in capsys.readouterr().out.split()
    assert main(["list", "kinds"]) == 0
    assert "train_collapse" in capsys.readouterr().out


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--epochs" in out and "examples:" in out


def test_csv_values_are_plain_floats_and_pandas_reads_them(tmp_path):
    rows = [{"split": "train", "epoch": 1, "layer": None, "metric": m, "value": v, "n_samples": 10}
            for m, v in [("a", 1234567.0), ("b", math.nan), ("c", math.inf), ("d", 1e-300), ("e", 2)]]
    path = write_long_csv(tmp_path / "r.csv", rows, {"run_id": "x", "task": "t"})
    df = pd.read_csv(path)
    assert list(df.columns) == list(COLUMNS)
    assert df["value"].dtype == float
    assert df["value"].iloc[0] == 1234567.0 and math.isnan(df["value"].iloc[1]) and df["value"].iloc[2] == math.inf
    assert df["value"].iloc[3] == 1e-300 and df["value"].iloc[4] == 2.0
    assert format_value(float("nan")) == "" and format_value(0.1) == "0.1"
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_run_writes_schema_then_skips_then_force_redoes(tmp_path):
    logs = []
    spec = tiny_spec()
    _, runs = run_tasks("t", [spec], tmp_path, progress=False, log=logs.append)
    assert [r.outcome for r in runs] == ["done"]
    df = pd.read_csv(runs[0].csv)
    assert list(df.columns) == list(COLUMNS) and df["value"].dtype == float
    assert set(df.split) >= {"train", "test", "fit", "summary"}
    assert (df.config_hash == spec.config_hash()).all() and (df.task_version == 1).all()
    cfg = json.loads((runs[0].dir / "config.json").read_text())
    assert cfg["provenance"]["torch_version"] == torch.__version__
    assert (runs[0].dir / "collapse.png").stat().st_size > 1000
    mtime = runs[0].csv.stat().st_mtime_ns
    _, again = run_tasks("t", [tiny_spec()], tmp_path, progress=False, log=logs.append)
    assert [r.outcome for r in again] == ["skipped"] and runs[0].csv.stat().st_mtime_ns == mtime
    _, forced = run_tasks("t", [tiny_spec()], tmp_path, force=True, progress=False, log=logs.append)
    assert [r.outcome for r in forced] == ["done"]


def test_tasks_on_one_trajectory_train_once(tmp_path, monkeypatch):
    from ncbench.training import trajectory

    calls = []
    original = trajectory.Trainer.fit
    monkeypatch.setattr(trajectory.Trainer, "fit", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    specs = [tiny_spec("a"), tiny_spec("b", kind="test_collapse"), tiny_spec("c", kind="cdnv_bound")]
    _, runs = run_tasks("t", specs, tmp_path, progress=False, log=lambda m: None)
    assert [r.outcome for r in runs] == ["done"] * 3 and len(calls) == 1
    pairs = pd.read_csv(runs[2].dir / "cdnv_pairs.csv")
    assert list(pairs.columns) == ["class_i", "class_j", "split", "value"] and len(pairs) == 2 * 45


def test_interrupted_run_resumes_from_checkpoint(tmp_path, monkeypatch):
    """Interrupt training in epoch 2; the rerun resumes at epoch 2 and equals an uninterrupted run."""
    from ncbench.training.trainer import Trainer

    spec = tiny_spec(recipe={**TINY["recipe"], "epochs": 3})
    original = Trainer.train_epoch
    epochs_trained = []

    def dying(self, data):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return original(self, data)

    def counting(self, data):
        epochs_trained.append(self.epoch + 1)
        return original(self, data)

    monkeypatch.setattr(Trainer, "train_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        run_tasks("t", [spec], tmp_path / "a", progress=False, log=lambda m: None)
    ckpt = next((tmp_path / "a").rglob("checkpoint.pt"))
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    monkeypatch.setattr(Trainer, "train_epoch", counting)
    _, resumed = run_tasks("t", [spec], tmp_path / "a", progress=False, log=lambda m: None)
    assert epochs_trained == [2, 3], "the rerun must resume, not start over"
    monkeypatch.setattr(Trainer, "train_epoch", original)
    _, fresh = run_tasks("t", [spec], tmp_path / "b", progress=False, log=lambda m: None)
    a, b = pd.read_csv(resumed[0].csv), pd.read_csv(fresh[0].csv)
    keep = a.metric != "train_seconds"
    assert len(a) == len(b) and keep.sum() > 50
    pd.testing.assert_series_equal(a[keep].value.reset_index(drop=True), b[keep].value.reset_index(drop=True))


def _torchrun_rank(rank, world, port, spec_path, out, codes):
    import os
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    code = main(["run", spec_path, "--device", "cpu", "--out", out, "--no-progress"])
    joined = torch.distributed.is_initialized() and torch.distributed.get_world_size() == world
    codes[rank] = (code, joined)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def test_cli_under_torchrun_trains_ddp_and_rank0_writes(tmp_path):
    """What `torchrun --nproc_per_node 2 -m ncbench run SPEC` does: one process group, every sample
    evaluated exactly once across ranks, one results folder written by rank 0."""
    import socket

    import torch.multiprocessing as mp

    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny_ddp\nkind: train_collapse\nversion: 1\ndataset: digits\nmodel: test_resnet\n"
                    "recipe: {epochs: 1, batch_size: 128}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    codes = mp.Manager().dict()
    mp.spawn(_torchrun_rank, args=(2, port, str(spec), str(tmp_path / "out"), codes), nprocs=2, join=True)
    (csv,) = (tmp_path / "out").rglob("results.csv")
    df = pd.read_csv(csv)
    # inside one process group; rank 0 (which writes) exits 1 when its one-epoch run is flagged near chance
    assert dict(codes) == {0: (0 if set(df.status) == {"ok"} else 1, True), 1: (0, True)}
    assert set(df[df.split == "train"].n_samples) == {1438} and set(df[df.split == "test"].n_samples) == {359}


@pytest.mark.parametrize("argv", [["list", "tasks"], ["list", "suites"], ["leaderboard"]])
def test_listing_and_leaderboards_do_not_import_torch(argv):
    """Task kinds (which import torch) load on the first registry lookup, not to print a table."""
    import subprocess
    import sys

    code = (f"import sys; from ncbench.cli import main; rc = main({argv!r}); "
            "sys.exit(3 if 'torch' in sys.modules else rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip()
