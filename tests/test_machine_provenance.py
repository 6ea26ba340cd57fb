"""Machine provenance (CPU model and capability, BLAS/oneDNN builds, threads, GPU and CUDA): recorded in
config.json and on board rows, never part of a run's identity; `verify` says when a row was measured
elsewhere."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from ncbench import leaderboard as lb
from ncbench import leaderboard_cli
from ncbench.leaderboard.agreement import machine_note
from ncbench.provenance import machine
from ncbench.runner.suite import run_tasks
from ncbench.tasks import TaskSpec

TINY = {"dataset": "digits", "model": "test_resnet", "seed": 0,
        "recipe": {"epochs": 1, "batch_size": 256, "lr": 0.05, "eval_every": 1, "checkpoint_every": 1}}


def tiny_spec() -> TaskSpec:
    return TaskSpec(name="train_collapse_mnist5k", kind="train_collapse", version=1, **TINY)


def test_machine_block_matches_torch_and_threadpoolctl():
    from threadpoolctl import threadpool_info

    m = machine.machine_provenance("cpu")
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    show = torch.__config__.show()
    assert f"BLAS_INFO={m['torch_build']['blas']}" in show and m["torch_build"]["onednn"] in show
    assert m["cpu"] and m["cpu"] != "unknown"
    assert set(m["cpu_flags"].split()) <= set(machine.ISA_FLAGS)
    pools = {(p["internal_api"], p["num_threads"]) for p in m["thread_pools"]}
    assert pools == {(p["internal_api"], str(p["num_threads"])) for p in threadpool_info()}
    assert "cuda" not in m                       # a CPU run has no GPU block
    json.dumps(m)                                # config.json can hold it as is


def test_forced_capability_is_recorded():
    """`ATEN_CPU_CAPABILITY=default` (every x86/ARM CPU has it) is what torch then uses, and what is recorded."""
    code = ("import json; from ncbench.provenance.machine import machine_provenance as m; d = m('cpu'); "
            "print(json.dumps([d['cpu_capability'], d['aten_cpu_capability_env']]))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["DEFAULT", "default"]


def test_cuda_block_without_nvidia_smi_falls_back_to_the_driver_api(monkeypatch):
    """On a GPU machine without nvidia-smi on PATH, the driver is the CUDA driver API version torch reports."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    monkeypatch.setenv("PATH", "")
    assert machine._driver_version(0).startswith("CUDA driver API ")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_block_names_gpu_driver_cuda_cudnn_and_determinism():
    c = machine.machine_provenance("cuda")["cuda"]
    assert c["gpu"] == torch.cuda.get_device_name(0) and c["cuda"] == torch.version.cuda
    assert c["cudnn"] == str(torch.backends.cudnn.version()) and c["driver"]
    assert c["deterministic_algorithms"] == str(torch.are_deterministic_algorithms_enabled())
    assert c["cudnn_benchmark"] == str(torch.backends.cudnn.benchmark)
    assert c["float32_matmul_precision"] == torch.get_float32_matmul_precision()


def test_fresh_run_records_the_machine_and_keeps_its_identity(tmp_path, monkeypatch):
    """config.json holds the machine block; another machine, or a folder written before the block
    existed, is the same configuration: same config hash, and the finished run is skipped."""
    spec = tiny_spec()
    _, [run] = run_tasks("t", [spec], tmp_path, progress=False, log=lambda m: None)
    cfg = json.loads((run.dir / "config.json").read_text())
    m = cfg["provenance"]["machine"]
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and m["torch_build"]["blas"]
    assert cfg["provenance"]["torch_threads"] == str(torch.get_num_threads())
    assert cfg["training"][0]["machine"]["cpu"] == m["cpu"]          # who trained, on what
    assert cfg["config_hash"] == spec.config_hash() == pd.read_csv(run.csv).config_hash.iloc[0]

    from ncbench.provenance import record as prov_module
    monkeypatch.setattr(prov_module, "machine_provenance", lambda device: {"cpu": "Other CPU", "cpu_capability": "AVX512"})
    _, [again] = run_tasks("t", [tiny_spec()], tmp_path, progress=False, log=lambda m: None)
    assert again.outcome == "skipped" and tiny_spec().config_hash() == cfg["config_hash"]

    old = {**cfg, "provenance": {k: v for k, v in cfg["provenance"].items() if k != "machine"}}
    from ncbench.results.writer import write_json
    write_json(run.dir / "config.json", old)                         # a folder written before machine provenance
    _, [old_again] = run_tasks("t", [tiny_spec()], tmp_path, progress=False, log=lambda m: None)
    assert old_again.outcome == "skipped"


