"""Which task of a suite plays each catalog task: a suite's `scorecard_tasks:` (issue 28, the GPU tier).

The catalog (`ncbench.claims.catalog`) names the embedded tier's tasks (`terminal_phase_mnist5k`, …). A
suite that measures the same claims with its own tasks (`tasks/claims_gpu.yaml`: CIFAR-10, ResNet-18)
declares `scorecard_tasks: {catalog task: its task}`. Before the claims are evaluated each player's rows
are copied under every catalog name it plays (one task may play several); the claims reading a catalog
task no task plays are *not applicable*, "not measured by suite S".
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ncbench.registry import suggest


def catalog_tasks(claims=None) -> list[str]:
    """Every task the claims read (their preconditions' included), sorted."""
    from ncbench.claims.catalog import CLAIMS

    return sorted({t for c in (CLAIMS if claims is None else claims) for t in c.tasks()})


@dataclass(frozen=True)
class TaskMap:
    """`players`: (catalog task, the suite's task that measures it) pairs of the suite `suite`."""

    suite: str
    players: tuple[tuple[str, str], ...]

    def apply(self, rows: pd.DataFrame) -> pd.DataFrame:
        """`rows` with each player's rows copied under the catalog names it plays (rows already named as
        a catalog task of the map, or as a player, are replaced by the copies)."""
        mapped = {c for c, _ in self.players} | {p for _, p in self.players}
        copies = [rows[rows["task"] == p].assign(task=c) for c, p in self.players]
        return pd.concat([rows[~rows["task"].isin(mapped)], *copies], ignore_index=True)

    def unmeasured(self, claims=None) -> dict[str, str]:
        """{catalog task no task of the suite plays: why} (the scorecard's `unavailable`)."""
        played = {c for c, _ in self.players}
        return {t: f"not measured by suite {self.suite}" for t in catalog_tasks(claims) if t not in played}

    def catalog_names(self, unavailable: dict[str, str]) -> dict[str, str]:
        """`unavailable` keyed by suite tasks (a player that failed) rekeyed by the catalog tasks it plays."""
        out = {t: why for t, why in unavailable.items() if t not in {p for _, p in self.players}}
        out.update({c: f"{p}: {unavailable[p]}" for c, p in self.players if p in unavailable})
        return out


def check_task_map(suite: str, mapping, suite_tasks: list[str], claims=None) -> TaskMap:
    """The suite `suite`'s `scorecard_tasks` checked: a mapping of catalog tasks to tasks of the suite
    (`suite_tasks`); a wrong name is one line with did-you-mean (`UnknownNameError`)."""
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"suite {suite}: scorecard_tasks must be a mapping {{catalog task: task of the suite}}, "
                         f"got {mapping!r:.60}")
    known = catalog_tasks(claims)
    for catalog, player in mapping.items():
        if catalog not in known:
            raise suggest(f"catalog task (suite {suite}, scorecard_tasks)", str(catalog), known,
                          "`python -m ncbench.claims --list` shows the claims and the tasks they read")
        if not isinstance(player, str) or player not in suite_tasks:
            raise suggest(f"task of suite {suite} (scorecard_tasks.{catalog})", str(player), list(suite_tasks),
                          "the suite's `tasks:` lists them")
    return TaskMap(suite, tuple(sorted(mapping.items())))
