"""The fenced code blocks of the Markdown documents (README.md, docs/*.md), for tests/test_docs_blocks.py.

A block's info string is its language, then optional words: `no-run: REASON` (bash: not executed,
for that reason) or `tested-by: tests/FILE.py` (a test of its own runs it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", flags=re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int          # 1-based line of the opening fence
    info: str
    code: str

    @property
    def lang(self) -> str:
        return self.info.split()[0] if self.info.strip() else ""

    @property
    def no_run(self) -> str | None:
        """The reason after `no-run:`, None when the block runs."""
        m = re.search(r"\bno-run:\s*(.*)$", self.info)
        return m[1].strip() if m else None

    @property
    def tested_by(self) -> str | None:
        m = re.search(r"\btested-by:\s*(\S+)", self.info)
        return m[1] if m else None

    @property
    def expected_output(self) -> str | None:
        """A python block's last line `# TEXT` after a `print(...)` line: what the block prints last."""
        lines = self.code.rstrip().splitlines()
        if len(lines) >= 2 and lines[-1].startswith("# ") and lines[-2].lstrip().startswith("print("):
            return lines[-1][2:]
        return None

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def documents(root: Path) -> list[Path]:
    """README.md and every docs/*.md under `root`."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one Markdown file, in order."""
    text = path.read_text(encoding="utf-8")
    return [Block(path, text.count("\n", 0, m.start()) + 1, m[1].strip(), m[2]) for m in FENCE.finditer(text)]


def table_breaks(text: str) -> list[int]:
    """1-based lines where a table row follows a blank line right after a table row (GitHub then
    renders the rest as a paragraph of pipes), unless that row heads a new table; code is skipped."""
    breaks, prev, last_text, in_code = [], "", "", False
    for i, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.lstrip().startswith("|") and not prev.strip() \
                and last_text.lstrip().startswith("|") and not _separator_follows(text, i):
            breaks.append(i)
        prev = line
        last_text = line if line.strip() else last_text
    return breaks


def _separator_follows(text: str, line: int) -> bool:
    """Whether line `line` (1-based) heads a new table (the next line is `|---|...`)."""
    lines = text.splitlines()
    return line < len(lines) and re.fullmatch(r"\s*\|?\s*:?-{3,}.*", lines[line]) is not None


def is_subset(part, whole) -> bool:
    """Whether `part` (an excerpt) says nothing `whole` does not: a mapping's keys a subset (recursively),
    a list's items each found in the whole's list of mappings (an excerpt may leave some out), other values equal."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and is_subset(v, whole[k]) for k, v in part.items())
    if isinstance(part, list) and part and all(isinstance(x, dict) for x in part):
        return isinstance(whole, list) and all(any(is_subset(x, w) for w in whole) for x in part)
    return part == whole


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown text's headings: lower case, punctuation dropped, spaces to `-`."""
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*$", re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE),
                       flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}
