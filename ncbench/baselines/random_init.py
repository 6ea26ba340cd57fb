"""The random-initialisation baseline: the same timm architecture at its seeded initialisation, no
training; its penultimate features `h = body(x)` (eval mode) of a split.

`random_init_model(name, K, C, seed)` seeds every RNG (`seed_everything(seed)`) and builds the
backbone as `Trajectory.run` does before its first step, so its weights are the epoch-0 weights of
the trained run with the same seed and model kwargs: "what training added" is the difference
between the two. An `nn.Module` passed to `ncbench.run` (a `module:` name) is re-initialised
(`ncbench.models.in_memory.reset_weights`).
"""
from __future__ import annotations

import itertools

import torch

from ncbench.baselines.raw_pixels import split_batches
from ncbench.models.backbone import Backbone, build_backbone
from ncbench.training.seeding import seed_everything


def random_init_model(name: str, num_classes: int, in_chans: int, seed: int = 0, *, head: str = "linear",
                      **model_kwargs) -> Backbone:
    """The backbone `name` at its initialisation for `seed` (no pretrained weights), eval mode."""
    seed_everything(seed)
    model = build_backbone(name, num_classes, in_chans, pretrained=False, head=head, head_seed=seed,
                           reinitialise=True, **model_kwargs)
    return model.eval()


@torch.no_grad()
def random_init_features(name: str, data, seed: int = 0, *, num_classes: int | None = None,
                         in_chans: int | None = None, device: str | torch.device = "cpu",
                         batch_size: int = 512, **model_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """`(features (N, d) float32 on CPU, labels (N,))` of `data` (an `ImageDataset` or a streamed
    split) under `random_init_model(name, …, seed)`. `num_classes` / `in_chans` default to the
    split's (the head does not touch the features)."""
    K = int(num_classes if num_classes is not None else len(data.classes))
    batches = split_batches(data, batch_size)
    first = next(batches, None)
    if first is None or len(first[1]) == 0:
        raise ValueError(f"{getattr(data, 'name', 'the split')} has no samples: no random-init features")
    C = int(in_chans if in_chans is not None else first[0].shape[1])
    device = torch.device(device)
    model = random_init_model(name, K, C, seed, **model_kwargs).to(device)
    hs, ys = [], []
    for x, y in itertools.chain([first], batches):
        hs.append(model.features(x.to(device)).float().cpu())
        ys.append(torch.as_tensor(y, dtype=torch.long))
    return torch.cat(hs), torch.cat(ys)
