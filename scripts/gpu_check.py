"""`make gpu-check`: everything ncbench claims about CUDA, in one command (≤ 8 minutes on one GPU).

1. the `gpu`-marked tests (`pytest -m gpu`);
2. every GPU-tier task (`tier: gpu` in tasks/) for one epoch, as one suite, on small data sets
   written in their real on-disk formats (CIFAR-10/100 python pickles, mini-ImageNet cache
   pickles; CIFAR-FS is built from the CIFAR-100 files) in a temporary data directory;
3. the trainer's images/s (bf16 autocast, channels_last) against a bare PyTorch loop on the same
   model (timm resnet18, 32×32) and batch;
4. the metric engine on CUDA against the CPU float64 engine on the same features (equal to 1e-9);
   then the same suite with `--jobs auto` (one job per visible GPU): wall-time ratio, values equal;
5. K = 1,000, d = 2,048, N = 100,000 on the GPU: each pass against its floor
   (`ncbench.metrics.floor`) and the numbers against the CPU engine.
It prints one table. Without a CUDA device it says so and exits 0; `--cpu-dry-run` runs every step
on the CPU at toy sizes, to check the script itself on a machine without a GPU.
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, *args) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn(*args)
    sync(device)
    return time.perf_counter() - t0


# -- 1. gpu-marked tests ------------------------------------------------------------------------
def gpu_tests(dry: bool) -> tuple[str, str]:
    if dry:
        return "skipped (dry run)", ""
    p = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:randomly"], cwd=ROOT,
                       capture_output=True, text=True, check=False)
    last = (p.stdout.strip().splitlines() or ["no output"])[-1]
    return ("ok" if p.returncode in (0, 5) else "FAILED"), last


# -- 2. GPU-tier tasks on data in their real formats -------------------------------------------
def gpu_tasks() -> list[str]:
    from ncbench import specs

    return [n for n in specs.task_names() if specs.load_task(n).tier == "gpu"]


def accept_written_files(cls, files: dict[str, Path]) -> None:
    """torchvision checks the CIFAR files' MD5s: point its table at the files just written."""
    from test_data_real import md5

    cls.train_list = [[f, md5(files[f])] for f, _ in cls.train_list]
    cls.test_list = [[f, md5(files[f])] for f, _ in cls.test_list]
    cls.meta = {**cls.meta, "md5": md5(files[cls.meta["filename"]])}


def _balanced(rng, classes: int, per_class: int) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(classes), per_class))


