"""`ncbench.training.feature_cache`: computed once per key, reused across instances, recomputed when
the key (weights, split, classes, layer) or the data changes."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ncbench.data.dataset import ImageDataset
from ncbench.training.feature_cache import (
    FeatureCache,
    FeatureKey,
    extract_features,
    weights_fingerprint,
)


class CountingNet(nn.Module):
    """A backbone stand-in: `features(x)` = tanh(linear(flatten(x))), counting its calls."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.BatchNorm1d(6))
        self.calls = 0

    def features(self, x):
        self.calls += 1
        return torch.tanh(self.body(x))


def toy_data(n: int = 50, split: str = "train") -> ImageDataset:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % 3, ["a", "b", "c"], (0.5,), (0.25,), "toy", split)


def request(cache, model, data, **kw):
    args = {"model_name": "countingnet", "dataset": "toy", "split": data.split, "batch_size": 16} | kw
    return cache.features(model, data, **args)


def test_features_equal_a_direct_forward_in_eval_mode():
    model, data = CountingNet(), toy_data()
    model.train()
    got = extract_features(model, data, batch_size=7)
    assert model.training                            # mode restored
    model.eval()
    x, _ = data.batch(torch.arange(len(data)))
    with torch.no_grad():
        want = torch.tanh(model.body(x))
    torch.testing.assert_close(got, want)
    assert got.dtype == torch.float32 and got.shape == (50, 6)


def test_second_request_reads_the_disk_and_does_not_run_the_backbone(tmp_path):
    model, data = CountingNet(), toy_data()
    first = request(FeatureCache(tmp_path), model, data)
    calls = model.calls
    assert calls == 4                                # ceil(50 / 16) batches
    again = FeatureCache(tmp_path)                   # a fresh instance: only the files are shared
    second = request(again, model, data)
    assert model.calls == calls and (again.hits, again.misses) == (1, 0)
    torch.testing.assert_close(second.features, first.features, rtol=0, atol=0)
    assert torch.equal(second.labels, data.targets) and second.classes == ["a", "b", "c"]
    assert [p.name for p in tmp_path.iterdir()] == [f"{first.key.digest()}.pt"]   # no temporary left


@pytest.mark.parametrize("change", ["weights", "split", "classes", "layer"])
def test_a_different_key_runs_the_backbone_again(tmp_path, change):
    model, data = CountingNet(), toy_data()
    cache = FeatureCache(tmp_path)
    request(cache, model, data)
    before = model.calls
    if change == "weights":
        with torch.no_grad():
            model.body[1].weight[0, 0] += 1e-3
        out = request(cache, model, data)
    elif change == "split":
        out = request(cache, model, toy_data(split="test"))
    elif change == "classes":
        out = request(cache, model, data, classes=[0, 1, 2])
    else:
        key = FeatureKey("countingnet", weights_fingerprint(model.body), "toy", "train", None, "block3")
        out = cache.get(key, lambda: (extract_features(model, data, batch_size=16), data.targets, data.classes))
    assert model.calls > before and cache.misses == 2
    assert len(list(tmp_path.glob("*.pt"))) == 2 and out.features.shape == (50, 6)


def test_fingerprint_tracks_weights_and_buffers_not_identity():
    a = CountingNet(seed=0)
    assert weights_fingerprint(a) == weights_fingerprint(copy.deepcopy(a))
    assert weights_fingerprint(a) != weights_fingerprint(CountingNet(seed=1))
    b = copy.deepcopy(a)
    b.body[2].running_mean += 1.0                    # a buffer changes eval-mode features too
    assert weights_fingerprint(a) != weights_fingerprint(b)


def test_only_the_body_enters_the_default_fingerprint(tmp_path):
    """Penultimate features do not depend on the classifier head: a new head reuses the entry."""
    model, data = CountingNet(), toy_data()
    model.head = nn.Linear(6, 3)
    cache = FeatureCache(tmp_path)
    request(cache, model, data)
    with torch.no_grad():
        model.head.weight += 1.0
    request(cache, model, data)
    assert (cache.hits, cache.misses) == (1, 1)


def test_changed_data_or_a_torn_file_is_recomputed(tmp_path):
    model, data = CountingNet(), toy_data()
    cache = FeatureCache(tmp_path)
    entry = request(cache, model, data)
    other = toy_data()
    other.targets = other.targets.flip(0)            # same key, different labels on disk
    request(cache, model, other)
    assert cache.misses == 2
    cache.path(entry.key).write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable"):
        request(cache, model, data)
    assert cache.misses == 3


def test_bad_computation_is_refused(tmp_path):
    key = FeatureKey("m", "w", "toy", "train")
    with pytest.raises(ValueError, match="one label per row"):
        FeatureCache(tmp_path).get(key, lambda: (torch.zeros(4, 2), torch.zeros(3, dtype=torch.long), []))
