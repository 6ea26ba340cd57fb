"""Boards against forged and hostile submissions (issue #23 items 16-20, issue #27 item 4): headline
values are finite, a row never widens its own verify tolerance, results.csv must agree with the
config.json beside it, cells cannot inject Markdown or spreadsheet formulas, a stale README is
rebuilt, and boards hold public data set names only."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy import stats
from test_leaderboard import TASK, make_run, reseal

from ncbench import leaderboard as lb
from ncbench import leaderboard_cli
from ncbench.leaderboard.agreement import compare
from ncbench.leaderboard.schema import Column
from ncbench.results.writer import write_json


@pytest.fixture(autouse=True)
def tmp_leaderboards(tmp_path, monkeypatch):
    """Boards go to a tmp folder, never the repo's leaderboards/."""
    d = tmp_path / "leaderboards"
    monkeypatch.setenv("NCBENCH_LEADERBOARDS", str(d))
    return d


# --------------------------------------------------------------------------- #23.16: finite headline values

@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_an_infinite_headline_value_is_refused(value, tmp_path, tmp_leaderboards):
    run = make_run(tmp_path, "inf", values={"nc1": value})     # integrity hashes are consistent (fixed-up sha)
    with pytest.raises(lb.SubmissionRefused, match=r"nc1 = -?inf is not finite"):
        lb.submit(run)
    assert not list(tmp_leaderboards.glob("*.csv"))


def test_verify_never_agrees_with_an_infinite_value_or_tolerance():
    col = [Column("nc1")]
    assert not compare({"nc1": math.inf}, {"nc1": math.inf}, col).agrees.iloc[0]
    assert not compare({"nc1": math.inf}, {"nc1": 0.2}, col).agrees.iloc[0]
    assert not compare({"nc1": 0.2}, {"nc1": 0.3}, col, spread={Column("nc1"): (math.inf, 3)}).agrees.iloc[0]
    assert compare({"nc1": math.nan}, {"nc1": math.nan}, col).agrees.iloc[0]      # not measured on both sides


# --------------------------------------------------------------------------- #23.17: leave-one-out tolerance

def test_a_forged_seed_cannot_widen_its_own_tolerance(tmp_path, tmp_leaderboards):
    accs = [0.98, 0.985]
    for s, a in enumerate(accs):
        lb.submit(make_run(tmp_path, f"s{s}", seed=s, values={"test_accuracy": a}))
    lb.submit(make_run(tmp_path, "forged", seed=2, values={"test_accuracy": 0.5}))
    honest = make_run(tmp_path, "rerun", seed=2, values={"test_accuracy": 0.982})
    [(_, _, cmp)] = leaderboard_cli.verify(f"{TASK}:forged", run_dir=honest)
    got = cmp.set_index("metric").loc["test_accuracy"]
    assert got.seed_half_width == pytest.approx(stats.t.ppf(0.975, 1) * stats.sem(accs))   # seeds 0 and 1 only
    with_itself = stats.t.ppf(0.975, 2) * stats.sem([*accs, 0.5])
    assert abs(0.982 - 0.5) < with_itself        # the old rule (all seeds) would have agreed
    assert not got.agrees
