"""`include:` in a spec (lm-evaluation-harness style, torch-free): a YAML file may start from another
spec file and override some of its keys.

`include: train_collapse_cifar10.yaml` names a file by its bare name (no folder: nothing outside the
spec folders can be reached), looked up beside the including file, then among the shipped specs
(`tasks/`). The included file is read (its own `include:` first), then the including file is merged
onto it with JSON Merge Patch rules (RFC 7386): mappings merge key by key, recursively; any other
value (a list, a number, a text) replaces the included one; `null` removes the key (the field then
takes its default). A cycle or a missing file is one line naming the chain.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

KEY = "include"


def merge(base: dict, override: dict) -> dict:
    """`override` merged onto `base` (RFC 7386): a new dict, neither argument changed."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _target(name, path: Path, shipped: Path) -> Path:
    if not isinstance(name, str) or not name.endswith((".yaml", ".yml")) or Path(name).name != name \
            or name in (".yaml", ".yml"):
        raise ValueError(f"{path}: include: {name!r} must be the bare name of a spec file in the same folder "
                         f"or among the shipped specs, e.g. `include: train_collapse_cifar10.yaml`")
    for folder in (path.parent, shipped):
        if (folder / name).is_file():
            return (folder / name).resolve()
    raise ValueError(f"{path}: include: {name} not found beside it nor among the shipped specs ({shipped}); "
                     f"`ncbench list` shows the shipped ones")


def resolve(path: Path, read: Callable[[Path], dict], shipped: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The mapping of the spec file `path` with its `include:` chain merged in (`read`: one file's
    mapping; `shipped`: the shipped spec folder)."""
    path = Path(path)
    data = read(path)
    if KEY not in data:
        return data
    chain = (*chain, path.resolve())
    target = _target(data[KEY], path, shipped)
    if target in chain:
        cycle = " -> ".join(p.name for p in (*chain, target))
        raise ValueError(f"{path}: include cycle {cycle}: a spec cannot include itself, directly or not")
    base = resolve(target, read, shipped, chain)
    return merge(base, {k: v for k, v in data.items() if k != KEY})
