"""Overhead of `NeuralCollapseCallback` per evaluated epoch against one plain evaluation pass
(run with `make benchmark`; `-s` prints the figures).

Same Lightning module (timm `test_resnet` in an ncbench `Backbone`), same loaders (MNIST-5k: 4,000
train + 1,000 val images, batch 256, CPU, one thread): the callback's measurement of the train and
val splits (one forward per split with hooks, both metric passes, all SPEC §2 metrics, on the
penultimate layer alone and with `layer3` too) against a plain `model(x)` pass in eval mode over the
same two loaders. The ratio goes to `benchmark.extra_info`: what the callback adds to an evaluated
epoch, in units of one evaluation pass. Before it counts, the callback's penultimate-layer numbers on
the train split must equal the stored-feature float64 reference (`tests/reference_nc.py`) on the
features and logits of the plain pass.
"""
from __future__ import annotations

import time

import lightning as L
import numpy as np
import pytest
import torch
from lightning_module import DigitsClassifier
from reference_nc import collapse_reference
from torch.utils.data import DataLoader, TensorDataset

from ncbench.data import load_dataset
from ncbench.integrations import NeuralCollapseCallback

BATCH = 256


def _loader(split: str) -> DataLoader:
    data = load_dataset("mnist5k", split)
    return DataLoader(TensorDataset(*data.batch(torch.arange(len(data)))), batch_size=BATCH)


@torch.no_grad()
def _plain_pass(module, loaders) -> None:
    module.eval()
    for loader in loaders:
        for x, _ in loader:
            module(x)
    module.train()


@torch.no_grad()
def _assert_same_numbers(module, loader, measured) -> None:
    """The callback's `pre_logits` metrics against the float64 reference on the plain pass."""
    module.eval()
    hs, zs, ys = [], [], []
    for x, y in loader:
        h, z = module.net(x, with_features=True)
        hs.append(h.double())
        zs.append(z.double())
        ys.append(y)
    module.train()
    H, Z, y = torch.cat(hs).numpy(), torch.cat(zs).numpy(), torch.cat(ys).numpy()
    W, b = module.net.classifier()
    ref = collapse_reference(H, y, 10, W.double().numpy(), None if b is None else b.double().numpy(), logits=Z)
    got = measured.metrics["pre_logits"]
    assert measured.n_samples == len(y)
    for k in ("nc1", "cdnv", "nc3", "etf_error_h"):
        assert got[k] == pytest.approx(ref[k], rel=1e-6), k
    assert abs(got["ncc_acc"] - ref["ncc_acc"]) <= ref["ncc_ties"] / len(y) + 1e-12
    assert abs(got["nc4"] - ref["nc4"]) <= (ref["ncc_ties"] + ref["pred_ties"]) / len(y) + 1e-12


@pytest.mark.parametrize("layers", [None, ["net.body.layer3"]], ids=["penultimate", "plus_layer3"])
def test_bench_callback_overhead_per_evaluated_epoch(benchmark, tmp_path, layers, ratio_table):
    torch.set_num_threads(1)
    train, val = _loader("train"), _loader("test")
    cb = NeuralCollapseCallback(every_n_epochs=10**6, splits=("train", "val"), layers=layers)
    module = DigitsClassifier()
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[cb], default_root_dir=tmp_path)
    trainer.fit(module, train, val)                  # attaches the loaders; the callback measures nothing
    _plain_pass(module, (train,))                    # warm-up
    cb.measure(trainer, module)
    plain, callback = [], []
    for _ in range(5):                               # interleaved pairs: load changes hit both alike
        t0 = time.perf_counter()
        _plain_pass(module, (train, val))
        t1 = time.perf_counter()
        cb.measure(trainer, module)
        plain.append(t1 - t0)
        callback.append(time.perf_counter() - t1)
    done = benchmark.pedantic(cb.measure, args=(trainer, module), rounds=1, iterations=1, warmup_rounds=0)
    _assert_same_numbers(module, train, done[0])
    t_plain, t_cb = float(np.median(plain)), float(np.median(callback))
    ratio = float(np.median(np.array(callback) / np.array(plain)))
    benchmark.extra_info.update(plain_eval_s=t_plain, callback_s=t_cb, ratio=ratio,
                                n=done[0].n_samples + done[1].n_samples)
    ratio_table.add(benchmark, "NeuralCollapseCallback, one evaluated epoch (" + " + ".join(["penultimate", *(layers or [])]) + ")",
                    "plain evaluation pass", ratio, "")
    print(f"\n[callback, test_resnet, mnist5k 4000+1000, layers={layers}] plain evaluation pass {t_plain:.2f} s, "
          f"callback measurement {t_cb:.2f} s, ratio x{ratio:.2f} (median of 5 interleaved pairs)")
