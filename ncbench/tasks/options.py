"""Typed task options: one frozen dataclass per kind, checked on construction (after
lm-evaluation-harness's `TaskConfig`).

A kind declares `OPTIONS = SomeOptions`, a frozen dataclass of its options with their defaults and
`CHECKS`, a check per field; families of kinds share fields and checks by deriving from the family's
dataclass (`TrainedOptions`: what every kind reading a training run takes). `from_dict` turns a spec's `options:` mapping into one: an unknown
key is refused with "did you mean", a list where one value belongs says that it became a sweep, and
each field's check runs in `__post_init__` (one line: `task 'NAME' (KIND): options.KEY must be ...,
got VALUE`). `to_dict()` gives the mapping back (`cls.from_dict(o.to_dict(), ...) == o`). The spec's
own `options:` (what config.json records and the config hash reads) are never rewritten.
"""
from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from typing import Any, ClassVar

Check = Callable[[Any], Any]
"""A field's check: the value as the kind uses it, or ValueError('must be ...')."""


class BecameSweep(ValueError):
    """A list given where an option takes one value."""


def _one_value(value) -> None:
    if isinstance(value, (list, tuple)):
        raise BecameSweep("takes one value")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int, *, optional: bool = False) -> Check:
    """An integer >= `low` (null too when `optional`); a bool is not an integer."""
    what = ("a positive integer" if low == 1 else f"an integer >= {low}") + (" or null" if optional else "")

    def check(value):
        if value is None and optional:
            return value
        _one_value(value)
        if not _is_int(value) or value < low:
            raise ValueError(f"must be {what}")
        return value
    return check


def number(low: float, high: float = math.inf, *, closed: str = "[)", note: str = "") -> Check:
    """A finite number in the interval from `low` to `high`, `closed` saying which ends belong
    (`"[)"`: low included, high not); an int stays an int (the value is used as written)."""
    if high == math.inf:
        what = f"a finite number {'>=' if closed[0] == '[' else '>'} {low:g}"
    else:
        what = f"a number in {closed[0]}{low:g}, {high:g}{closed[1]}"
    what += f" {note}" if note else ""

    def check(value):
        _one_value(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < low or value > high or (value == low and closed[0] == "(") \
                or (value == high and closed[1] == ")"):
            raise ValueError(f"must be {what}")
        return value
    return check


def one_of(*choices, note: str = "") -> Check:
    """One of `choices`."""
    def check(value):
        _one_value(value)
        if value not in choices:
            raise ValueError(f"must be one of {list(choices)}" + (f" {note}" if note else ""))
        return value
    return check


def boolean(value) -> bool:
    """true or false (YAML's booleans; the text 'false' is not one)."""
    if not isinstance(value, bool):
        raise ValueError("must be true or false")  # noqa: TRY004 - a user input error: exit 2
    return value


def mapping(what: str = "a mapping") -> Check:
    """A mapping, or null (read as an empty one by the kind)."""
    def check(value):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"must be {what}")
        return value
    return check


def coerce(value, kind: type):
    """`value` as a `kind` (bool, int, float or str): YAML reads `1e-3` as text and counts may be
    written `10.0`; ValueError('must be a float (...)') when it is not one."""
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(float(value))
        if kind is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"must be a {kind.__name__} (write floats such as 1.0e-3 with a dot: YAML reads 1e-3 "
                         f"as text)") from None


def coerced(kind: type, *, low: float | None = None, optional: bool = False) -> Check:
    """One value read as a `kind` (`coerce`), at least `low` if given (null too when `optional`)."""
    def check(value):
        if value is None and optional:
            return value
        _one_value(value)
        out = coerce(value, kind)
        if low is not None and out < low:
            raise ValueError(f"must be >= {low}")
        return out
    return check


def as_list(value) -> list:
    """`value` as a list: a list or tuple as it is, one value as a list of one."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def integers(low: int, *, optional: bool = False) -> Check:
    """A non-empty list of distinct integers >= `low` (one integer reads as a list of one)."""
    def check(value):
        if value is None and optional:
            return value
        vals = as_list(value)
        if not vals or not all(_is_int(v) and v >= low for v in vals):
            raise ValueError(f"must be a non-empty list of integers >= {low}")
        if len(set(vals)) != len(vals):
            raise ValueError("repeats values")
        return value
    return check


@dataclass(frozen=True)
class Options:
    """Base of every kind's options: each field checked on construction."""

    MOVED: ClassVar[dict[str, str]] = {}
    """A list option that became a sweep -> the scalar option it sweeps (`ratios` -> `ratio`)."""
    CHECKS: ClassVar[dict[str, Check]] = {}
    """The check of each field declared by this class (those of the classes it derives from apply too)."""

    def __post_init__(self) -> None:
        checks = {k: c for klass in reversed(type(self).__mro__) for k, c in vars(klass).get("CHECKS", {}).items()}
        for f in fields(self):
            check = checks.get(f.name)
            if check is None:
                continue
            value = getattr(self, f.name)
            try:
                object.__setattr__(self, f.name, check(value))
            except BecameSweep:
                raise ValueError(f"options.{f.name} takes one value; a list became a sweep: declare "
                                 f"`sweep: {{{f.name}: {list(value)!r}}}` at the top of the spec (one run per "
                                 f"value; ncbench.specs.groups)") from None
            except ValueError as e:
                raise ValueError(f"options.{f.name} {e}, got {value!r}") from None

    @classmethod
    def defaults(cls) -> dict:
        """Every option with its default."""
        return {f.name: (f.default if f.default is not MISSING else f.default_factory()) for f in fields(cls)}

    @classmethod
    def from_dict(cls, options: dict, where: str) -> Options:
        """The options a spec's mapping gives (defaults for the rest); ValueError, one line starting with
        `where`, for a moved or unknown key or a bad value."""
        moved = sorted(set(options) & set(cls.MOVED))
        if moved:
            k = moved[0]
            raise ValueError(f"{where}: options.{k} became a sweep: declare `sweep: {{{cls.MOVED[k]}: "
                             f"{list(options[k])!r}}}` at the top of the spec (one run per value; ncbench.specs.groups)")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            hints = [u + (f" (did you mean {close[0]}?)" if (close := difflib.get_close_matches(u, known, 1)) else "")
                     for u in unknown]
            raise ValueError(f"{where}: unknown options {', '.join(hints)}; known: {sorted(known)}")
        try:
            return cls(**options)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None

    def to_dict(self) -> dict:
        """The options as a mapping (values not copied: the kind's working view)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def untyped(kind: str, defaults: dict, family: type[Options] = Options) -> type[Options]:
    """The options class of a kind that declares only a `default_options` mapping: its family's, and
    its own keys unchecked."""
    return make_dataclass(f"{kind}_options", [(k, Any, _default(v)) for k, v in defaults.items()],
                          bases=(family,), frozen=True)


def _default(value) -> Any:
    """A dataclass field defaulting to `value` (a mapping or list copied per instance)."""
    if isinstance(value, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(value))
    return field(default=value)
