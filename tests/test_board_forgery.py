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


# --------------------------------------------------------------------------- #23.18: results.csv against config.json

def _relabel(csv, old: str, new: str) -> None:
    csv.write_text(csv.read_text().replace(old, new))


@pytest.mark.parametrize("case, needle", [
    ("digits_as_mnist5k", ("task 'train_collapse_mnist5k' where config.json's spec says "
                           "'train_collapse_mnist5k@dataset=digits'; dataset 'mnist5k' where config.json's spec "
                           "says 'digits'")),
    ("seed", "seed 5 for config"),
    ("weights", "pretrained 'a1_in1k' where config.json's spec says ''"),
])
def test_results_rows_that_contradict_config_json_are_refused(case, needle, tmp_path, tmp_leaderboards):
    from ncbench.specs import load_task

    run = make_run(tmp_path, "forged")
    task_dir = run / TASK
    csv, cfg_path = task_dir / "results.csv", task_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if case == "digits_as_mnist5k":
        # a `--dataset digits` run whose results.csv was relabelled task=TASK, dataset=mnist5k, the sha fixed
        # and suite.json deleted: config.json (and its hash) still say what really ran
        digits = load_task(TASK, dataset="digits")
        _relabel(csv, cfg["config_hash"], digits.config_hash())
        write_json(cfg_path, {**cfg, "spec": digits.to_dict(), "config_hash": digits.config_hash()})
        (run / "suite.json").unlink()
    elif case == "seed":
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        df["seed"] = "5"
        csv.write_text(df.to_csv(index=False, lineterminator="\n"))
    else:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        df["pretrained"] = "a1_in1k"
        csv.write_text(df.to_csv(index=False, lineterminator="\n"))
    reseal(task_dir)
    with pytest.raises(lb.SubmissionRefused) as e:
        lb.submit(run)
    assert needle in str(e.value) and "results.csv and config.json disagree" in str(e.value)
    assert not list(tmp_leaderboards.glob("*.csv"))


# --------------------------------------------------------------------------- #23.19: Markdown and formulas in cells

def _hand_edit(board, **cells) -> None:
    df = pd.read_csv(board, dtype=str, keep_default_na=False)
    for c, v in cells.items():
        df.loc[0, c] = v
    board.write_text(df.to_csv(index=False, lineterminator="\n"))


def test_readme_cells_cannot_emphasise_strike_or_link(tmp_path, tmp_leaderboards):
    markdown_it = pytest.importorskip("markdown_it")
    lb.submit(make_run(tmp_path, "ok"))
    _hand_edit(tmp_leaderboards / f"{TASK}.csv", model="_em_ __init__ test_resnet",
               device="~~s~~ http://evil.example www.evil.example me@evil.example")
    readme = lb.render_readme(lb.read_tables(tmp_leaderboards))
    row = next(line for line in readme.splitlines() if "evil" in line)
    lines = readme.splitlines()
    table = "\n".join(lines[lines.index(row) - 2:lines.index(row) + 1])         # header, rule, the row
    html = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(table)
    assert "<td>" in html
    assert "<em>" not in html and "<s>" not in html and "<strong>" not in html
    assert "_em_ __init__ test_resnet" in html                    # shown literally, intraword `_` untouched
    for autolink in ("http://", "www.", "me@"):                    # GitHub's autolinks start from these
        assert autolink not in row
    assert "http\\://evil.example www\\.evil.example me\\@evil.example" in row


