"""Task specs (`tasks/<name>.yaml`, one task instance each) and suites (`suite:` + a list of names).

The top-level `tasks/` folder is installed as the package `ncbench.task_specs`, so specs resolve the
same way from a checkout, an editable install and a plain `pip install .`.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ncbench.registry import suggest
from ncbench.specs import includes
from ncbench.specs.overrides import apply as apply_overrides
from ncbench.specs.overrides import name_tokens
from ncbench.specs.schema import show
from ncbench.specs.task_spec import TaskSpec
from ncbench.specs.yaml_limits import read_yaml


def spec_dir() -> Path:
    """The folder holding the shipped YAML specs."""
    return Path(str(resources.files("ncbench.task_specs")))


def _read_one(path: Path) -> dict:
    data = read_yaml(path)   # size, depth and alias-expansion limits
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a spec must be a YAML mapping")  # noqa: TRY004 - a user input error: exit 2
    return data


def _read_yaml(path: Path) -> dict:
    """A spec or suite file's mapping, its `include:` chain merged in (`ncbench.specs.includes`)."""
    return includes.resolve(path, _read_one, spec_dir())


def available() -> dict[str, Path]:
    """Name → path of every shipped task spec and suite."""
    out = {}
    for p in sorted(spec_dir().glob("*.yaml")):
        data = _read_yaml(p)
        out[data.get("name") or data.get("suite") or p.stem] = p
    return out


def task_names() -> list[str]:
    return [n for n, p in available().items() if "suite" not in _read_yaml(p)]


def suite_names() -> list[str]:
    return [n for n, p in available().items() if "suite" in _read_yaml(p)]


def resolve(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if p.is_file():
            return p
        shipped = spec_dir() / p.name
        if shipped.is_file():
            return shipped
        raise FileNotFoundError(f"spec file '{name_or_path}' not found")
    specs = available()
    if name_or_path in specs:
        return specs[name_or_path]
    raise suggest("task", name_or_path, list(specs))


def load_task(name_or_path: str, *, recipe: str | None = None, sets: list | tuple = (), **overrides) -> TaskSpec:
    """The spec `name_or_path` with field `overrides` (the flags), then the named `recipe` and the
    `sets` (`(key, value)` pairs of `--set`, `ncbench.specs.overrides`) applied, named after them."""
    path = resolve(name_or_path)
    data = _read_yaml(path)
    if "suite" in data:
        raise ValueError(f"'{name_or_path}' is a suite: run it with `ncbench suite {name_or_path}`")
    base = dict(data)
    data.update({k: v for k, v in overrides.items() if v is not None})
    spec = TaskSpec.from_dict(apply_overrides(data, recipe, list(sets)), str(path))
    from ncbench.runner.preflight import run_identity

    # another data set, weights, world size, recipe or --set: another name
    spec.name = run_identity(spec, base, name_tokens(recipe, list(sets), base))
    return spec


SUITE_KEYS = ("suite", "description", "tasks", "seeds", "scorecard", "scorecard_tasks")
"""What a suite file may say: its name, a description, its tasks, `seeds` for every task (a task
entry's own `seeds` wins), `scorecard: claims` (write the claims scorecard after the run) and
`scorecard_tasks` ({catalog task: the suite's task that measures it}, `ncbench.claims.task_map`)."""


def suite_settings(name_or_path: str) -> dict:
    """The suite-level keys of a suite file (`seeds`, `scorecard`, `scorecard_tasks`), checked;
    `scorecard_tasks` comes back as a `ncbench.claims.task_map.TaskMap`."""
    data = _read_yaml(resolve(name_or_path))
    if "suite" not in data:
        return {}
    unknown = sorted(set(data) - set(SUITE_KEYS))
    if unknown:
        raise ValueError(f"suite {data['suite']}: unknown keys {unknown} (a suite has {', '.join(SUITE_KEYS)})")
    if data.get("scorecard") not in (None, "claims"):
        raise ValueError(f"suite {data['suite']}: scorecard must be 'claims', got {data['scorecard']!r}")
    out = {k: data[k] for k in ("seeds", "scorecard") if k in data}
    if "scorecard_tasks" in data:
        if data.get("scorecard") != "claims":
            raise ValueError(f"suite {data['suite']}: scorecard_tasks needs `scorecard: claims`")
        # the catalog's tasks; deferred: the claims package loads torch (only a suite with a map pays it)
        from ncbench.claims.task_map import check_task_map

        entries = data.get("tasks") if isinstance(data.get("tasks"), list) else []
        names = [e if isinstance(e, str) else e.get("name", "") for e in entries if isinstance(e, (str, dict))]
        out["scorecard_tasks"] = check_task_map(data["suite"], data["scorecard_tasks"], names)
    return out


def load_suite(name_or_path: str, *, recipe: str | None = None, sets: list | tuple = (),
               **overrides) -> tuple[str, list[TaskSpec]]:
    """A suite file lists task names (or inline task mappings); `overrides`, `recipe` and `sets` (see
    `load_task`) apply to every task."""
    path = resolve(name_or_path)
    data = _read_yaml(path)
    if "suite" not in data:
        return data["name"], [load_task(str(path), recipe=recipe, sets=sets, **overrides)]
    settings = suite_settings(str(path))
    defaults = {"seeds": settings["seeds"]} if "seeds" in settings else {}
    specs = []
    entries = data.get("tasks", [])
    if not isinstance(entries, list):
        raise ValueError(f"{path}: tasks must be a list of task names or mappings, got {show(entries)}")  # noqa: TRY004
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, (str, dict)):
            raise ValueError(f"{path}: tasks entry {i} must be a task name or a mapping, got {show(entry)}")  # noqa: TRY004 - a user input error: exit 2
        if isinstance(entry, str):
            specs.append(load_task(entry, recipe=recipe, sets=sets, **{**defaults, **overrides}))
        elif isinstance(entry, dict) and "name" in entry and "kind" not in entry:
            base = entry["name"]
            specs.append(load_task(base, recipe=recipe, sets=sets,
                                   **{**defaults, **{k: v for k, v in entry.items() if k != "name"}, **overrides}))
        else:
            inline = {**entry, **{k: v for k, v in overrides.items() if v is not None}}
            spec = TaskSpec.from_dict(apply_overrides(inline, recipe, list(sets)), str(path))
            tokens = name_tokens(recipe, list(sets), entry)
            spec.name += "@" + ",".join(tokens) if tokens else ""
            specs.append(spec)
    return data["suite"], specs
