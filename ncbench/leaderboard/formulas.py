"""Spreadsheet formula injection: board CSVs are opened in spreadsheets, which run a cell starting
with `=`, `+`, `-` or `@` (or a tab / carriage return before one) as a formula (`=cmd|' /C calc'!A0`,
`@SUM(...)`, `+HYPERLINK(...)`; OWASP "CSV Injection"). A board refuses such text cells instead of
altering them: a leading `'` would change the data every reader sees. Plain numbers (`-0.25`,
`+1e-3`) are numbers, not formulas.
"""
from __future__ import annotations

import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)


def is_formula(text: str) -> bool:
    """True when a spreadsheet would read `text` as a formula (and it is not a plain number)."""
    text = str(text)
    return text.startswith(FORMULA_START) and not _NUMBER.match(text.strip())


def formula_cells(row: dict) -> list[str]:
    """'column = value' for every formula-like cell of a board row."""
    return [f"{c} = {v!r}" for c, v in row.items() if isinstance(v, str) and is_formula(v)]
