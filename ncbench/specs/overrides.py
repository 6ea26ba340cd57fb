"""`--recipe NAME` and `--set KEY=VALUE` on a spec (torch-free): the changes a command line makes to a
task's YAML before it becomes a `TaskSpec`, and the run-name tokens that say so.

`KEY` is a spec key, dotted into mappings: `recipe.lr=1e-3`, `recipe.optimizer=adamw`,
`options.baselines=false`, `model_kwargs.img_size=28` (short for `options.model_kwargs.img_size`),
`min_train_accuracy=0.5`. `VALUE` is read as YAML (`false`, `28`, `[1, 2]`), a number written as text
(`1e-3`) as that number. The types are then checked where every spec is checked (`TaskSpec`, `Recipe`,
the kind's options), with did-you-mean for unknown keys. Another recipe is another measurement: a
changed recipe, option or field names the run `<task>@recipe=NAME,recipe.lr=0.001,...`, like another
data set (`ncbench.runner.preflight.run_identity`); the model, weights, seed and device keep the name as
their flags do.
"""
from __future__ import annotations

import re

from ncbench.core import identity
from ncbench.specs.schema import as_number, show

FIXED = ("name", "kind", "version", "source", "variant", "overrides")
"""Spec keys a command line may not set: they say which task this is, not how it runs."""

NAMED_BY_FIELD = ("model", "dataset", "pretrained", "checkpoint", "seed", "seeds", "device", "data_dir",
                  "download", "world_size")
"""Keys whose effect on the run's name is already defined (`run_identity`): no `--set` token."""

ALIASES = {"model_kwargs": "options.model_kwargs"}

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_TOKEN = re.compile(r"[A-Za-z0-9_.+-]+")


def parse_set(text: str) -> tuple[str, object]:
    """`"recipe.lr=1e-3"` -> `("recipe.lr", 0.001)`; ValueError (one line) for anything else."""
    from ncbench.specs.yaml_limits import read_yaml_text

    key, sep, raw = str(text).partition("=")
    key = key.strip()
    if not sep or not _KEY.fullmatch(key):
        raise ValueError(f"--set {text!r}: write KEY=VALUE with a dotted spec key, e.g. --set recipe.lr=1e-3")
    head = key.split(".", 1)[0]
    if head in FIXED:
        raise ValueError(f"--set {text!r}: `{head}` names the task and cannot be set; copy the YAML instead")
    for short, full in ALIASES.items():
        if key == short or key.startswith(short + "."):
            key = full + key[len(short):]
    value = read_yaml_text(raw, f"--set {key}") if raw.strip() else ""
    return key, as_number(value)


def apply(data: dict, recipe: str | None, sets: list[tuple[str, object]]) -> dict:
    """A copy of the raw spec mapping `data` with the recipe named `recipe` and each `(key, value)` set,
    recorded under `overrides` (`{"recipe": NAME, "set": {key: value}}`, kept in config.json)."""
    out = dict(data)
    if recipe is None and not sets:
        return out
    out["overrides"] = {**({"recipe": recipe} if recipe is not None else {}), **({"set": dict(sets)} if sets else {})}
    if recipe is not None:
        out["recipe"] = {"protocol": recipe}
    for key, value in sets:
        parts = key.split(".")
        node, path = out, []
        for part in parts[:-1]:
            path.append(part)
            child = node.get(part)
            if child is None:
                child = {}
            elif part == "recipe" and len(path) == 1 and isinstance(child, str):
                child = {"protocol": child}        # `recipe: NAME` is `{protocol: NAME}`
            elif not isinstance(child, dict):
                raise ValueError(f"--set {key}: {'.'.join(path)} is {show(child)} in the spec, not a mapping")
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = value
    return out


def name_tokens(recipe: str | None, sets: list[tuple[str, object]], base: dict) -> list[str]:
    """`recipe=NAME` (when the YAML uses another recipe) and `key=value` per set key that changes what
    is measured, for the run's name; values that cannot be part of a folder name become a hash."""
    tokens = []
    if recipe is not None and base.get("recipe") not in (recipe, {"protocol": recipe}):
        tokens.append(f"recipe={recipe}")
    for key, value in sets:
        if key.split(".", 1)[0] in NAMED_BY_FIELD:
            continue
        text = value if isinstance(value, str) else _plain(value)
        if not _TOKEN.fullmatch(text) or len(text) > 24:
            text = "h" + identity.sha1_hex(text, 8)
        tokens.append(f"{key.removeprefix('options.')}={text}")
    return tokens


def _plain(value) -> str:
    """A value as YAML would write it in a flow: `false`, `0.001`, `[1, 2]`."""
    import json

    return json.dumps(value, sort_keys=True, default=str)
