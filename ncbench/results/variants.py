"""Sweep points as data: the `variant` column of the results schema.

A variant is an ordered mapping of option names to values, written `key=value` pairs joined by commas
in the sweep's declared order: `{"ratio": 10, "classifier": "etf"}` ⇄ `"ratio=10,classifier=etf"`.
The empty mapping is the empty string (a run that is not part of a sweep).
"""
from __future__ import annotations

import math
import re

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_FORBIDDEN = set(",=/[]\n\r\"")


def _text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "+".join(_text(v) for v in value)
    return str(value)


def format_variant(point: dict) -> str:
    """`{"ratio": 10, "classifier": "etf"}` -> `"ratio=10,classifier=etf"` (insertion order kept).

    Floats that are integers print without `.0`, lists as `a+b`, booleans lower-case; a key or value
    that would make the string ambiguous (holding `,`, `=`, `/`, `[`, `]`, quotes) is a ValueError.
    """
    parts = []
    for key, value in point.items():
        text = _text(value)
        if not _KEY.match(str(key)):
            raise ValueError(f"variant key {key!r}: use letters, digits, '_' and '.' (it names an option)")
        if not text or set(text) & _FORBIDDEN:
            raise ValueError(f"variant value {value!r} of {key!r}: a sweep value must print without "
                             f"{''.join(sorted(_FORBIDDEN - {chr(10), chr(13)}))}")
        parts.append(f"{key}={text}")
    return ",".join(parts)


def parse_variant(text: str) -> dict[str, str]:
    """`"ratio=10,classifier=etf"` -> `{"ratio": "10", "classifier": "etf"}` (values stay strings)."""
    if text is None or (isinstance(text, float) and math.isnan(text)) or str(text) == "":
        return {}
    out = {}
    for part in str(text).split(","):
        key, sep, value = part.partition("=")
        if not sep or not key or key in out:
            raise ValueError(f"variant {text!r}: expected key=value pairs joined by commas")
        out[key] = value
    return out


def join_variants(*variants: str) -> str:
    """Concatenate variant strings (a group's sweep point, then a task's own sub-variant)."""
    return ",".join(v for v in variants if v)
