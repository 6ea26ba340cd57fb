"""The NCC-depth layer statistics and the minority-collapse probe in a 2-process gloo group: each
rank sees its shard (`distributed.shard`) and the reduced statistics give the one-process numbers."""
from __future__ import annotations

import math

import torch

from ncbench.data import load_dataset
from ncbench.data.imbalance import imbalanced_view
from ncbench.models.backbone import build_backbone
from ncbench.tasks.minority_collapse import minority_probe
from ncbench.training.layer_statistics import layer_statistics


def _setup():
    torch.manual_seed(0)
    test = load_dataset("digits", "test")
    train = imbalanced_view(load_dataset("digits", "train"), "step", 4.0, n_majority=5, n=12)
    test = test.subset(torch.arange(0, len(test), 8))
    model = build_backbone("test_resnet", 10, 1).eval()
    return model, train, test


def _numbers() -> dict[str, float]:
    model, train, test = _setup()
    out = {f"minority/{k}": v for k, v in minority_probe(model, train, test, 1).items()}
    st = layer_statistics(model, train, test, batch_size=16)
    for split, s in (("train", st.train), ("test", st.test)):
        for m, values in s.metrics.items():
            out.update({f"layers/{split}/{m}/{i}": v for i, v in enumerate(values)})
        out.update({f"collapse/{split}/{m}": v for m, v in s.collapse.items()})
    return out


def _worker(rank: int, world: int, init: str, path: str):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    out = _numbers()
    if rank == 0:
        torch.save(out, path)
    dist.destroy_process_group()


def test_layer_statistics_and_minority_probe_reduce_across_two_processes(tmp_path, one_thread):
    """Two gloo processes (one thread each) against one process, which also runs on one thread: the
    one-process side must not inherit a thread count an earlier test left behind (random order)."""
    import torch.multiprocessing as mp

    want = _numbers()
    path = str(tmp_path / "rank0.pt")
    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'store'}", path), nprocs=2, join=True)
    got = torch.load(path, weights_only=False)
    assert set(got) == set(want)
    for k, w in want.items():
        g = got[k]
        if math.isnan(w):
            assert math.isnan(g), k
        else:   # float32 features: the shards' own batches round the forward differently
            assert abs(g - w) <= 1e-6 * abs(w) + 1e-9, f"{k}: 2 processes {g!r}, one {w!r}"
