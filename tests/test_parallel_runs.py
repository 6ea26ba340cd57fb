"""Parallel runs (`--jobs N`, `--launcher slurm`; ncbench.runner.jobs, ncbench.runner.launcher, ncbench.runner.suite_jobs):
the same values as `--jobs 1`, failures recorded while the others finish, skip and resume, `auto`
resolution with its GPU per job, Ctrl-C stopping every worker."""
from __future__ import annotations

import json
import os
import time

import pandas as pd
import pytest
import yaml

from ncbench.cli import main
from ncbench.runner.jobs import JobSlots, parse_jobs, resolve_jobs
from ncbench.runner.launcher import parse_slurm, run_pool

RECIPE = {"epochs": 1, "batch_size": 32, "lr": 0.05, "eval_every": 1, "checkpoint_every": 1}   # learns: rc 0
BASE = {"dataset": "digits", "model": "test_resnet", "version": 1, "recipe": RECIPE,
        "options": {"baselines": False}}
TASKS = [{"name": "tc", "kind": "train_collapse", **BASE},                 # trains seed 0
         {"name": "te", "kind": "test_collapse", **BASE},                  # reads the same training
         {"name": "grp", "kind": "train_collapse", "seeds": [0, 1], **BASE}]   # seed 0 shared, seed 1 new


def suite_file(tmp_path, tasks=TASKS, name="tiny"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"suite": name, "tasks": tasks}))
    return str(path)


def cli(suite, out, *extra):
    return main(["suite", suite, "--out", str(out), "--device", "cpu", "--threads", "1", "--no-progress", *extra])


KEY = ["split", "epoch", "layer", "variant", "seed", "metric"]


def values(run_dir, task) -> pd.DataFrame:
    """A results.csv's measured values as written (text), by row key; timings are provenance, not
    values: left out. (Sorted: a run read back from the cache lists a record's metrics in another
    order than the process that trained it, with --jobs 1 as well.)"""
    df = pd.read_csv(run_dir / task / "results.csv", keep_default_na=False, dtype=str)
    df = df[~df.metric.str.contains("seconds")]
    assert not df.duplicated(KEY).any()
    return df[[*KEY, "value"]].sort_values(KEY).reset_index(drop=True)


