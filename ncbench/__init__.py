"""ncbench: a benchmark suite for neural collapse in timm backbones."""
from ncbench.version import __version__

__all__ = ["RunResult", "__version__", "run"]


def __getattr__(name: str):
    """`ncbench.run` / `ncbench.RunResult` (`ncbench.api`), `ncbench.track` / `ncbench.CollapseTracker`
    (imported on first use: `import ncbench` stays light)."""
    if name in ("run", "RunResult"):
        from ncbench import api

        return getattr(api, name)
    if name in ("track", "CollapseTracker"):
        from ncbench import integrations

        return getattr(integrations, name)
    raise AttributeError(f"module 'ncbench' has no attribute '{name}'")