def test_committed_readme_text_is_unchanged_by_the_escaping():
    from test_leaderboard import ROOT

    lb_dir = ROOT / "leaderboards"
    assert lb.render_readme(lb.read_tables(lb_dir), lb.store.claims_markdown(lb_dir)) == \
        (lb_dir / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("text, formula", [
    ("=cmd|' /C calc'!A0", True), ("@SUM(A1:A9)", True), ('+HYPERLINK("http://x")', True), ("-2+3", True),
    ("\t=1", True), ("-0.25", False), ("+1e-3", False), ("-inf", False), ("test_resnet", False), ("", False)])
def test_formula_like_text_is_recognised(text, formula):
    from ncbench.leaderboard.formulas import is_formula

    assert is_formula(text) is formula


def test_submit_refuses_formula_cells_and_a_hand_edited_board_with_one_is_not_read(tmp_path, tmp_leaderboards):
    run = make_run(tmp_path, "f", pretrained='+HYPERLINK("http://evil")')   # a consistent folder: spec, rows, hash
    with pytest.raises(lb.SubmissionRefused, match="would run as formulas .*pretrained = '\\+HYPERLINK"):
        lb.submit(run)
    assert not list(tmp_leaderboards.glob("*.csv"))
    lb.submit(make_run(tmp_path, "ok"))
    board = tmp_leaderboards / f"{TASK}.csv"
    _hand_edit(board, status_reason="=cmd|' /C calc'!A0")
    with pytest.raises(lb.LeaderboardError, match="line 2: column 'status_reason' holds .* as a formula"):
        lb.read_table(board)


# --------------------------------------------------------------------------- #23.20: a stale README is rebuilt

class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs (not even `except Exception`)."""


def _kill_before_readme(monkeypatch):
    real = lb.store.atomic_write_text

    def write(path, text):
        if path.name == "README.md":
            raise Killed
        return real(path, text)

    monkeypatch.setattr(lb.store, "atomic_write_text", write)


def _current(lb_dir) -> bool:
    return (lb_dir / "README.md").read_text() == lb.store.readme_text(lb_dir, lb.read_tables(lb_dir))


def test_a_kill_between_csv_and_readme_is_repaired_by_the_next_submit(tmp_path, tmp_leaderboards, monkeypatch):
    lb.submit(make_run(tmp_path, "a", seed=0))
    second = make_run(tmp_path, "b", seed=1)
    with monkeypatch.context() as m:
        _kill_before_readme(m)
        with pytest.raises(Killed):
            lb.submit(second)
    assert len(lb.read_table(tmp_leaderboards / f"{TASK}.csv")) == 2 and not _current(tmp_leaderboards)
    with pytest.raises(lb.SubmissionRefused, match="already on the leaderboard"):   # the CSV has it
        lb.submit(second)
    assert _current(tmp_leaderboards)                                          # ... and the README now too
    result = lb.submit(make_run(tmp_path, "c", seed=2))
    assert not any("did not match" in n for n in result.notes)


def test_ncbench_leaderboard_rebuilds_a_stale_readme_and_says_so(tmp_path, tmp_leaderboards, monkeypatch, capsys):
    from ncbench.cli import main

    lb.submit(make_run(tmp_path, "a", seed=0))
    with monkeypatch.context() as m:
        _kill_before_readme(m)
        with pytest.raises(Killed):
            lb.submit(make_run(tmp_path, "b", seed=1))
    assert not _current(tmp_leaderboards)
    assert main(["leaderboard", TASK]) == 0
    assert "did not match the board CSVs: rebuilt it" in capsys.readouterr().err
    assert _current(tmp_leaderboards)
    assert main(["leaderboard"]) == 0
    assert "rebuilt" not in capsys.readouterr().err


# --------------------------------------------------------------------------- #27.4: public names only

FROZEN = "frozen_transfer"      # the frozen tier: another data set keeps the name


@pytest.mark.parametrize("dataset, local", [
    ("imagefolder:/home/me/pets", True), ("hf:/data/pets", True), ("hf:./pets:default", True), ("hf:~/pets", True),
    ("hf:pets.parquet", True), ("/home/me/pets", True), ("hf:timm/oxford-iiit-pet", False),
    ("hf:timm/oxford-iiit-pet:default", False), ("mnist5k", False), ("cifar10", False)])
def test_local_data_sets_are_told_from_public_names(dataset, local):
    from ncbench.leaderboard.public_names import is_local_dataset

    assert is_local_dataset(dataset) is local


def test_hf_name_of_a_folder_that_exists_here_is_local(tmp_path, monkeypatch):
    from ncbench.leaderboard.public_names import is_local_dataset

    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "pets").mkdir(parents=True)
    assert is_local_dataset("hf:owner/pets") and not is_local_dataset("hf:owner/cats")


def test_a_run_on_a_local_folder_needs_a_public_name(tmp_path, tmp_leaderboards, capsys):
    from ncbench.cli import main

    path = str(tmp_path / "home" / "me" / "pets")
    run = make_run(tmp_path, "local", tasks=(FROZEN,), dataset=f"imagefolder:{path}")
    assert main(["submit", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"data set imagefolder:{path} is a path on this machine" in err and "--dataset-name NAME" in err
    assert not list(tmp_leaderboards.glob("*.csv"))
    assert main(["submit", str(run), "--dataset-name", "/home/me/pets"]) == 2
    assert "is not a public data set name" in capsys.readouterr().err
    assert main(["submit", str(run), "--dataset-name", "oxford_pets"]) == 0
    board = lb.read_table(tmp_leaderboards / f"{FROZEN}.csv")
    assert set(board.dataset) == {"oxford_pets"}
    assert path not in (tmp_leaderboards / f"{FROZEN}.csv").read_text() + (tmp_leaderboards / "README.md").read_text()


def test_a_public_name_for_a_public_run_is_refused(tmp_path, tmp_leaderboards):
    with pytest.raises(lb.SubmissionRefused, match="--dataset-name names local data"):
        lb.submit(make_run(tmp_path, "pub"), dataset_name="mnist5k_copy")


def test_a_run_on_another_data_set_is_told_which_board_this_is(tmp_path, tmp_leaderboards, capsys):
    from ncbench.cli import main

    run = make_run(tmp_path, "digits", dataset="digits")
    assert (run / f"{TASK}@dataset=digits").is_dir()
    assert main(["submit", str(run)]) == 2
    err = capsys.readouterr().err
    assert "this board is for mnist5k: the run measured digits" in err
    assert "copy tasks/train_collapse_mnist5k.yaml to tasks/train_collapse_digits.yaml" in err
    assert "did you mean" not in err.lower() and "not in the registry" not in err


def test_the_documented_run_names_are_what_runs_are_stored_as():
    """docs/leaderboards.md's table of command -> folder, through the CLI's parser and the runner's naming."""
    import re
    import shlex

    from test_leaderboard import ROOT

    from ncbench.cli import _overrides, build_parser
    from ncbench.runner.suite import run_id_for
    from ncbench.specs import load_task

    doc = (ROOT / "docs" / "leaderboards.md").read_text()
    rows = re.findall(r"^\| `(ncbench run [^`]+)` \| `([^`]+)` \|$", doc, re.MULTILINE)
    assert len(rows) >= 5
    for command, stored in rows:
        args = build_parser().parse_args(shlex.split(command)[1:])
        spec = load_task(args.task, **_overrides(args))
        run_id = run_id_for(spec.name, [spec])
        assert re.fullmatch(re.escape(stored).replace(re.escape("<8 hex>"), "[0-9a-f]{8}"),
                            f"results/{run_id}/{spec.name}/"), (command, stored, run_id, spec.name)