def run_dir_of(out):
    return next(p for p in out.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The tiny suite with --jobs 1 (this process): the reference."""
    tmp = tmp_path_factory.mktemp("sequential")
    assert cli(suite_file(tmp), tmp / "out", "--jobs", "1") == 0
    return run_dir_of(tmp / "out")


def test_jobs_2_writes_the_values_of_jobs_1_and_trains_each_run_once(sequential, tmp_path, capfd):
    assert cli(suite_file(tmp_path), tmp_path / "out", "--jobs", "2") == 0
    par = run_dir_of(tmp_path / "out")
    assert par.name == sequential.name
    for task in ("tc", "te", "grp"):
        a, b = values(sequential, task), values(par, task)
        assert len(a) > 20 and (a.value != "").sum() > 20
        pd.testing.assert_frame_equal(a, b)                 # bit-identical: compared as written text
    pd.testing.assert_frame_equal(pd.read_csv(sequential / "grp" / "aggregate.csv"),
                                  pd.read_csv(par / "grp" / "aggregate.csv"))
    assert sorted(p.name for p in (par / "_trajectories").iterdir() if p.is_dir()) == \
        sorted(p.name for p in (sequential / "_trajectories").iterdir() if p.is_dir())
    trained = {json.loads((par / t / "config.json").read_text())["training"][0]["started_at"] for t in ("tc", "te")}
    assert len(trained) == 1, "two tasks reading one training run must read the same one"

    capfd.readouterr()
    assert cli(suite_file(tmp_path), tmp_path / "out", "--jobs", "2") == 0   # rerun: everything done
    out = capfd.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if "results.csv" in line and line.startswith("  ")] \
        == ["skipped"] * 3
    assert "trained:" not in out


def test_phase_two_reads_the_cache_without_training(sequential, monkeypatch, tmp_path):
    """What a task job does after the trainings: measure from the cache; training would raise here."""
    import shutil

    from ncbench.runner.suite_jobs import Measurement, measure
    from ncbench.tasks import TaskSpec
    from ncbench.training.trainer import Trainer

    run_dir = tmp_path / sequential.name
    shutil.copytree(sequential / "_trajectories", run_dir / "_trajectories")
    monkeypatch.setattr(Trainer, "fit", lambda *a, **k: pytest.fail("phase 2 trained"))
    spec = TaskSpec.from_dict({**TASKS[1], "device": "cpu"})
    run, _ = measure(Measurement(spec, run_dir, run_dir / "te", run_dir.name, True, False, None))
    assert run.outcome == "done", run.error
    pd.testing.assert_frame_equal(values(run_dir, "te"), values(sequential, "te"))


def test_a_failed_job_is_recorded_and_the_others_finish(tmp_path, capfd):
    tasks = [{"name": "missing", "kind": "train_collapse", **BASE, "dataset": "cifar10",
              "data_dir": str(tmp_path / "no_data")},
             {"name": "fine", "kind": "train_collapse", **BASE}]
    assert cli(suite_file(tmp_path, tasks), tmp_path / "out", "--jobs", "2") == 1
    run_dir = run_dir_of(tmp_path / "out")
    err = json.loads((run_dir / "missing" / "error.json").read_text())["error"]
    assert "training run failed" in err and "cifar10" in err
    assert (run_dir / "fine" / "config.json").is_file() and len(values(run_dir, "fine")) > 20
    out = capfd.readouterr().out
    assert "Traceback" not in out
    assert any(line.strip().startswith("failed") and "missing" in line for line in out.splitlines())


def crash_or_square(x: int) -> int:
    if x == 2:
        os._exit(3)               # the worker process dies (as when the kernel kills it for memory)
    if x == 3:
        raise ValueError("three is bad\nsecond line")
    return x * x


def test_a_dying_worker_fails_only_its_own_job():
    out = run_pool(crash_or_square, [0, 1, 2, 3, 4], JobSlots(2, 1))
    assert [o.value for o in out if o.ok] == [0, 1, 16]
    assert "died" in out[2].error and out[3].error == "ValueError: three is bad second line"


def pid_and_gpu(_) -> tuple[int, str | None]:
    time.sleep(1.0)               # both workers take a job
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_auto_jobs_on_the_cpu_and_the_gpus(monkeypatch):
    import torch

    assert resolve_jobs("auto", "cpu", 1, cpus=2).jobs == 2
    assert resolve_jobs("auto", "cpu", 2, cpus=2).jobs == 1
    assert resolve_jobs("auto", "cpu", 3, cpus=8) == JobSlots(2, 3)
    assert resolve_jobs("3", "cpu", 1, cpus=2) == JobSlots(3, 1)        # asked for: more than the CPUs
    assert resolve_jobs("auto", "cpu", 1, world_size=4, cpus=8).jobs == 1   # torchrun: the ranks are the run
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_jobs("auto", "cuda", 8, cpus=16) == JobSlots(4, 8, ("0", "1", "2", "3"))
    assert resolve_jobs("auto", "cuda:1", 8, cpus=16) == JobSlots(1, 8)    # one named GPU: one job
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    monkeypatch.delenv("NCBENCH_JOBS", raising=False)     # not given: auto
    slots = resolve_jobs(None, "cuda", 1, cpus=2)
    assert slots == JobSlots(2, 1, ("5", "7")) and [slots.env(i) for i in range(3)] == \
        [{"CUDA_VISIBLE_DEVICES": g} for g in ("5", "7", "5")]
    seen = run_pool(pid_and_gpu, [0, 1, 2, 3], slots)
    gpu_of = {}
    for o in seen:
        gpu_of.setdefault(o.value[0], set()).add(o.value[1])
    assert all(len(g) == 1 for g in gpu_of.values()), "a worker keeps its GPU"
    assert sorted(g.pop() for g in gpu_of.values()) == sorted(["5", "7"][:len(gpu_of)])
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7", "the parent's environment is left alone"


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_jobs_values_say_what_to_write(value, monkeypatch, capsys):
    with pytest.raises(ValueError, match="--jobs must be a positive integer"):
        parse_jobs(value)
    monkeypatch.setenv("NCBENCH_JOBS", value)
    with pytest.raises(ValueError, match="NCBENCH_JOBS must be"):
        parse_jobs(None)
    with pytest.raises(ValueError, match="under torchrun"):
        resolve_jobs("2", "cpu", 1, world_size=2)
    monkeypatch.delenv("NCBENCH_JOBS")
    assert main(["run", "train_collapse_mnist5k", "--jobs", value, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ncbench: error: --jobs must be") and err.count("\n") == 1


def test_slurm_parameters(capsys):
    assert parse_slurm(["slurm_partition=gpu", "timeout_min=120", "mem_gb=7.5", "use_srun=false"]) == \
        {"slurm_partition": "gpu", "timeout_min": 120, "mem_gb": 7.5, "use_srun": False}
    for bad in ("partition", "=gpu", "timeout_min="):
        with pytest.raises(ValueError, match="write KEY=VALUE"):
            parse_slurm([bad])
    assert main(["run", "train_collapse_mnist5k", "--slurm", "timeout_min=5", "--device", "cpu"]) == 2
    assert "add --launcher slurm" in capsys.readouterr().err


def sleep_forever(path: str) -> None:
    if path:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)


def test_ctrl_c_stops_every_worker(tmp_path):
    pidfile = tmp_path / "pid"

    def interrupted(i, outcome):
        while not pidfile.exists() or not pidfile.read_text():
            time.sleep(0.1)
        raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_pool(sleep_forever, ["", str(pidfile)], JobSlots(2, 1), on_done=interrupted)
    assert time.monotonic() - t0 < 300
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_slurm_launcher_with_submitits_local_executor(sequential, tmp_path):
    pytest.importorskip("submitit")
    tasks = TASKS[:2]
    code = cli(suite_file(tmp_path, tasks), tmp_path / "out", "--launcher", "slurm", "--slurm", "cluster=local",
               "--slurm", "timeout_min=10")
    assert code == 0
    run_dir = run_dir_of(tmp_path / "out")
    assert list((run_dir / "_submitit").iterdir()), "the jobs went through submitit"
    for task in ("tc", "te"):
        pd.testing.assert_frame_equal(values(sequential, task), values(run_dir, task))
    assert cli(suite_file(tmp_path, tasks), tmp_path / "out", "--launcher", "slurm",
               "--slurm", "cluster=local", "--slurm", "no_such_key=1") == 2


def test_slurm_errors_before_any_work_and_the_device_is_the_nodes(tmp_path, capsys, monkeypatch):
    """A login node without a GPU submits --device cuda jobs; an unknown --slurm key is one line."""
    pytest.importorskip("submitit")
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["run", "train_collapse_mnist5k", "--device", "cuda", "--out", str(tmp_path), "--launcher", "slurm",
                 "--slurm", "cluster=local", "--slurm", "no_such_key=1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ncbench: error: --slurm") and "no_such_key" in err
    assert err.count("\n") == 1 and "CUDA" not in err
    assert not list(tmp_path.rglob("results.csv"))


def test_an_interrupted_training_resumes_in_a_job(tmp_path, interrupt_after, capfd):
    """Ctrl-C after epoch 1 of 2 (--jobs 1, this process); the --jobs 2 rerun's training job resumes
    from that checkpoint, and its two tasks read the finished run. The rerun has `--json`: the workers'
    human output goes to stderr like the parent's, and stdout is one JSON document (`make claims` reads
    it; a worker's line there once broke it)."""
    tasks = [{**t, "recipe": {**RECIPE, "epochs": 2}} for t in TASKS[:2]]
    suite = suite_file(tmp_path, tasks)
    interrupt_after(1)
    assert cli(suite, tmp_path / "out", "--jobs", "1") == 130
    interrupt_after(None)
    capfd.readouterr()
    assert cli(suite, tmp_path / "out", "--jobs", "2", "--json") == 0
    cap = capfd.readouterr()
    assert json.loads(cap.out)["run_dir"]                       # nothing but the JSON document on stdout
    assert "resuming test_resnet on digits from epoch 1" in cap.err and "trained:" in cap.err
    run_dir = run_dir_of(tmp_path / "out")
    for task in ("tc", "te"):
        cfg = json.loads((run_dir / task / "config.json").read_text())
        assert cfg["status"] != "" and sorted(set(values(run_dir, task).epoch) - {""}) == ["1", "2"]
