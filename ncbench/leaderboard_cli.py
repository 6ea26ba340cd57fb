"""CLI commands for leaderboards and reports (filled in by the leaderboard module)."""
from __future__ import annotations


def add_commands(sub) -> None:
    """Register `submit`, `leaderboard`, `verify`, `report` sub-commands (none yet)."""
    return None
