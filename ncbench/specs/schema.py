"""Typed fields of a declaration (a task spec, a recipe), checked before any work (torch-free).

A declaration is a dataclass whose annotations are its schema (after lm-evaluation-harness's
`TaskConfig`, checked in `__post_init__`): `check_fields` compares every value with its field's
annotation and fails with one line naming where it came from, the key, the value and what was
expected. A number that YAML 1.1 reads as text (`1.0e12`, `1e-3`: no dot or no sign in the exponent)
is taken as the number it spells (`as_number`).
"""
from __future__ import annotations

import math
import os
import re
import types
import typing
from dataclasses import fields

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def as_number(value):
    """`value` as a float when it is text spelling a finite number (`"1.0e12"`, `"1e-3"`), else unchanged."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def show(value, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters (a 5,000-deep list stays one line)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<a {type(value).__name__} nested too deep to print>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


class FieldTypeError(ValueError):
    """A declared field holds a value of the wrong type."""


def _expected(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if tp is type(None):
        return "null"
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} {_PLURAL.get(args[0], 'values')}"
        return f"a list of {_PLURAL.get(args[0], 'values')}" if args else "a list"
    return {int: "an integer", float: "a finite number", str: "text", bool: "true or false",
            dict: "a mapping (key: value)", list: "a list"}.get(origin or tp, str(tp))


_PLURAL = {int: "integers", float: "finite numbers", str: "texts", bool: "booleans"}


_MISSING = object()


def coerce(value, tp):
    """`value` checked against the annotation `tp` (and numbers written as text converted), or
    `_MISSING` when it does not fit. Integers stay integers in a float field (hashes unchanged)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            out = coerce(value, a)
            if out is not _MISSING:
                return out
        return _MISSING
    if tp is type(None):
        return value if value is None else _MISSING
    if tp is bool:
        return value if isinstance(value, bool) else _MISSING
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if tp is float:
        value = as_number(value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return value if ok else _MISSING
    if tp is str:
        if isinstance(value, os.PathLike):   # a pathlib.Path for a file field: its text, as the hash wrote it
            return os.fspath(value)
        return value if isinstance(value, str) else _MISSING
    if (origin or tp) is dict:
        return value if isinstance(value, dict) else _MISSING
    if (origin or tp) in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _MISSING
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return _MISSING
            items = [coerce(v, a) for v, a in zip(value, args)]
        else:
            items = [coerce(v, args[0]) for v in value] if args else list(value)
        if any(i is _MISSING for i in items):
            return _MISSING
        return tuple(items) if origin is tuple else items
    return value


def check_fields(obj, where: str = "", prefix: str = "") -> None:
    """Check (and convert in place) every field of the dataclass `obj` against its annotation;
    FieldTypeError `"<where>: <prefix><key> must be <expected>, got <value>"` on the first misfit."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        if f.name not in hints or typing.get_origin(hints[f.name]) is typing.ClassVar:
            continue
        value = getattr(obj, f.name)
        out = coerce(value, hints[f.name])
        if out is _MISSING:
            lead = f"{where}: " if where else ""
            raise FieldTypeError(f"{lead}{prefix}{f.name} must be {_expected(hints[f.name])}, got {show(value)}")
        if out is not value:
            object.__setattr__(obj, f.name, out)
