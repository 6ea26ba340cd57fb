"""Groups: one spec, several runs (after lm-evaluation-harness groups). Torch-free.

A spec becomes a group when it declares

- `seeds: [0, 1, 2]`: one run per seed (each its own `seed`), and/or
- `sweep: {ratio: [1, 10, 100], classifier: [learnable, etf, etf_dr]}`: one run per point of the
  Cartesian product of these values (first key outermost), named by its `variant`
  (`ratio=10,classifier=etf`, `ncbench.results.variants`). A key is an option of the kind
  (`options[key]`), a recipe key written `recipe.KEY` (`recipe.weight_decay`, `recipe.loss`; the
  variant names it `weight_decay=…`), or a spec field (`model`, `dataset`, `pretrained`, `checkpoint`).
  An axis may also name its levels, each a mapping of such keys to values: `loss: {ce: {recipe.loss: ce},
  label_smoothing: {recipe.loss: ce, recipe.label_smoothing: 0.1}}` sweeps two recipes named
  `loss=ce` and `loss=label_smoothing`;

and may declare per-seed comparisons across the sweep's points (`aggregate:`), each a new summary
metric computed from the members' summary rows, seed by seed (paired) and for every value of the
other sweep axes:

- `{name: etf_minority_gain, of: minority_accuracy, difference: {classifier: [etf, learnable]}}`:
  `value(classifier=etf) − value(classifier=learnable)`;
- `{name: sweep_spearman_5shot, of: ncc_acc_5shot, spearman: source_classes}`: Spearman's ρ between
  the axis value and the metric across the axis' points (NaN below 3 points or when the metric is
  constant).

Task code never sees a sweep: each member is an ordinary run of its kind with scalar options.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace

from ncbench.core import identity
from ncbench.results.variants import format_variant
from ncbench.specs.task_spec import TaskSpec

_METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_group(spec: TaskSpec) -> bool:
    """Does `spec` stand for several runs (or one run named by its seed)?"""
    return bool(spec.sweep) or spec.seeds is not None


def _check(spec: TaskSpec) -> None:
    where = f"task spec {spec.name}"
    if not isinstance(spec.sweep, dict):
        raise ValueError(f"{where}: `sweep` must map option names to lists of values, got {spec.sweep!r}")  # noqa: TRY004 - a user input error: exit 2
    for key, values in spec.sweep.items():
        if isinstance(values, dict):   # named levels, each a mapping of sweep keys to values
            bad = [n for n, o in values.items() if not isinstance(o, dict) or not o]
            if not values or bad:
                raise ValueError(f"{where}: sweep.{key} names its levels; each must map sweep keys to values "
                                 f"(e.g. {{recipe.loss: mse}}), not {[values[n] for n in bad] or values!r}")
            continue
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}: sweep.{key} must be a non-empty list of values, got {values!r}")
        if len({format_variant({key: v}) for v in values}) != len(values):
            raise ValueError(f"{where}: sweep.{key} repeats a value: {values!r}")
    if spec.seeds is not None:
        seeds = spec.seeds
        if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
            raise ValueError(f"{where}: `seeds` must be a list of distinct non-negative integers, got {seeds!r}")


def members(spec: TaskSpec) -> list[TaskSpec]:
    """The runs a spec stands for: itself when it is not a group, else one spec per (sweep point,
    seed), points outer (first sweep key outermost) and seeds inner. Members carry no `sweep`,
    `seeds` or `aggregate`; their `variant` names the point."""
    _check(spec)
    if not is_group(spec):
        return [spec]
    axes = list(spec.sweep)
    seeds = spec.seeds if spec.seeds is not None else [spec.seed]
    out = []
    for values in itertools.product(*(list(spec.sweep[a]) for a in axes)):
        point = dict(zip(axes, values))
        at = _at_point(spec, _overrides(spec, point))
        for seed in seeds:
            out.append(replace(at, seed=seed, seeds=None, sweep={}, aggregate=[],
                               variant=format_variant({axis_name(k): v for k, v in point.items()})))
    return out


SPEC_FIELDS = ("model", "dataset", "pretrained", "checkpoint")
"""Spec fields a sweep may vary directly (anything else is an option or `recipe.KEY`)."""


def axis_name(key: str) -> str:
    """The name a sweep key takes in `variant`: `recipe.weight_decay` -> `weight_decay`."""
    return key.split(".", 1)[1] if key.startswith("recipe.") else key


def _overrides(spec: TaskSpec, point: dict) -> dict:
    """The sweep keys a point sets: a named level expands into its mapping."""
    out = {}
    for axis, value in point.items():
        levels = spec.sweep[axis]
        out.update(levels[value] if isinstance(levels, dict) else {axis: value})
    return out


def _at_point(spec: TaskSpec, point: dict) -> TaskSpec:
    options, recipe, fields = dict(spec.options), spec.recipe, {}
    for key, value in point.items():
        if key.startswith("recipe."):
            recipe = {"protocol": recipe} if isinstance(recipe, str) else dict(recipe or {})
            recipe[key[len("recipe."):]] = value
        elif key in SPEC_FIELDS:
            fields[key] = value
        else:
            options[key] = value
    return replace(spec, options=options, recipe=recipe, **fields)


def group_hash(spec: TaskSpec, member_specs: list[TaskSpec]) -> str:
    """A group's configuration hash: its own spec's and every member's, in order."""
    return identity.group_hash(spec.config_hash(), [m.config_hash() for m in member_specs])


