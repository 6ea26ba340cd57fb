"""Cost of the `ncc_depth` measurement against one plain forward pass (run with `pytest --benchmark-only`).

`layer_statistics` (every block pooled in one forward, streamed into one `CollapseStats` per layer,
pass two from the cached pooled features, the test split in one pass) over train + test, against
`model(x)` over the same batches. Target: ratio <= 2. Figures go to `benchmark.extra_info` and are
printed (`-s` to see them).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from ncbench.data import ImageDataset, load_dataset
from ncbench.models.backbone import build_backbone
from ncbench.tasks.ncc_depth import layer_statistics

BATCH = 512


def _plain_forward(model, datasets) -> None:
    model.eval()
    with torch.no_grad():
        for data in datasets:
            for b in torch.arange(len(data)).split(BATCH):
                model(data.batch(b)[0])


def _ratio(benchmark, ratio_table, model, train, test, label: str) -> None:
    _plain_forward(model, (train,))                          # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        _plain_forward(model, (train, test))
        times.append(time.perf_counter() - t0)
    t_fwd = float(np.median(times))
    st = benchmark.pedantic(layer_statistics, args=(model, train, test), kwargs={"batch_size": BATCH},
                            rounds=3, iterations=1, warmup_rounds=0)
    t_task = benchmark.stats.stats.median
    benchmark.extra_info.update(forward_s=t_fwd, task_s=t_task, ratio=t_task / t_fwd, layers=len(st["layers"]))
    ratio_table.add(benchmark, f"ncc_depth statistics ({label})", "plain forward passes", t_task / t_fwd, "<= 2")
    print(f"\n[{label}] {len(st['layers'])} layers, N={len(train)}+{len(test)}: plain forward {t_fwd:.2f} s, "
          f"ncc_depth statistics {t_task:.2f} s, ratio x{t_task / t_fwd:.2f} (target <= 2)")


def test_bench_ncc_depth_mnist5k_test_resnet(benchmark, ratio_table):
    train, test = load_dataset("mnist5k", "train"), load_dataset("mnist5k", "test")
    model = build_backbone("test_resnet", train.num_classes, train.in_chans)
    _ratio(benchmark, ratio_table, model, train, test, "test_resnet, mnist5k")


def test_bench_ncc_depth_resnet18_32px(benchmark, ratio_table):
    g = torch.Generator().manual_seed(0)

    def data(n):
        return ImageDataset(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                            torch.arange(n) % 10, [str(k) for k in range(10)], (0.5,) * 3, (0.25,) * 3)

    model = build_backbone("resnet18", 10, 3)
    pytest.importorskip("timm")
    _ratio(benchmark, ratio_table, model, data(2000), data(500), "resnet18, 8 blocks, 32x32")
