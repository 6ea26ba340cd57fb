"""Cost of the `ncc_depth` measurement against one plain forward pass (run with `pytest --benchmark-only`).

`layer_statistics` (every block pooled in one forward, streamed into one `CollapseStats` per layer,
pass two from the cached pooled features, the test split in one pass) over train + test, against
`model(x)` over the same batches. Target: ratio <= 2. Figures go to `benchmark.extra_info` and are
printed (`-s` to see them). Before the ratio counts, the last layer's numbers of `layer_statistics`
(nc1, cdnv, NCC accuracy, nc4 on train; NCC accuracy on test around the train means) must equal the
stored-feature float64 reference (`tests/reference_nc.py`) on the features and logits of the plain
forward pass.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from reference_nc import collapse_reference

from ncbench.data import ImageDataset, load_dataset
from ncbench.models.backbone import build_backbone
from ncbench.training.layer_statistics import layer_statistics

BATCH = 512


def _plain_forward(model, datasets) -> None:
    model.eval()
    with torch.no_grad():
        for data in datasets:
            for b in torch.arange(len(data)).split(BATCH):
                model(data.batch(b)[0])


@torch.no_grad()
def _forward_outputs(model, data):
    """Penultimate features and logits of the plain forward pass, as float64 numpy arrays."""
    model.eval()
    hs, zs = [], []
    for b in torch.arange(len(data)).split(BATCH):
        h, z = model(data.batch(b)[0], with_features=True)
        hs.append(h.double())
        zs.append(z.double())
    return torch.cat(hs).numpy(), torch.cat(zs).numpy()


def _assert_same_numbers(model, train, test, st) -> None:
    """layer_statistics' last layer against the float64 reference on the plain forward's outputs."""
    K = len(train.classes)
    H, Z = _forward_outputs(model, train)
    y = train.targets.numpy()
    W, b = model.classifier()
    ref = collapse_reference(H, y, K, W.double().numpy(),
                             None if b is None else b.double().numpy(), logits=Z)
    got = st.train.collapse
    for k in ("nc1", "cdnv", "nc1_quotient"):
        assert got[k] == pytest.approx(ref[k], rel=1e-6), k
    assert abs(got["ncc_acc"] - ref["ncc_acc"]) <= ref["ncc_ties"] / len(train) + 1e-12
    assert abs(got["nc4"] - ref["nc4"]) <= (ref["ncc_ties"] + ref["pred_ties"]) / len(train) + 1e-12
    Ht, _ = _forward_outputs(model, test)                       # test NCC around the train means
    means = np.stack([H[y == k].mean(0) for k in range(K)])
    d2 = ((Ht[:, None, :] - means[None]) ** 2).sum(-1)
    ncc_test = float((d2.argmin(1) == test.targets.numpy()).mean())
    assert abs(st.test.collapse["ncc_acc"] - ncc_test) == 0


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
    _assert_same_numbers(model, train, test, st)
    benchmark.extra_info.update(forward_s=t_fwd, task_s=t_task, ratio=t_task / t_fwd, layers=len(st.layers))
    ratio_table.add(benchmark, f"ncc_depth statistics ({label})", "plain forward passes", t_task / t_fwd, "<= 2")
    print(f"\n[{label}] {len(st.layers)} layers, N={len(train)}+{len(test)}: plain forward {t_fwd:.2f} s, "
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
