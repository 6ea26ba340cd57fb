"""Names that become file or folder names (task, suite, run id): validated so that no output escapes
the folder it is written under (`../x`, `/abs`, `.hidden`, separators, control characters)."""
from __future__ import annotations

import re

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=+,@-]{0,127}")
"""A letter or digit first, then letters, digits and `_ . = + , @ -`; at most 128 characters (`@` and
`,` name a run by what differs from its spec: `task@dataset=digits,world=2`)."""


def check_name(what: str, name) -> str:
    """`name` if it is a safe single path component, else ValueError saying what is allowed."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} {name!r} cannot name a folder: use letters, digits and _ . = + , @ - (a letter or "
                         f"digit first, no '..', at most 128 characters), e.g. 'my_task_v2'")
    return name
