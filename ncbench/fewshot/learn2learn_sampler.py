"""`sampler="learn2learn"`: episodes from learn2learn's `Taskset` (Arnold et al. 2020).

The task pipeline is learn2learn's standard one over a `MetaDataset` wrapping the cached
features: `NWays(n)`, `KShots(k + q)`, `LoadData`, `RemapLabels`. Within a task the samples of
each class come in learn2learn's random order; the first `k` are the support, the rest the
queries. learn2learn draws from Python's global `random` module: the functions here seed it
with `seed` and restore its previous state afterwards.

`sample_episodes_learn2learn` returns the same `Episodes` index structure as
`ncbench.fewshot.episodes.sample_episodes` (so both feed the same evaluator);
`ncc_accuracy_learn2learn` is the conventional per-task loop (load the task's features, NCC on
them), the reference the vectorised evaluator is benchmarked against.
"""
from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import torch

from ncbench.fewshot.episodes import Episodes, _check_args, _class_table

INSTALL_HINT = ("learn2learn is not installed: run `scripts/install-learn2learn.sh .venv` "
                "(PyPI's learn2learn 0.2.0 sdist does not build on Python >= 3.11 without it)")


def require_learn2learn():
    """Import learn2learn or raise ImportError saying how to install it."""
    try:
        import learn2learn
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return learn2learn


class _Rows(torch.utils.data.Dataset):
    """Row `i` → `(payload[i], label[i])`; the payload is the row index `i` when `rows` is None."""

    def __init__(self, labels: torch.Tensor, rows: torch.Tensor | None = None):
        self.labels = labels.tolist()
        self.rows = rows

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return (i if self.rows is None else self.rows[i]), self.labels[i]


@contextlib.contextmanager
def _seeded_random(seed: int) -> Iterator[None]:
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def learn2learn_taskset(labels: torch.Tensor, n_way: int, k_shot: int, n_query: int,
                        rows: torch.Tensor | None = None, num_tasks: int = -1):
    """A learn2learn `Taskset` of n-way (k+q)-shot tasks over `labels`; items are
    `(payload, remapped label)` batches, the payload being `rows[i]` or the index `i`."""
    l2l = require_learn2learn()
    from learn2learn.data.transforms import KShots, LoadData, NWays, RemapLabels

    _check_args(n_way, k_shot, n_query, 1)
    labels = labels.to("cpu", torch.long)
    _class_table(labels, n_way, k_shot + n_query)  # same ValueErrors as the vectorised sampler
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(labels.tolist()):
        by_class.setdefault(c, []).append(i)
    meta = l2l.data.MetaDataset(_Rows(labels, rows), labels_to_indices=by_class)
    transforms = [NWays(meta, n_way), KShots(meta, k_shot + n_query), LoadData(meta),
                  RemapLabels(meta)]
    return l2l.data.Taskset(meta, task_transforms=transforms, num_tasks=num_tasks)


def _split_task(task_labels: torch.Tensor, n_way: int, per_class: int) -> torch.Tensor:
    """Positions in a task batch grouped by remapped label: `(n, k + q)`, in learn2learn's order."""
    order = torch.argsort(task_labels, stable=True)
    return order.view(n_way, per_class)


def sample_episodes_learn2learn(labels: torch.Tensor, n_way: int = 5, k_shot: int = 1,
                                n_query: int = 15, episodes: int = 600, seed: int = 0) -> Episodes:
    """`episodes` learn2learn tasks as an `Episodes` index structure (on `labels.device`)."""
    per = k_shot + n_query
    taskset = learn2learn_taskset(labels, n_way, k_shot, n_query)
    idx = torch.empty(episodes, n_way, per, dtype=torch.long)
    with _seeded_random(seed):
        for e in range(episodes):  # learn2learn samples one task at a time
            rows, remapped = taskset.sample()
            idx[e] = torch.as_tensor(rows)[_split_task(torch.as_tensor(remapped), n_way, per)]
    classes = labels.to("cpu", torch.long)[idx[:, :, 0]]
    dev = labels.device
    return Episodes(idx[..., :k_shot].contiguous().to(dev), idx[..., k_shot:].contiguous().to(dev),
                    classes.to(dev), int(seed))


def ncc_accuracy_learn2learn(features: torch.Tensor, labels: torch.Tensor, n_way: int = 5,
                             k_shot: int = 1, n_query: int = 15, episodes: int = 600,
                             seed: int = 0) -> torch.Tensor:
    """Per-episode NCC accuracy `(E,)` the learn2learn way: a loop over `Taskset` tasks, each
    loading its features and classifying its queries by the nearest support mean."""
    per = k_shot + n_query
    feats = features.detach().cpu()
    taskset = learn2learn_taskset(labels, n_way, k_shot, n_query, rows=feats)
    acc = torch.empty(episodes, dtype=torch.float64)
    truth = torch.arange(n_way).repeat_interleave(n_query)
    with _seeded_random(seed):
        for e in range(episodes):
            x, y = taskset.sample()
            x = x[_split_task(y, n_way, per)].float()                    # (n, k+q, d)
            proto = x[:, :k_shot].mean(dim=1)
            pred = torch.cdist(x[:, k_shot:].reshape(-1, x.shape[-1]), proto).argmin(dim=1)
            acc[e] = (pred == truth).double().mean()
    return acc
