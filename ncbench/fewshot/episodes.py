"""Seeded n-way k-shot q-query episodes over a label vector, all episodes drawn at once.

An episode picks `n` distinct classes, then `k + q` distinct samples of each (without
replacement): the first `k` are the support set, the other `q` the queries (the protocol of
Vinyals et al. 2016 and Snell et al. 2017 used by Galanti et al. 2022 for few-shot transfer).
Both draws are partial Fisher–Yates shuffles run on every (episode, class) row at once: `r`
swaps give a uniformly random ordered `r`-subset; the loop is over the `r` draw positions, never
over episodes. The random stream is a CPU `torch.Generator` seeded with `seed`, so the episodes do
not depend on the device the labels live on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

#: Upper bound on permutation-table elements held at once; episodes are drawn in chunks under it.
TABLE_BUDGET = 1 << 22


@dataclass(frozen=True)
class Episodes:
    """Index tensors into the label vector the episodes were drawn from.

    `support (E, n, k)`, `query (E, n, q)`: sample indices, row `c` of episode `e` all from class
    `classes[e, c]`; `classes (E, n)`: the original labels, distinct within an episode. Within an
    episode the class's position `c` is its episode label (0..n-1).
    """

    support: torch.Tensor
    query: torch.Tensor
    classes: torch.Tensor
    seed: int | None = None

    @property
    def num_episodes(self) -> int:
        return int(self.classes.shape[0])

    @property
    def n_way(self) -> int:
        return int(self.classes.shape[1])

    @property
    def k_shot(self) -> int:
        return int(self.support.shape[2])

    @property
    def n_query(self) -> int:
        return int(self.query.shape[2])

    def all_indices(self) -> torch.Tensor:
        """`(E, n, k + q)`: support then query indices of each episode class."""
        return torch.cat([self.support, self.query], dim=2)

    def to(self, device: torch.device | str) -> Episodes:
        return Episodes(self.support.to(device), self.query.to(device), self.classes.to(device),
                        self.seed)


def _check_args(n_way: int, k_shot: int, n_query: int, episodes: int) -> None:
    for name, value, low in (("n_way", n_way, 2), ("k_shot", k_shot, 1), ("n_query", n_query, 1),
                             ("episodes", episodes, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _class_table(labels: torch.Tensor, n_way: int, per_class: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Classes present, their counts, and a padded `(C, max_count)` table of their samples."""
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D integer tensor, got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.to("cpu", torch.long)
    classes, counts = torch.unique(labels, sorted=True, return_counts=True)
    if len(classes) < n_way:
        raise ValueError(f"{n_way}-way episodes need at least {n_way} classes; the labels have "
                         f"{len(classes)}: lower n_way or use a data set with more classes")
    short = counts < per_class
    if bool(short.any()):
        few = ", ".join(f"{int(c)} ({int(m)})"
                        for c, m in zip(classes[short][:10], counts[short][:10]))
        more = f" and {int(short.sum()) - 10} more" if int(short.sum()) > 10 else ""
        raise ValueError(f"every class needs k_shot + n_query = {per_class} samples; "
                         f"class (count): "
                         f"{few}{more}. Lower k_shot/n_query or drop those classes from the labels")
    order = torch.argsort(labels, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(int(counts.max()))
    pos = (starts.unsqueeze(1) + slot).clamp_max(len(labels) - 1)
    table = order[pos]  # padded slots (slot >= count) are masked out when drawing
    return classes, counts, table


def partial_shuffle(u: torch.Tensor, counts: torch.Tensor, width: int) -> torch.Tensor:
    """Uniform ordered draws without replacement: row `i` picks `r = u.shape[1]` distinct slots
    of `0..counts[i]-1` (Fisher–Yates, step `t` swaps slot `t` with `t + ⌊u[i,t]·(counts[i]−t)⌋`).

    `u (R, r)` uniform [0, 1) float64, `counts (R,)` with `r <= counts <= width`. Returns `(R, r)`.
    """
    R, r = u.shape
    steps = torch.arange(r)
    span = (counts.unsqueeze(1) - steps).to(u.dtype)
    jump = torch.minimum(steps + (u * span).long(), counts.unsqueeze(1) - 1)  # guard: < counts
    perm = torch.arange(width).repeat(R, 1)
    for t in range(r):  # r draw positions; every row at once
        j = jump[:, t:t + 1]
        held = perm[:, t:t + 1].clone()
        perm[:, t:t + 1] = perm.gather(1, j)
        perm.scatter_(1, j, held)
    return perm[:, :r]


def sample_episodes(labels: torch.Tensor, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
                    episodes: int = 600, seed: int = 0) -> Episodes:
    """Draw `episodes` n-way k-shot q-query episodes from `labels (N,)`, reproducibly from `seed`.

    Raises ValueError when fewer than `n_way` classes exist or a class has fewer than
    `k_shot + n_query` samples. Index tensors are returned on `labels.device`.
    """
    _check_args(n_way, k_shot, n_query, episodes)
    device = labels.device
    per_class = k_shot + n_query
    classes, counts, table = _class_table(labels, n_way, per_class)
    C, width = table.shape
    gen = torch.Generator().manual_seed(int(seed))
    chunk = max(1, TABLE_BUDGET // (n_way * width + C))
    cls_idx, picked = [], []
    for start in range(0, episodes, chunk):  # chunks of episodes (memory bound), not one at a time
        m = min(chunk, episodes - start)
        u_cls = torch.rand(m, n_way, generator=gen, dtype=torch.float64)
        u_smp = torch.rand(m * n_way, per_class, generator=gen, dtype=torch.float64)
        ci = partial_shuffle(u_cls, torch.full((m,), C), C)                   # (m, n)
        slots = partial_shuffle(u_smp, counts[ci].flatten(), width).view(m, n_way, per_class)
        cls_idx.append(ci)
        picked.append(table[ci.unsqueeze(-1), slots])
    ci = torch.cat(cls_idx)
    idx = torch.cat(picked)
    return Episodes(idx[..., :k_shot].contiguous().to(device),
                    idx[..., k_shot:].contiguous().to(device), classes[ci].to(device), int(seed))
