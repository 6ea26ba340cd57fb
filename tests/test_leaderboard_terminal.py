"""`ncbench leaderboard` in a terminal and for scripts (issue #27 item 5): every line fits the
terminal width (tested at 100 and 200 columns on a copy of the committed boards), intervals are
rounded to the value's precision, the claims tally, --columns / --wide, --format csv|json|markdown."""
from __future__ import annotations

import csv
import json
import math
import shutil
from collections import Counter

import pandas as pd
import pytest
from test_leaderboard import ROOT

from ncbench import leaderboard as lb
from ncbench.cli import main
from ncbench.leaderboard.aggregate import cell, interval_text
from ncbench.leaderboard.schema import Column

SUBSET = ("fewshot_mnist5k.csv", "minority_collapse_mnist5k.csv", "train_collapse_mnist5k.csv", "claims.csv",
          "claims.md")


@pytest.fixture
def boards(tmp_path, monkeypatch):
    """A copy of three committed boards and the claims (a zero-width interval, long failure reasons,
    several sweep points), with its README rendered."""
    d = tmp_path / "leaderboards"
    d.mkdir()
    for name in SUBSET:
        shutil.copy(ROOT / "leaderboards" / name, d / name)
    lb.write_readme(d)
    monkeypatch.setenv("NCBENCH_LEADERBOARDS", str(d))
    return d


def _out(capsys, argv, columns, monkeypatch) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


def _left_out(lines) -> int:
    return sum(int(ln.split("(+")[1].split(" ")[0]) for ln in lines if "columns not shown" in ln)


def test_every_line_fits_a_terminal_of_100_and_200_columns(boards, capsys, monkeypatch):
    seen = {}
    for columns in (100, 200):
        for argv in (["leaderboard"], ["leaderboard", "minority_collapse_mnist5k"]):
            lines = _out(capsys, argv, columns, monkeypatch)
            assert len(lines) > 5
            assert max(len(line) for line in lines) <= columns, max(lines, key=len)
            seen[columns, len(argv)] = lines
    assert _left_out(seen[100, 1]) > _left_out(seen[200, 1]) > 0          # a wider terminal shows more
    wide = _out(capsys, ["leaderboard", "--wide"], 100, monkeypatch)
    assert _left_out(wide) == 0 and max(len(ln) for ln in wide) > 200
    reason = max(lb.read_table(boards / "minority_collapse_mnist5k.csv")["status_reason"], key=len)
    assert len(reason) > 40 and not any(reason in ln for ln in seen[100, 1]) and any(reason in ln for ln in wide)
    text = "\n".join(wide)
    assert "0.7166 ± 0 " in text and "e-16" not in text and "e-17" not in text     # a zero-width interval
    with open(boards / "claims.csv", newline="", encoding="utf-8") as f:
        verdicts = Counter(r["verdict"] for r in csv.DictReader(f))
    for columns in (100, 200):                                               # the claims tally comes first,
        lines = seen[columns, 1]                                             # wrapped, every count shown
        tally = lines[:lines.index("")]                                     # up to the first board
        assert lines[0].startswith(f"claims ({sum(verdicts.values())} in claims.csv): ")
        assert all(f"{verdict} {n}" in " · ".join(tally) for verdict, n in verdicts.items()), tally
        assert not any("…" in ln for ln in tally)


def test_the_claims_tally_wraps_between_verdicts():
    from ncbench.leaderboard.terminal import tally_lines

    tally = {"reproduced": 44, "contradicted": 7, "weaker than claimed": 4, "inconclusive": 16, "not applicable": 10}
    one = tally_lines(tally, 200)
    assert one == [("claims (81 in claims.csv): reproduced 44 · contradicted 7 · weaker than claimed 4 · "
                    "inconclusive 16 · not applicable 10")]
    for width in (40, 60, 100):
        lines = tally_lines(tally, width)
        assert len(lines) > 1 and all(len(ln) <= width for ln in lines)
        assert all(ln.startswith("  ") for ln in lines[1:])
        assert " · ".join(ln.strip() for ln in lines).replace(": · ", ": ") == one[0]


