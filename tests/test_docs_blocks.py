"""Every code block of README.md and docs/*.md runs as printed (`tests/markdown_blocks.py` finds them).

- python: executed in a fresh folder; a last line `# OUTPUT` is what the block prints.
- bash: each `ncbench ...` line runs (one folder per file, in order, so a later command sees an earlier
  one's results); a `text` block right after it is its output (lines without digits must appear).
  `bash no-run: REASON` blocks are not run, but their `ncbench run/suite` lines must parse.
- yaml: parses; a block headed `# tasks/NAME.yaml (excerpt)` says what that spec says.
- `tested-by: tests/FILE.py` hands a block to a test of its own, which must read that document.
Also: the README is a guide (<= 200 lines, no timestamps, commit ids, issue numbers), every table
renders (no blank line inside), every relative link resolves, and the claims counts match the board.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from markdown_blocks import Block, anchors, blocks, documents, is_subset, table_breaks

ROOT = Path(__file__).resolve().parent.parent
DOCS = documents(ROOT)
ALL = [b for d in DOCS for b in blocks(d)]


def _ids(bs):
    return [f"{b.path.relative_to(ROOT)}:{b.line}" for b in bs]


def test_the_documents_are_found_and_hold_blocks():
    names = {d.relative_to(ROOT).as_posix() for d in DOCS}
    assert {"README.md", "docs/tasks.md", "docs/results.md", "docs/integrations.md"} <= names
    langs = {b.lang for b in ALL}
    assert {"python", "bash", "yaml", "text"} <= langs


@pytest.mark.parametrize("block", ALL, ids=_ids(ALL))
def test_every_block_says_what_it_is(block: Block):
    assert block.lang in {"python", "bash", "yaml", "text"}, \
        f"{block.where}: a code block needs an info string (python, bash, yaml or text), got {block.info!r}"
    if block.no_run is not None:
        assert block.lang == "bash" and len(block.no_run) >= 8, \
            f"{block.where}: `no-run:` is for bash blocks and needs its reason"
    if block.tested_by:
        test = ROOT / block.tested_by
        assert test.is_file(), f"{block.where}: tested-by names a missing file {block.tested_by}"
        assert block.path.relative_to(ROOT).as_posix() in test.read_text(), \
            f"{block.where}: {block.tested_by} does not read {block.path.relative_to(ROOT)}"


PYTHON = [b for b in ALL if b.lang == "python" and not b.tested_by]


@pytest.mark.parametrize("block", PYTHON, ids=_ids(PYTHON))
def test_python_block_runs_as_printed(block: Block, tmp_path, monkeypatch, capsys, one_thread):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    exec(compile(block.code, block.where, "exec"), {"__name__": "docs_block"})  # noqa: S102
    printed = capsys.readouterr().out.strip().splitlines()
    if block.expected_output is not None:
        assert printed and printed[-1] == block.expected_output, f"{block.where} printed {printed[-1:]}"


def _ncbench_lines(block: Block) -> list[str]:
    lines = [ln.split("  #")[0].strip() for ln in block.code.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


RUN_FILES = sorted({b.path for b in ALL if b.lang == "bash" and b.no_run is None and not b.tested_by})


@pytest.mark.parametrize("path", RUN_FILES, ids=[p.relative_to(ROOT).as_posix() for p in RUN_FILES])
def test_shell_blocks_run_as_printed(path: Path, tmp_path):
    env = {**os.environ, "NCBENCH_THREADS": "1", "NCBENCH_LEADERBOARDS": str(ROOT / "leaderboards")}
    mine = blocks(path)
    for i, block in enumerate(mine):
        if block.lang != "bash" or block.no_run is not None or block.tested_by:
            continue
        output = ""
        for line in _ncbench_lines(block):
            assert line.startswith("ncbench "), \
                f"{block.where}: only `ncbench ...` lines run; mark other blocks `bash no-run: REASON`"
            cmd = f"{shlex.quote(sys.executable)} -m ncbench {line[len('ncbench '):]}"
            done = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                                  check=False, timeout=600)
            assert done.returncode == 0, f"{block.where}: `{line}` exited {done.returncode}: {done.stderr[-2000:]}"
            output += done.stdout
        after = mine[i + 1] if i + 1 < len(mine) else None
        if after is not None and after.lang == "text":
            have = " ".join(output.split())
            for want in after.code.splitlines():
                if want.strip() and not re.search(r"\d|\.\.\.|…", want):
                    assert " ".join(want.split()) in have, f"{after.where}: `{want.strip()}` not printed"


NO_RUN = [b for b in ALL if b.lang == "bash" and b.no_run is not None]


@pytest.mark.parametrize("block", NO_RUN, ids=_ids(NO_RUN))
def test_commands_that_are_not_run_still_parse(block: Block, capsys):
    from ncbench.cli import build_parser

    for line in _ncbench_lines(block):
        if line.startswith("ncbench ") and line.split()[1] in {"run", "suite", "list", "report"}:
            build_parser().parse_args(shlex.split(line)[1:])   # SystemExit(2) on an unknown flag


YAML = [b for b in ALL if b.lang == "yaml"]


@pytest.mark.parametrize("block", YAML, ids=_ids(YAML))
def test_yaml_block_parses_and_matches_the_spec_it_quotes(block: Block):
    data = yaml.safe_load(block.code)
    assert isinstance(data, dict), f"{block.where}: not a mapping"
    head = re.match(r"# (tasks/[\w.]+\.yaml) \(excerpt\)", block.code)
    if head:
        spec = yaml.safe_load((ROOT / head[1]).read_text())
        assert is_subset(data, spec), f"{block.where}: the excerpt says something {head[1]} does not"


def test_readme_is_a_guide():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    for pattern in (r"\d{1,2}:\d\d\s*UTC", r"\b20\d\d-\d\d-\d\d\b", r"\bcommit [0-9a-f]{7,40}\b",
                    r"\bissue #?\d+", r"this morning"):
        assert not re.search(pattern, text, flags=re.IGNORECASE), f"README.md holds {pattern!r}"


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_tables_render_and_links_resolve(doc: Path):
    text = doc.read_text(encoding="utf-8")
    assert not table_breaks(text), f"{doc.name}: a blank line splits the table at line(s) {table_breaks(text)}"
    outside_code = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", outside_code):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file, _, anchor = target.partition("#")
        path = doc.parent / file if file else doc
        assert path.exists(), f"{doc.name}: broken link {target}"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path.read_text(encoding="utf-8")), f"{doc.name}: no heading for {target}"


def test_anchors_follow_githubs_rule():
    assert anchors("# Seeds and sweeps (groups)\n```text\n# not a heading\n```\n## Don't `x`, y\n") == \
        {"seeds-and-sweeps-groups", "dont-x-y"}


def test_the_table_check_finds_a_blank_line_inside_a_table():
    assert table_breaks("| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n") == [5]
    assert table_breaks("| a | b |\n|---|---|\n| 1 | 2 |\n\ntext\n\n| c |\n|---|\n") == []


def test_claims_counts_in_the_docs_match_the_committed_scorecard():
    card = pd.read_csv(ROOT / "leaderboards" / "claims.csv")
    counts = card.verdict.value_counts()
    order = ("reproduced", "contradicted", "weaker than claimed", "not reproduced", "inconclusive", "not applicable")
    verdicts = ", ".join(f"{counts[v]} {v}" for v in order if counts.get(v, 0))
    text = " ".join((ROOT / "docs" / "claims.md").read_text(encoding="utf-8").split()).replace("*", "")
    for stated in (f"{card.claim_id.nunique()} claims, {len(card)} rows", f"): {verdicts}."):
        assert stated in text, f"docs/claims.md should say '{stated}'"
