"""The class stays closed (issue 23, "one module owns run-folder files"): outside `ncbench/run_files.py`,
no ncbench module opens, reads, writes, replaces, deletes or torch-loads a file by itself. Each
exception below is a file that is not part of a run folder, with the reason."""
from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import ncbench

PACKAGE = Path(ncbench.__file__).parent

RAW = {
    "open": re.compile(r"(?<![\w.])open\("),
    "Path.open": re.compile(r"\.open\("),
    "json.load": re.compile(r"\bjson\.loads?\("),
    "rmtree": re.compile(r"\bshutil\.rmtree\b"),
    "torch.load": re.compile(r"\btorch\.load\("),
    "torch.save": re.compile(r"\btorch\.save\("),
    "os delete": re.compile(r"\bos\.(remove|unlink|rmdir|replace|rename)\("),
    "Path delete": re.compile(r"\.(unlink|rmdir|rename)\("),
    "Path read/write": re.compile(r"\.(read_text|write_text|read_bytes|write_bytes)\("),
    "read_csv of a path": re.compile(r"\bread_csv\((?!f\b|g\b|io\.StringIO\()"),
    "savefig to a path": re.compile(r"\.savefig\((?!buf\b)"),
}

ALLOWED = {   # (module, pattern): why it is not a run-folder file
    ("training/cache_key.py", "Path read/write"): "ncbench's own source files (the code fingerprint)",
    ("provenance/threads.py", "open"): "/sys/fs/cgroup/cpu.max, a kernel file",
    ("provenance/machine.py", "open"): "/proc/cpuinfo, a kernel file",
    ("data/fewshot_sets.py", "open"): "a data set file the user fetched",
    ("data/learn2learn_sets.py", "open"): "a data set file the user fetched",
    ("data/learn2learn_sets.py", "Path.open"): "PIL's Image.open of data set bytes",
    ("data/streaming.py", "Path.open"): "PIL's Image.open of a data set image",
    ("models/model_kwargs.py", "json.load"): "parses the --model-kwargs text, not a file",
    ("specs/yaml_limits.py", "Path.open"): "spec YAML files are user inputs, read with their size limit (issue 23 item 8)",
    ("leaderboard/terminal.py", "Path delete"): "pandas' DataFrame.rename of columns, not a file",
    ("leaderboard/terminal.py", "json.load"): "parses pandas' own to_json text (NaN as null), not a file",
}


def code_only(source: str) -> list[tuple[int, str]]:
    """(line number, code) with strings and comments blanked (docstrings mention `torch.load(...)`)."""
    lines = source.splitlines()
    out = [list(line) for line in lines]
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                row = out[r - 1]
                a = c0 if r == r0 else 0
                b = c1 if r == r1 else len(row)
                row[a:b] = " " * (b - a)
    return [(i + 1, "".join(row)) for i, row in enumerate(out)]


OWNER = "run_files.py"


def modules():
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).as_posix() != OWNER]


def raw_file_access() -> list[str]:
    found = []
    for path in modules():
        rel = path.relative_to(PACKAGE).as_posix()
        for n, code in code_only(path.read_text(encoding="utf-8")):
            for name, pattern in RAW.items():
                if pattern.search(code) and (rel, name) not in ALLOWED:
                    found.append(f"ncbench/{rel}:{n}: {name}: {code.strip()}")
    return found


def test_no_module_touches_files_but_run_files():
    found = raw_file_access()
    assert not found, ("raw file access outside ncbench/run_files.py (use its read_json / open_text / "
                       "replace_text / save_torch / load_torch / remove, or add a justified ALLOWED entry):\n"
                       + "\n".join(found))


def test_every_allowed_exception_is_still_needed():
    used = set()
    for path in modules():
        rel = path.relative_to(PACKAGE).as_posix()
        for _, code in code_only(path.read_text(encoding="utf-8")):
            used |= {(rel, name) for name, pattern in RAW.items() if pattern.search(code)}
    assert set(ALLOWED) <= used, f"stale allow-list entries: {sorted(set(ALLOWED) - used)}"


def test_the_scan_sees_a_raw_read(tmp_path):
    """The patterns catch what they are meant to (and not in strings or comments)."""
    src = 'x = json.loads(p.read_text())  # open(x)\ny = "torch.load(p)"\nshutil.rmtree(d)\n'
    hits = {name for _, code in code_only(src) for name, pat in RAW.items() if pat.search(code)}
    assert hits == {"json.load", "Path read/write", "rmtree"}