def test_intervals_are_rounded_to_the_values_precision():
    assert interval_text(0.7166, 3.4e-16) == "0.7166 ± 0"                   # seeds equal to rounding error
    assert interval_text(0.7166, 0.0) == "0.7166 ± 0"
    assert interval_text(0.01467, 0.0014) == "0.01467 ± 0.0014"
    assert interval_text(0.7166, 2e-5) == "0.7166 ± <0.0001"                 # below the mean's last digit
    for mean, half in [(0.7325, 0.0801), (4.067, 0.8612), (123.45, 0.001234), (0.0031, 0.00016)]:
        text = interval_text(mean, half)
        shown_half = text.split("± ")[1]
        last = math.floor(math.log10(abs(mean))) - 3                           # the mean's 4th significant digit
        value = float(shown_half.lstrip("<"))
        assert value == pytest.approx(round(value, -last)), text                # no digit finer than the mean's
        assert abs(value - half) <= max(10.0 ** last, 0.051 * half) or shown_half.startswith("<"), text
    rows = pd.DataFrame({"variant": [""] * 3, "status": ["ok"] * 3, "status_reason": [""] * 3,
                         "acc": [repr(0.1 + 0.2)] * 3})                        # identical seeds
    c = cell(rows, Column("acc"))
    assert c.text(3) == f"{0.1 + 0.2:.4g} ± 0"


def test_the_committed_readme_has_no_noise_interval():
    readme = (ROOT / "leaderboards" / "README.md").read_text()
    assert "0.7166 ± 0 " in readme and "e-16" not in readme and "e-17" not in readme


def test_the_tally_holds_whatever_verdicts_claims_csv_has(tmp_path):
    from ncbench.leaderboard.terminal import claims_tally

    pd.DataFrame({"claim_id": list("abcd"), "verdict": ["inconclusive", "retracted", "reproduced", "inconclusive"]}
                 ).to_csv(tmp_path / "claims.csv", index=False)
    assert claims_tally(tmp_path) == {"reproduced": 1, "inconclusive": 2, "retracted": 1}
    assert claims_tally(tmp_path / "nowhere") == {}


def test_columns_picks_and_an_unknown_one_gets_close_names(boards, capsys, monkeypatch):
    lines = _out(capsys, ["leaderboard", "train_collapse_mnist5k", "--columns", "nc1,date"], 100, monkeypatch)
    head = lines[1].split()
    assert head == ["row", "model", "seed", "variant", "status", "test_accuracy", "nc1", "date"]
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["leaderboard", "train_collapse_mnist5k", "--columns", "nc_1"]) == 2
    err = capsys.readouterr().err
    assert "unknown column 'nc_1'" in err and "Did you mean: nc1" in err and len(err.strip().splitlines()) == 1


def test_formats_for_scripts(boards, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["leaderboard", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    with open(boards / "claims.csv", newline="", encoding="utf-8") as f:
        assert data["claims"] == dict(Counter(r["verdict"] for r in csv.DictReader(f)))
    entries = pd.DataFrame(data["entries"])
    ref = lb.load_leaderboard("fewshot_mnist5k", boards).entries
    got = entries[entries.task == "fewshot_mnist5k"].reset_index(drop=True)
    assert len(got) == len(ref) and got["mean"].tolist() == pytest.approx(ref["mean"].tolist(), nan_ok=True)
    assert main(["leaderboard", "train_collapse_mnist5k", "--format", "csv"]) == 0
    rows = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out), dtype=str, keep_default_na=False)
    board = lb.read_table(boards / "train_collapse_mnist5k.csv")
    assert rows["row"].tolist() == [str(i) for i in range(len(board))]
    assert rows.drop(columns="row").equals(board)                              # full precision, every column
    assert main(["leaderboard", "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert "## train_collapse_mnist5k" in md and "\n| # | model |" in md
