"""Resume equals an uninterrupted run, bit for bit, for every shipped recipe and any interruption epoch.

Each protocol of `PROTOCOLS` (step and cosine schedules, augmentation, mixup) is shortened to three
epochs; a run is interrupted in every epoch after the first, restarted in a fresh `Trainer` built on
another initialisation from its checkpoint (read with `weights_only=True`), and must end with the
uninterrupted run's weights. The model has dropout and stochastic depth, so the global RNG state
must be restored too.
"""
from __future__ import annotations

import pytest
import torch

from ncbench.data import load_dataset
from ncbench.data.imbalance import class_subset
from ncbench.models.backbone import build_backbone
from ncbench.training.recipe import PROTOCOLS, Recipe
from ncbench.training.trainer import Trainer

EPOCHS = 3


def short(name: str) -> Recipe:
    """`name` over three epochs, checkpointed after each (a recipe may checkpoint less often:
    `terminal-mnist1k` every 50 epochs; resuming is tested at every epoch)."""
    r = PROTOCOLS[name].to_dict()
    r.update(epochs=EPOCHS, batch_size=64, eval_every=1, checkpoint_every=1)
    return Recipe(**r)


def test_every_epoch_is_checkpointed_unless_a_recipe_says_otherwise():
    assert Recipe().checkpoint_every == 1
    assert {n for n, r in PROTOCOLS.items() if r.checkpoint_every != 1} == {"terminal-mnist1k"}


def model(seed: int):
    torch.manual_seed(seed)
    return build_backbone("test_vit", 4, 1, img_size=8, patch_size=2, drop_rate=0.2, drop_path_rate=0.2)


def weights(m):
    return torch.cat([p.detach().flatten() for p in m.state_dict().values() if p.is_floating_point()])


@pytest.fixture(scope="module")
def data():
    return class_subset(load_dataset("digits", "train"), [0, 1, 2, 3])


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_resume_is_bit_identical_for_every_recipe_and_epoch(protocol, data, tmp_path, interrupt_after, one_thread):
    recipe = short(protocol)
    full = model(0)
    lrs_full = [log.lr for log in Trainer(full, recipe, seed=5, progress=False).fit(data)]
    for done in range(1, EPOCHS):
        ckpt = tmp_path / f"{done}.pt"
        interrupt_after(done)
        with pytest.raises(KeyboardInterrupt):
            Trainer(model(0), recipe, seed=5, progress=False).fit(data, checkpoint=ckpt)
        interrupt_after(None)
        torch.manual_seed(123)   # the resumed process's global RNG is elsewhere: the checkpoint restores it
        resumed = model(99)      # another init: everything must come from the checkpoint
        t = Trainer(resumed, recipe, seed=5, progress=False)
        t.load_state_dict(torch.load(ckpt, weights_only=True))
        assert t.epoch == done
        lrs = [log.lr for log in t.fit(data)]
        assert lrs == lrs_full[done:], f"{protocol}: LR after resuming at epoch {done}"
        assert torch.equal(weights(full), weights(resumed)), f"{protocol}: resumed at epoch {done}"


def test_mixup_draws_only_from_the_epoch_generator():
    from ncbench.training.trainer import mixup

    x, y = torch.randn(8, 1, 4, 4), torch.arange(8)
    a = mixup(x, y, 1.0, torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    torch.rand(10)    # the global RNG moved: nothing changes
    b = mixup(x, y, 1.0, torch.Generator().manual_seed(3))
    assert a[3] == b[3] and 0 < a[3] < 1 and torch.equal(a[0], b[0])
