"""Run statuses and their severity, once (SPEC §9): `ok` < `failed` < `diverged`.

A task, an entry or a board cell that reads several runs takes the worst of their statuses; a status
outside `STATUSES` (a hand-edited board) ranks above them all.
"""
from __future__ import annotations

STATUSES = ("ok", "failed", "diverged")
"""Every status a run can have, from the best to the worst."""

SEVERITY = {status: rank for rank, status in enumerate(STATUSES)}
"""Rank of each status: the worst of several runs is the one with the highest rank."""

UNKNOWN_SEVERITY = len(STATUSES)
"""Rank of a status that is not one of `STATUSES`: worse than any."""


def severity(status: str) -> int:
    """The rank of `status` (`UNKNOWN_SEVERITY` for one not in `STATUSES`)."""
    return SEVERITY.get(status, UNKNOWN_SEVERITY)
