"""Streaming for the training tasks: a `StreamedImageDataset` over an image folder trains to the
same weights and metrics as the in-memory `ImageDataset` of the same images, with any number of
DataLoader workers, holding only a few batches of decoded images at a time."""
from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
import torch

from ncbench.data.imagefolder import folder_source, load_imagefolder
from ncbench.data.imbalance import class_subset
from ncbench.data.streaming import StreamedImageDataset
from ncbench.models.backbone import build_backbone
from ncbench.training.evaluation import evaluate
from ncbench.training.recipe import Recipe
from ncbench.training.trainer import Trainer

RECIPE = Recipe(epochs=2, batch_size=8, lr=0.05, augment=True, mixup_alpha=0.2, eval_every=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """4 classes × 12 random 8×8 RGB PNGs, `PATH/<class>/*.png` (split 80/20 by the loader)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    for k in range(4):
        (root / f"c{k}").mkdir()
        for i in range(12):
            a = (rng.integers(0, 256, (8, 8, 3)) // 2 + 64 * k).clip(0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / f"c{k}" / f"{i}.png")
    return f"imagefolder:{root}"


def streamed(name: str, split: str, like, workers: int = 0) -> StreamedImageDataset:
    """The streamed split with the in-memory set's mean/std (so the two normalise identically)."""
    return StreamedImageDataset(folder_source(name.split(":", 1)[1], split), like.mean, like.std,
                                name, split, workers=workers)


def vit():
    torch.manual_seed(0)
    return build_backbone("test_vit", 4, 3, img_size=8, patch_size=2)


def params(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


def train_and_eval(train, test):
    model = vit()
    logs = Trainer(model, RECIPE, seed=5, progress=False).fit(train)
    tr, te = evaluate(model, train, test, "cpu", batch_size=16, progress=False)
    return model, logs, tr, te


def test_streamed_batches_equal_in_memory(folder):
    mem = load_imagefolder(folder, "train", stream=False)
    s = streamed(folder, "train", mem)
    assert (len(s), s.num_classes, s.in_chans, s.image_size) == (len(mem), 4, 3, (8, 8))
    # NCHW in memory, as the streamed batches are (numpy >= 2.4's np.stack kept the NHWC layout of
    # the transposed images, and the ViT's patch-embedding conv rounded differently over it)
    assert mem.images.is_contiguous()
    assert torch.equal(s.targets, mem.targets) and torch.equal(s.class_counts(), mem.class_counts())
    idx = [torch.tensor([5, 0, 17]), torch.tensor([3])]
    for (xs, ys), (xm, ym) in zip(s.batches(idx), mem.batches(idx)):
        assert torch.equal(xs, xm) and torch.equal(ys, ym)
    sub_s, sub_m = class_subset(s, [2, 0]), class_subset(mem, [2, 0])
    assert torch.equal(sub_s.targets, sub_m.targets)
    assert torch.equal(sub_s.batch(torch.arange(len(sub_s)))[0], sub_m.batch(torch.arange(len(sub_m)))[0])


def test_stream_option_and_its_statistics(folder):
    mem = load_imagefolder(folder, "test", stream=False)
    s = load_imagefolder(folder, "test", stream=True, workers=0)
    assert isinstance(s, StreamedImageDataset) and s.info["streamed"]
    # float64 sums vs. the in-memory mean/std: equal to rounding, not bit for bit
    assert np.allclose(s.mean, mem.mean, rtol=0, atol=1e-10) and np.allclose(s.std, mem.std, rtol=0, atol=1e-10)


def test_auto_stream_over_the_memory_budget(folder, monkeypatch):
    monkeypatch.setenv("NCBENCH_STREAM_BYTES", "1000")          # 40 train images × 192 bytes > 1000
    monkeypatch.setenv("NCBENCH_STREAM_WORKERS", "0")
    assert isinstance(load_imagefolder(folder, "train"), StreamedImageDataset)
    monkeypatch.setenv("NCBENCH_STREAM_BYTES", str(1 << 20))
    assert not isinstance(load_imagefolder(folder, "train"), StreamedImageDataset)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_training_is_bit_identical(folder, workers):
    """Same uint8 pixels, same float ops on the same index batches, same epoch-generator draws: the
    weights and every metric are bit-identical (`torch.equal`, `==`), not just close."""
    train, test = load_imagefolder(folder, "train", stream=False), load_imagefolder(folder, "test", stream=False)
    m_mem, logs_mem, tr_mem, te_mem = train_and_eval(train, test)
    m_s, logs_s, tr_s, te_s = train_and_eval(streamed(folder, "train", train, workers),
                                             streamed(folder, "test", train, workers))
    assert torch.equal(params(m_mem), params(m_s))
    assert logs_mem == logs_s
    assert (tr_s.loss, tr_s.accuracy, tr_s.collapse) == (tr_mem.loss, tr_mem.accuracy, tr_mem.collapse)
    assert (te_s.loss, te_s.accuracy, te_s.collapse, te_s.extra) == (te_mem.loss, te_mem.accuracy,
                                                                      te_mem.collapse, te_mem.extra)


class CountingSource:
    """A source that counts decodes in shared memory (visible from the DataLoader workers)."""

    def __init__(self, source):
        self.source, self.classes, self.targets, self.name = source, source.classes, source.targets, source.name
        self.decoded = mp.Value("i", 0)

    def __len__(self):
        return len(self.source)

    def image(self, i):
        with self.decoded.get_lock():
            self.decoded.value += 1
        return self.source.image(i)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_pass_holds_a_few_batches(folder, workers):
    """Decoded-but-not-yet-consumed images never exceed batch × (1 + workers × prefetch)."""
    src = CountingSource(folder_source(folder.split(":", 1)[1], "train"))
    data = StreamedImageDataset(src, (0.5,) * 3, (0.25,) * 3, workers=workers, prefetch=2)
    src.decoded.value = 0                      # the constructor decoded image 0 for the shape
    bs = 4
    consumed, ahead = 0, []
    for x, _ in data.batches(list(torch.randperm(len(data)).split(bs))):
        consumed += len(x)
        ahead.append(src.decoded.value - consumed)
    assert consumed == len(data) == src.decoded.value        # every image decoded exactly once
    assert max(ahead) <= bs * workers * 2
