"""Reading a spec or suite YAML file within limits (torch-free): at most `MAX_BYTES` of text, `MAX_DEPTH`
levels of nesting and `MAX_NODES` nodes once every alias is expanded, so that a "billion laughs"
document (anchors that alias each other, Ruby/PyYAML CVE-2013-0269 style) or a 100,000-deep list is
one clear error, not a MemoryError, a hang or a RecursionError.

The expanded size of a node is 1 + the expanded sizes of its children, an alias counting as the
whole node it names: nine levels of ten aliases are 10^9 nodes, refused while composing, before any
Python object is built.
"""
from __future__ import annotations

from pathlib import Path

import yaml

MAX_BYTES = 1 << 20
"""A spec is a page of text; a megabyte is far beyond any real one."""
MAX_DEPTH = 64
"""Nesting levels (mappings and lists inside each other)."""
MAX_NODES = 100_000
"""Scalars, lists and mappings once aliases are expanded."""


class _LimitedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that counts depth and expanded nodes while composing."""

    def __init__(self, stream, where: str):
        super().__init__(stream)
        self._where, self._depth, self._sizes = where, 0, {}

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            anchor = self.peek_event().anchor
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                raise ValueError(f"{self._where}: the alias *{anchor} refers to a node that contains it "
                                 f"(a recursive document); write the value out instead")
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ValueError(f"{self._where}: nested more than {MAX_DEPTH} levels deep; a spec is a flat "
                             f"mapping of a few levels")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [c for pair in node.value for c in pair]
        else:
            children = []
        size = 1 + sum(self._sizes.get(id(c), 1) for c in children)
        if size > MAX_NODES:
            raise ValueError(f"{self._where}: more than {MAX_NODES:,} values once its aliases (*name) are "
                             f"expanded (a 'billion laughs' document?); write the spec without nested aliases")
        self._sizes[id(node)] = size
        return node


def read_yaml(path: Path):
    """The YAML document in `path`, within the limits above; ValueError (one line naming the file) else."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file; a spec is a YAML file")
    with path.open("rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ValueError(f"{path}: larger than {MAX_BYTES // 1024} KiB; a spec is a page of YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return read_yaml_text(text, str(path))


def read_yaml_text(text: str, where: str):
    """The YAML document `text` within the limits above; ValueError naming `where` (a file, a flag) else."""
    if len(text) > MAX_BYTES:
        raise ValueError(f"{where}: larger than {MAX_BYTES // 1024} KiB of YAML")
    loader = _LimitedLoader(text, where)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: not valid YAML ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise ValueError(f"{where}: nested too deep to read; a spec is a flat mapping of a few levels") from None
    finally:
        loader.dispose()
