"""`NeuralCollapse` (torchmetrics) equals `collapse_metrics` and the float64 reference, in one process
and in a 2-process gloo group through torchmetrics' own sync (`compute()` gathers and reduces)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference_nc import collapse_reference

from ncbench.integrations import NeuralCollapse
from ncbench.metrics import SPEC_METRICS, collapse_metrics

K, D = 5, 7
RTOL = 1e-9


def data(seed=0, sizes=(40, 9, 31, 2, 25)):
    """Gaussian classes far from the origin (a large common offset tests the exact merge)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(sizes)), sizes)
    H = rng.normal(size=(len(sizes), D))[y] * 3 + rng.normal(size=(len(y), D)) + 50.0
    perm = rng.permutation(len(y))
    W, b = rng.normal(size=(K, D)), rng.normal(size=K)
    H = torch.from_numpy(H[perm])
    logits = H @ torch.from_numpy(W).T + torch.from_numpy(b)
    return H, torch.from_numpy(y[perm]), torch.from_numpy(W), torch.from_numpy(b), logits


def values(metric_out: dict) -> dict:
    return {k: float(v) for k, v in metric_out.items()}


def close(got, want, keys=SPEC_METRICS):
    for k in keys:
        assert got[k] == pytest.approx(want[k], rel=RTOL, abs=1e-12), f"{k}: {got[k]!r} vs {want[k]!r}"


@pytest.mark.parametrize("global_mean", ["class", "sample"])
@pytest.mark.parametrize("with_logits", [True, False])
def test_equals_collapse_metrics_and_reference(global_mean, with_logits):
    H, y, W, b, Z = data()
    m = NeuralCollapse(K, num_features=D, classifier=(W, b), global_mean=global_mean)
    for idx in np.array_split(np.arange(len(y)), [3, 4, 50, 51, 90]):   # uneven, one empty batch
        m.update(H[idx], y[idx], Z[idx] if with_logits else None)
    got = values(m.compute())
    want = collapse_metrics(H, y, W, b, global_mean=global_mean, logits=Z if with_logits else None)
    close(got, want)
    ref = collapse_reference(H.numpy(), y.numpy(), K, W.numpy(), b.numpy(), global_mean=global_mean)
    assert ref["ncc_ties"] == 0 and ref["pred_ties"] == 0
    close(got, ref)


def test_linear_classifier_read_at_compute_time_and_float32_features():
    H, y, _, _, _ = data(1)
    head = torch.nn.Linear(D, K)
    m = NeuralCollapse(K, num_features=D, classifier=head)
    m.update(H.float(), y)
    with torch.no_grad():
        head.weight.mul_(2.0)                         # the classifier changes after the updates
    got = values(m.compute())
    close(got, collapse_metrics(H.float(), y, head.weight.detach(), head.bias.detach()))
    assert "classifier.weight" not in m.state_dict() and not list(m.parameters())


def test_subset_keeps_no_features_reset_and_forward():
    H, y, W, b, Z = data(2)
    m = NeuralCollapse(K, num_features=D, metrics=["nc1", "cdnv"])
    assert not hasattr(m, "features"), "no pass-two metric: no feature is kept"
    m.update(H, y)
    got = values(m.compute())
    assert set(got) == {"nc1", "cdnv"}
    close(got, collapse_metrics(H, y), ["nc1", "cdnv"])
    m.reset()
    assert float(m.moments.abs().sum()) == 0.0
    full = NeuralCollapse(K, num_features=D, classifier=(W, b))
    full(H[:60], y[:60], Z[:60])                      # forward: batch value, and folds into the state
    full(H[60:], y[60:], Z[60:])
    close(values(full.compute()), collapse_metrics(H, y, W, b, logits=Z))
    full.reset()
    assert len(full.features) == 0 and len(full.labels) == 0
    lazy = NeuralCollapse(K, classifier=(W, b))       # d from the first batch
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(float(lazy.compute()["nc1"])), "no batch yet: NaN, no crash"
    lazy(H[:60], y[:60], Z[:60])
    lazy.update(H[60:], y[60:], Z[60:])
    close(values(lazy.compute()), collapse_metrics(H, y, W, b, logits=Z))


def test_clear_errors():
    with pytest.raises(ValueError, match="num_classes >= 2"):
        NeuralCollapse(1, num_features=D)
    with pytest.raises(ValueError, match="num_features"):
        NeuralCollapse(K, num_features=0)
    H, y, _, _, Z = data()
    m = NeuralCollapse(K, num_features=D)
    m.update(H[:10], y[:10], Z[:10])
    with pytest.raises(ValueError, match="logits to every update or to none"):
        m.update(H[10:], y[10:])
    with pytest.raises(ValueError, match="feature dimension changed"):
        m.update(H[:, :3], y)
    no_w = values(NeuralCollapse(K, num_features=D)(H, y))
    assert math.isnan(no_w["nc3"]) and math.isnan(no_w["nc4"]) and not math.isnan(no_w["ncc_acc"])


# -- two processes, torchmetrics' own sync ------------------------------------------------------
def _worker(rank: int, world: int, init: str, path: str):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    H, y, W, b, Z = data()
    first = (y != 3) & (torch.arange(len(y)) % 3 == 0)
    mine = first if rank == 0 else ~first
    m = NeuralCollapse(K, num_features=D, classifier=(W, b))
    idx = mine.nonzero().squeeze(1)
    for part in idx.tensor_split(3):                  # class 3 only on rank 1, uneven shards
        m.update(H[part], y[part], Z[part])
    out = values(m.compute())
    local = m.layout.unpack(m.moments).n              # the state is restored after compute's sync
    torch.save({"out": out, "local_n": local, "mine": int(mine.sum())}, f"{path}.{rank}")
    dist.destroy_process_group()


def test_two_process_gloo_sync_equals_one_process(tmp_path):
    import torch.multiprocessing as mp

    H, y, W, b, Z = data()
    want = collapse_metrics(H, y, W, b, logits=Z)
    path = str(tmp_path / "rank")
    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'store'}", path), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(f"{path}.{rank}")
        close(got["out"], want)
        assert got["local_n"] == got["mine"] < len(y)
