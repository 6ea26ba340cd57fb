"""Keyword arguments for `timm.create_model` from the command line (`--model-kwargs`).

Two spellings: `key=value` pairs joined by commas (`img_size=28,patch_size=4`; each value read as
JSON when it parses, `28` → int, `0.1` → float, `true` → bool, `[2,2]` → list, else kept as text),
or one JSON object (`{"img_size": 28, "patch_size": 4}`), for values that contain commas.
"""
from __future__ import annotations

import json
import re

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_model_kwargs(text: str) -> dict:
    """`img_size=28,patch_size=4` or `{"img_size": 28}` → `{"img_size": 28, "patch_size": 4}`."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            out = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--model-kwargs is not valid JSON ({e.msg} at character {e.pos}): {text!r}") from e
        if not isinstance(out, dict):
            raise ValueError(f"--model-kwargs JSON must be an object of keyword arguments, got {text!r}")
        pairs = list(out.items())
    else:
        pairs = []
        for part in text.split(","):
            key, eq, value = part.partition("=")
            if not eq:
                raise ValueError(f"--model-kwargs: {part.strip()!r} is not key=value; write e.g. "
                                 "img_size=28,patch_size=4 or a JSON object")
            pairs.append((key.strip(), _value(value.strip())))
    bad = [k for k, _ in pairs if not isinstance(k, str) or not _KEY.fullmatch(k)]
    if bad:
        raise ValueError(f"--model-kwargs: {bad[0]!r} is not a keyword-argument name")
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"--model-kwargs: {dup[0]!r} is given twice")
    return dict(pairs)