def test_board_rows_copy_cpu_capability_and_old_rows_stay_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("NCBENCH_LEADERBOARDS", str(tmp_path / "boards"))
    from test_leaderboard import make_run

    from ncbench.results.integrity import record_files
    from ncbench.results.writer import write_json

    lb.submit(make_run(tmp_path, "old", values={"nc1": 0.2}))       # recorded no machine
    new = make_run(tmp_path, "new", model="resnet18", values={"nc1": 0.1})
    task_dir = next(p for p in new.iterdir() if p.is_dir())
    cfg = json.loads((task_dir / "config.json").read_text())
    cfg["provenance"] = {**cfg["provenance"], "torch_threads": "1",
                         "machine": {"cpu": "Intel Xeon 8480+", "cpu_capability": "AVX512"}}
    write_json(task_dir / "config.json", {**cfg, "files": record_files(task_dir, ["results.csv"])})
    lb.submit(new)
    df = pd.read_csv(tmp_path / "boards" / "train_collapse_mnist5k.csv", dtype=str, keep_default_na=False)
    assert list(df.columns[-3:]) == ["cpu", "cpu_capability", "threads"]      # after the provenance
    assert "cpu_capability" not in lb.metric_columns(df.columns)
    got = df.set_index("model")[["cpu", "cpu_capability", "threads"]].to_dict("index")
    assert got == {"test_resnet": {"cpu": "", "cpu_capability": "", "threads": ""},
                   "resnet18": {"cpu": "Intel Xeon 8480+", "cpu_capability": "AVX512", "threads": "1"}}
    lb.read_table(tmp_path / "boards" / "train_collapse_mnist5k.csv")           # still a valid board

    lines = []
    leaderboard_cli.verify("new", run_dir=make_run(tmp_path, "rerun", model="resnet18", values={"nc1": 0.1}),
                           log=lines.append)
    assert len(lines) == 1 and "CPU capability AVX512 there, unrecorded here" in lines[0]


@pytest.mark.parametrize("board, rerun, needle", [
    ({"device": "cpu", "cpu_capability": "AVX2", "threads": "1"},
     {"device": "cpu", "cpu_capability": "AVX2", "threads": "1"}, None),
    ({"device": "cpu", "cpu_capability": "AVX512", "threads": "1"},
     {"device": "cpu", "cpu_capability": "AVX2", "threads": "1"}, "another CPU capability (CPU capability AVX512 there, AVX2 here)"),
    ({"device": "cuda:NVIDIA H100", "cpu_capability": "AVX2", "threads": "2"},
     {"device": "cpu", "cpu_capability": "AVX2", "threads": "1"}, "another device and thread count"),
    ({"device": "cpu", "cpu_capability": "", "threads": ""},
     {"device": "cpu", "cpu_capability": "AVX2", "threads": "1"}, "does not record its CPU capability or thread count"),
    ({"device": "cpu", "cpu_capability": float("nan")},
     {"device": "cpu", "cpu_capability": "AVX2", "threads": "1"}, "does not record its CPU capability"),
])
def test_machine_note(board, rerun, needle):
    note = machine_note(board, rerun)
    if needle is None:
        assert note is None
    else:
        assert needle in note and "docs/reproducibility.md" in note and "\n" not in note