def member_label(member: TaskSpec, group: TaskSpec) -> str:
    """Folder name of a member inside its group: its variant, and its seed when the group has seeds."""
    parts = [member.variant] if member.variant else []
    if group.seeds is not None:
        parts.append(f"seed={member.seed}")
    return ",".join(parts)


@dataclass(frozen=True)
class Comparison:
    """A per-seed comparison across one sweep axis (see the module docstring)."""

    name: str
    of: str
    axis: str
    kind: str                        # difference | spearman
    levels: tuple = ()               # (a, b) of a difference: value(a) − value(b)


def comparisons_of(spec: TaskSpec) -> list[Comparison]:
    """The spec's `aggregate:` entries, checked against its sweep."""
    where = f"task spec {spec.name}"
    if not isinstance(spec.aggregate, list):
        raise ValueError(f"{where}: `aggregate` must be a list of mappings")  # noqa: TRY004 - a user input error: exit 2
    out = []
    for entry in spec.aggregate:
        if not isinstance(entry, dict) or not {"name", "of"} <= set(entry):
            raise ValueError(f"{where}: each aggregate entry needs `name`, `of` and one of difference/spearman, "
                             f"got {entry!r}")
        kinds = [k for k in ("difference", "spearman") if k in entry]
        extra = sorted(set(entry) - {"name", "of", "difference", "spearman"})
        if len(kinds) != 1 or extra:
            raise ValueError(f"{where}: aggregate {entry.get('name')!r} needs exactly one of difference/spearman"
                             + (f" (unknown keys {extra})" if extra else ""))
        name, of = str(entry["name"]), str(entry["of"])
        for what, text in (("name", name), ("of", of)):
            if not _METRIC_NAME.match(text):
                raise ValueError(f"{where}: aggregate {what} {text!r} must be a plain metric name "
                                 f"(letters, digits, '_'; no '/', '=' or '[')")
        kind = kinds[0]
        if kind == "difference":
            d = entry["difference"]
            if not (isinstance(d, dict) and len(d) == 1):
                raise ValueError(f"{where}: aggregate {name}: difference must be {{axis: [a, b]}}, got {d!r}")
            (axis, levels), = d.items()
            if not (isinstance(levels, list) and len(levels) == 2):
                raise ValueError(f"{where}: aggregate {name}: difference.{axis} must list two values [a, b]")
        else:
            axis, levels = entry["spearman"], []
        keys = {axis_name(k): k for k in spec.sweep}
        if axis not in keys and axis not in spec.sweep:
            raise ValueError(f"{where}: aggregate {name} compares along {axis!r}, which is not swept "
                             f"(sweep: {list(spec.sweep) or 'none'})")
        key = keys.get(axis, axis)
        axis = axis_name(key)
        missing = [v for v in levels if format_variant({axis: v}) not in
                   {format_variant({axis: s}) for s in list(spec.sweep[key])}]
        if missing:
            raise ValueError(f"{where}: aggregate {name}: {missing} not among sweep.{key} = {spec.sweep[key]}")
        out.append(Comparison(name, of, axis, kind, tuple(levels)))
    return out