def write_cifar(root: Path, rng, classes: int, per_train: int, per_test: int) -> None:
    """CIFAR-10 (`cifar-10-batches-py`, five train batches) or CIFAR-100 (`cifar-100-python`)
    python pickles with `per_train` / `per_test` images of every class (the imbalance profiles
    start from a balanced set, like the real one)."""
    import torchvision
    from test_data_real import CIFAR10_NAMES, dump

    from ncbench.data.fewshot_sets import CIFAR_FS_CLASSES

    files = {}
    if classes == 10:
        d, cls = root / "cifar-10-batches-py", torchvision.datasets.CIFAR10
        y_train = _balanced(rng, 10, per_train).reshape(5, -1)
        parts = [(f"data_batch_{i + 1}", y_train[i]) for i in range(5)] + [("test_batch", _balanced(rng, 10, per_test))]
        for name, y in parts:
            x = rng.integers(0, 256, size=(len(y), 3072), dtype=np.uint8)
            files[name] = dump(d / name, {"batch_label": name, "data": x, "labels": y.tolist(),
                                          "filenames": [f"{name}_{i}.png" for i in range(len(y))]})
        files["batches.meta"] = dump(d / "batches.meta", {"label_names": CIFAR10_NAMES,
                                                          "num_cases_per_batch": y_train.shape[1], "num_vis": 3072})
    else:
        d, cls = root / "cifar-100-python", torchvision.datasets.CIFAR100
        for name, per in (("train", per_train), ("test", per_test)):
            y = _balanced(rng, 100, per)
            x = rng.integers(0, 256, size=(len(y), 3072), dtype=np.uint8)
            files[name] = dump(d / name, {"filenames": [f"{i}.png" for i in range(len(y))], "batch_label": name,
                                          "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(), "data": x})
        names = sorted({c for split in CIFAR_FS_CLASSES.values() for c in split})   # CIFAR-FS reads them
        files["meta"] = dump(d / "meta", {"fine_label_names": names,
                                          "coarse_label_names": [f"super{i}" for i in range(20)]})
    accept_written_files(cls, files)


def write_data(root: Path, dry: bool) -> None:
    """CIFAR-10/100 python pickles and mini-ImageNet cache pickles, small but complete: 200 train
    images per class (the long-tail profiles go to R = 200), 20 test images per class."""
    from test_data_real import write_mini_imagenet

    rng = np.random.default_rng(0)
    write_cifar(root, rng, 10, 200 if dry else 250, 20)
    write_cifar(root, rng, 100, 200, 20)
    per = 25 if dry else 40
    for split, n in (("train", 64), ("val", 16), ("test", 20)):
        write_mini_imagenet(root / f"mini-imagenet-cache-{split}.pkl", rng,
                            [f"n{split}{i:05d}" for i in range(n)], per)


def run_tasks(tmp: Path, device: str, dry: bool, only: list[str] | None = None) -> list[tuple[str, str, str]]:
    import yaml

    names = [n for n in gpu_tasks() if not only or n in only]
    suite = tmp / "gpu_check_suite.yaml"
    suite.write_text(yaml.safe_dump({"suite": "gpu_check", "tasks": names}))
    data = tmp / "data"
    write_data(data, dry)
    import contextlib
    import io

    from ncbench.cli import main as ncbench_main

    def suite_run(out: Path, jobs: str) -> tuple[int, float, str]:
        t0 = time.perf_counter()
        log = io.StringIO()
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):   # in this process: the
            rc = ncbench_main(["suite", str(suite), "--epochs", "1", "--device", device,  # MD5s above hold
                               "--data-dir", str(data), "--out", str(out), "--no-progress", "--force",
                               "--jobs", jobs])
        return rc, time.perf_counter() - t0, log.getvalue()

    rc, seconds, text = suite_run(tmp / "results", "1")
    rows = []
    for n in names:
        done = list((tmp / "results").glob(f"*/{n}/results.csv"))
        errors = list((tmp / "results").glob(f"*/{n}/error.json"))
        detail = ""
        if errors:
            import json
            detail = json.loads(errors[0].read_text())["error"][:120]
        rows.append((f"task {n} (1 epoch)", "ok" if done and not errors else "FAILED", detail))
    if rc not in (0, 1):
        rows.append(("suite", "FAILED", (text.strip().splitlines() or [""])[-1][:120]))
    rows.append(("GPU-tier suite, one epoch, --jobs 1", f"{seconds:.0f} s", f"{len(names)} tasks"))
    # the same suite with --jobs auto (one job per visible GPU): its wall time and its values
    from ncbench.provenance.threads import default_threads
    from ncbench.runner.jobs import resolve_jobs

    jobs = resolve_jobs("auto", device, default_threads()).jobs
    rc_auto, seconds_auto, text_auto = suite_run(tmp / "results_auto", "auto")
    same = _values(tmp / "results").equals(_values(tmp / "results_auto"))
    failed = rc_auto not in (0, 1) or not same
    rows.append((f"same suite, --jobs auto ({jobs} jobs)", "FAILED" if failed else f"{seconds_auto:.0f} s",
                 f"--jobs 1 / auto = {seconds / seconds_auto:.2f}x; values "
                 + ("identical" if same else "DIFFER") + " to --jobs 1"
                 + (f" ({(text_auto.strip().splitlines() or [''])[-1][:120]})" if failed else "")))
    return rows


def _values(out: Path):
    """Every results.csv value of a run root, keyed and sorted (row order is not part of a value)."""
    import pandas as pd

    frames = [pd.read_csv(f).assign(file=f.parent.name) for f in sorted(out.glob("*/*/results.csv"))]
    if not frames:
        return pd.DataFrame()
    key = ["file", "split", "epoch", "layer", "variant", "metric"]
    df = pd.concat(frames)
    return df[[c for c in key if c in df] + ["value"]].sort_values([c for c in key if c in df]).reset_index(drop=True)


# -- 3. trainer vs a bare loop ------------------------------------------------------------------
def trainer_vs_bare(device: str, dry: bool) -> tuple[str, str]:
    import torch.nn.functional as F

    from ncbench.data.dataset import ImageDataset
    from ncbench.models.backbone import build_backbone
    from ncbench.training.recipe import Recipe
    from ncbench.training.trainer import Trainer

    N, B = (256, 64) if dry else (8192, 256)
    g = torch.Generator().manual_seed(0)
    data = ImageDataset(torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8, generator=g),
                        torch.randint(0, 10, (N,), generator=g), [str(i) for i in range(10)],
                        (0.5,) * 3, (0.25,) * 3, "synthetic", "train")
    recipe = Recipe(epochs=1000, batch_size=B, lr=0.01, schedule="constant", precision="bf16")
    torch.manual_seed(0)
    trainer = Trainer(build_backbone("resnet18", 10, 3), recipe, device, seed=0, progress=False)
    trainer.scheduler = recipe.scheduler(trainer.optimizer, N // B)
    bare = build_backbone("resnet18", 10, 3).to(device)
    if device.startswith("cuda"):
        bare = bare.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(bare.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)

    def bare_epoch():
        bare.train()
        for idx in torch.randperm(N).split(B):
            x, y = data.batch(idx)
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with amp:
                loss = F.cross_entropy(bare(x), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    bare_epoch()
    trainer.train_epoch(data)
    tb, tt = [], []
    for _ in range(3):
        tb.append(timed(bare_epoch, device))
        tt.append(timed(lambda: trainer.train_epoch(data), device))
    ratio = min(tb) / min(tt)
    return f"{ratio:.2f}", f"trainer {N / min(tt):.0f} img/s, bare {N / min(tb):.0f} img/s (target >= 0.9)"


# -- 4./5. the engine on the device against CPU float64 ----------------------------------------
def _features(N, d, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (N,), generator=g)
    return (torch.randn(K, d, generator=g) * 0.5)[y] + torch.randn(N, d, generator=g), y


def engine_vs_cpu(device: str, dry: bool) -> tuple[str, str]:
    from ncbench.metrics import collapse_metrics

    N, d, K = (2000, 32, 10) if dry else (50_000, 512, 100)
    H, y = _features(N, d, K)
    W = torch.randn(K, d, generator=torch.Generator().manual_seed(1))
    cpu = collapse_metrics(H, y, W)
    dev = collapse_metrics(H.to(device), y.to(device), W.to(device))
    worst = max(abs(dev[k] - cpu[k]) / max(abs(cpu[k]), 1e-300) for k in cpu
                if k not in ("nc4", "ncc_acc") and math.isfinite(cpu[k]))
    same = worst <= 1e-9 and abs(dev["ncc_acc"] - cpu["ncc_acc"]) <= 2 / N
    return ("ok" if same else "FAILED"), f"max relative difference {worst:.1e} (<= 1e-9), N={N} d={d} K={K}"


def large_k(device: str, dry: bool) -> list[tuple[str, str, str]]:
    from ncbench.metrics import CollapseStats

    K, d, N, B = (50, 64, 5000, 256) if dry else (1000, 2048, 100_000, 1024)
    centres = torch.randn(K, d, generator=torch.Generator().manual_seed(0)) * 0.2

    def batch(i):
        g = torch.Generator().manual_seed(1000 + i)
        n = min(B, N - i * B)
        yy = torch.randint(0, K, (n,), generator=g)
        return (centres[yy] + torch.randn(n, d, generator=g)).to(device), yy.to(device)

    nb = (N + B - 1) // B
    batches = [batch(i) for i in range(nb)]                   # 0.8 GB on the GPU at full size
    W = torch.randn(K, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(device)
    t = {"p1": 0.0, "f1": 0.0, "p2": 0.0, "f2": 0.0}
    stats = CollapseStats(K, d, device)
    acc = torch.zeros(d, d, dtype=torch.float64, device=device)
    for x, yy in batches:
        t["p1"] += timed(stats.update, device, x, yy)
        t["f1"] += timed(lambda a: acc.addmm_(a.T, a), device, x.double())   # cast outside: GEMM only
        t["f1"] += timed(x.double, device)
    t["p1"] += timed(lambda: stats.scatter, device)
    second = stats.second_pass(W)
    stack = torch.cat([stats.mean, W]).T.contiguous()
    for x, yy in batches:
        t["p2"] += timed(second.update, device, x, yy)
        t["f2"] += timed(lambda a: a.double() @ stack, device, x)
    res = stats.compute(second, W)
    cpu = CollapseStats(K, d)                                # the CPU float64 engine, same batches
    for x, yy in batches:
        cpu.update(x.cpu(), yy.cpu())
    cpu_second = cpu.second_pass(W.cpu())
    for x, yy in batches:
        cpu_second.update(x.cpu(), yy.cpu())
    ref = cpu.compute(cpu_second, W.cpu())
    worst = max(abs(res.metrics[k] - ref.metrics[k]) / abs(ref.metrics[k]) for k in ("nc1", "nc1_quotient", "cdnv"))
    return [(f"K={K} d={d} N={N}: pass one / floor (cast + GEMM)", f"{t['p1'] / t['f1']:.2f}",
             f"{t['p1']:.2f} s vs {t['f1']:.2f} s"),
            (f"K={K} d={d} N={N}: pass two / floor (cast + GEMM [μ;W])", f"{t['p2'] / t['f2']:.2f}",
             f"{t['p2']:.2f} s vs {t['f2']:.2f} s"),
            (f"K={K} d={d} N={N}: device vs CPU float64", "ok" if worst <= 1e-9 else "FAILED",
             f"max relative difference {worst:.1e}")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-dry-run", action="store_true", help="run every step on the CPU at toy sizes")
    p.add_argument("--tasks", nargs="+", help="only these GPU-tier tasks (default: all of them)")
    args = p.parse_args(argv)
    dry = args.cpu_dry_run
    if not dry and not torch.cuda.is_available():
        print("gpu-check: no CUDA device (torch.cuda.is_available() is False): skipped the GPU tests, "
              "the GPU-tier tasks, the AMP trainer and the CUDA engine checks. Run `make gpu-check` on a "
              "machine with a GPU (or `python scripts/gpu_check.py --cpu-dry-run` to test this script).")
        return 0
    device = "cpu" if dry else "cuda"
    name = "CPU dry run" if dry else torch.cuda.get_device_name(0)
    t0 = time.perf_counter()
    rows: list[tuple[str, str, str]] = []
    rows.append(("gpu-marked tests", *gpu_tests(dry)))
    with tempfile.TemporaryDirectory() as tmp:
        rows += run_tasks(Path(tmp), device, dry, args.tasks)
    rows.append(("trainer / bare loop images/s (bf16, channels_last)", *trainer_vs_bare(device, dry)))
    rows.append(("engine on device vs CPU float64", *engine_vs_cpu(device, dry)))
    rows += large_k(device, dry)
    print(f"\ngpu-check on {name}, torch {torch.__version__}, {time.perf_counter() - t0:.0f} s\n")
    print("| check | result | detail |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 1 if any(r[1] == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
