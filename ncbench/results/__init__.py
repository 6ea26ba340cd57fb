"""Results: the tidy long-format schema (SPEC §9), atomic writers, typed loading and leaderboards."""
from ncbench.results.leaderboard import load_leaderboard
from ncbench.results.load import load_results

__all__ = ["load_leaderboard", "load_results"]
