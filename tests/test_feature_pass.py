"""`ncbench.training.feature_pass`: the one eval-mode pass (sharding, streaming, AMP) and its replay."""
from __future__ import annotations

import pytest
import torch

from ncbench.data.dataset import ImageDataset
from ncbench.models.backbone import build_backbone
from ncbench.training.feature_pass import Replay, feature_pass, input_batches


def _data(n=23, seed=0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    return ImageDataset(images, torch.arange(n) % 3, [str(k) for k in range(3)], (0.5,), (0.25,), "toy", "train")


def _model():
    torch.manual_seed(0)
    return build_backbone("test_resnet", 3, in_chans=1, pretrained=False)


def test_feature_pass_matches_the_direct_forward_in_eval_mode():
    data, model = _data(), _model()
    model.train()
    batches = list(feature_pass(model, data, "cpu", 7))
    assert not model.training                                       # eval mode (BatchNorm running stats)
    assert [len(y) for _, y, _ in batches] == [7, 7, 7, 2]
    x, y = data.batch(torch.arange(len(data)))
    with torch.no_grad():
        h = model.features(x)
        z = model.logits(h)
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat([b[2] for b in batches]), z, rtol=1e-5, atol=1e-6)
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    assert all(b[2] is None for b in feature_pass(model, data, "cpu", 7, logits=False))


def test_feature_pass_amp_bfloat16_returns_float32_close_to_full_precision():
    data, model = _data(), _model()
    full = torch.cat([h for h, _, _ in feature_pass(model, data, "cpu", 8)])
    amp = torch.cat([h for h, _, _ in feature_pass(model, data, "cpu", 8, amp=torch.bfloat16)])
    assert amp.dtype == torch.float32
    assert not torch.equal(amp, full)                               # autocast did run in bfloat16
    torch.testing.assert_close(amp, full, rtol=0.1, atol=0.1)


def test_streamed_split_and_bad_batch_size():
    class Streamed:
        def __init__(self, data):
            self.data = data

        def __len__(self):
            return len(self.data)

        def stream(self, batch_size):
            for idx in torch.arange(len(self.data)).split(batch_size):
                yield self.data.batch(idx)

    data = _data()
    got = [y for _, y in input_batches(Streamed(data), "cpu", 5)]
    assert [len(y) for y in got] == [5, 5, 5, 5, 3]
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(input_batches(data, "cpu", 0))


def _items(calls, sizes=(4, 4, 3), layers=2):
    calls.append(1)
    g = torch.Generator().manual_seed(1)
    for b in sizes:
        yield ([torch.randn(b, 3 + i, generator=g) for i in range(layers)], torch.arange(b), None)


@pytest.mark.parametrize("layers", [1, 3])
def test_replay_gives_the_same_batches_without_running_the_pass_again(layers):
    calls = []
    replay = Replay(lambda: _items(calls, layers=layers), rows=11)
    first = list(replay)
    second = list(replay)
    assert len(calls) == 1
    assert len(first) == len(second) == 3
    for a, b in zip(first, second):
        assert isinstance(b[0], list) and len(b[0]) == layers and b[2] is None
        assert all(torch.equal(p, q) for p, q in zip(a[0], b[0]))
        assert torch.equal(a[1], b[1])


def test_replay_recomputes_when_too_large_or_interrupted():
    calls = []
    big = Replay(lambda: _items(calls), rows=11, budget=10)
    list(big)
    list(big)
    assert len(calls) == 2 and not big.fits
    calls.clear()
    replay = Replay(lambda: _items(calls), rows=11)
    for _ in replay:
        break                                                       # an incomplete pass is not kept
    assert len(list(replay)) == 3 and len(calls) == 2
    list(replay)
    assert len(calls) == 2
