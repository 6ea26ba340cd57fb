"""The GPU tier of the claims (issue 28, item 4): `tasks/claims_gpu.yaml` declares which of its tasks plays
each catalog task (`scorecard_tasks`, `ncbench.claims.task_map`); its claims are scored through that map.

The suite's real kinds run here in a tiny configuration (the `digits` set, `test_resnet`, 3 epochs, two
seeds): what they write is what a CIFAR-10 run writes, row for row, so each mapped claim's inputs are
checked against rows the player's kind really emits, and the scorecard is computed end to end."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from ncbench.claims import CLAIMS, write_scorecard
from ncbench.claims.__main__ import main as claims_main
from ncbench.claims.evaluate import MissingInput, Reader, prepare_rows
from ncbench.claims.scorecard import read_run_rows, run_task_map
from ncbench.claims.task_map import TaskMap, catalog_tasks, check_task_map
from ncbench.claims.verdicts import NOT_APPLICABLE
from ncbench.cli import main as cli_main
from ncbench.registry import UnknownNameError
from ncbench.runner.suite import run_tasks
from ncbench.specs import load_suite, suite_settings

SUITE = "claims_gpu"


def gpu_map() -> TaskMap:
    return suite_settings(SUITE)["scorecard_tasks"]


def tiny(spec):
    """The GPU spec on `digits` (8×8, 10 classes) with test_resnet, 3 epochs each evaluated, two seeds;
    its kind, options, sweep and aggregates unchanged (n: 100 images per class, minorities 10 and 1)."""
    recipe = {"protocol": spec.recipe} if isinstance(spec.recipe, str) else dict(spec.recipe)
    recipe.update(epochs=3, eval_every=1, batch_size=32)
    return replace(spec, dataset="digits", model="test_resnet", recipe=recipe, seeds=[0, 1],
                   options={**spec.options, "n": 100 if spec.kind == "minority_collapse" else 20})


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    """(run folder, prepared rows) of the whole claims_gpu suite run tiny, task names as shipped."""
    name, specs = load_suite(SUITE)
    out = tmp_path_factory.mktemp("gpu")
    run_dir, runs = run_tasks(name, [tiny(s) for s in specs], out, progress=False, log=lambda m: None)
    assert [r.outcome for r in runs] == ["done"] * len(runs), [r.error for r in runs]
    rows, problems = read_run_rows(run_dir)
    assert problems == []
    return Path(run_dir), rows


def unfed(task_map: TaskMap, rows: pd.DataFrame, claims=CLAIMS) -> list[str]:
    """Every input (`Measure`) of a claim the map scores that the player's rows do not hold, with the
    split, layer and variant keys the evaluator selects (`Reader.select`; a per-block claim: rows with a
    block in `layer`)."""
    read = prepare_rows(task_map.apply(rows.assign(status="ok")))    # what the kinds write, fitted or not
    reader, problems = Reader(read), []
    unmeasured = task_map.unmeasured(claims)
    for c in claims:
        if any(t in unmeasured for t in c.tasks()):
            continue
        for m in [*c.measures(), *(x for p in c.preconditions for x in p.measures())]:
            try:
                got = reader.select(m) if not (c.kind == "layer_spearman" and m == c.a) else \
                    read[(read.task == m.task) & (read.metric == m.metric) & (read.layer != "")
                         & (read.split == m.split)]
                if got.empty:
                    raise MissingInput(f"no per-block rows of {m.label()}")
            except MissingInput as e:
                problems.append(f"{c.claim_id}: {e}")
    return problems


# -- 1. the map names catalog tasks and suite tasks; what it maps is fed ------------------------------
def test_every_map_entry_is_a_catalog_task_played_by_a_task_of_the_suite():
    _, specs = load_suite(SUITE)
    players = gpu_map().players
    assert {c for c, _ in players} <= set(catalog_tasks())
    assert {p for _, p in players} == {s.name for s in specs}       # every task of the suite plays
    scored = [c.claim_id for c in CLAIMS if not any(t in gpu_map().unmeasured() for t in c.tasks())]
    assert len(scored) >= 10 and "nc1_falls_terminal_phase" in scored and "test_collapse_stalls" in scored


def test_each_mapped_claim_reads_metrics_its_players_kind_writes(gpu_run):
    _, rows = gpu_run
    assert unfed(gpu_map(), rows) == []


def test_a_player_whose_kind_does_not_write_the_metric_is_caught(gpu_run):
    _, rows = gpu_run
    good = dict(gpu_map().players)
    wrong = TaskMap(SUITE, tuple({**good, "terminal_phase_mnist5k": "cdnv_bound_heldout_cifar10"}.items()))
    problems = unfed(wrong, rows)
    assert any("terminal_phase_fraction" in p for p in problems)      # a cdnv_bound run has no terminal phase
    assert any(p.startswith("nc1_falls_terminal_phase:") for p in problems)
    # a player without the sweep point the claim reads (no `ratio=` key): caught too
    no_ratio = TaskMap(SUITE, tuple({**good, "minority_arch_mnist5k": "random_labels_fit_cifar10"}.items()))
    assert any(p.startswith("minority_cosine_rises_learnable:") for p in unfed(no_ratio, rows))


# -- 2. end to end: the tiny run's results scored through the map --------------------------------------
def test_gpu_run_is_scored_through_the_map(gpu_run, tmp_path):
    run_dir, _ = gpu_run
    card_path, _ = write_scorecard(run_dir, tmp_path, task_map=gpu_map())
    card = pd.read_csv(card_path, keep_default_na=False).set_index("claim_id")
    unmeasured = gpu_map().unmeasured()
    assert len(card) == len(CLAIMS)              # one model (its model column, no model= key): no pooled row
    for c in CLAIMS:
        r = card.loc[c.claim_id]
        if any(t in unmeasured for t in c.tasks()):
            assert r.verdict == NOT_APPLICABLE and "not measured by suite claims_gpu" in r.reason, c.claim_id
            continue
        assert r.model == "test_resnet", c.claim_id
        assert "no results of task" not in r.reason and "has no such metric" not in r.reason, c.claim_id
        if "left out as not ok" not in r.reason:       # the tiny random-label runs stay near chance: failed
            for missing in ("no ok rows", "cannot be checked"):
                assert missing not in r.reason, (c.claim_id, r.reason)
    # most get a verdict from the players' rows: the tiny run fits little, so most are not applicable by a
    # precondition the player's rows failed (never "not measured"), one is reproduced
    mapped = card.loc[[c.claim_id for c in CLAIMS if not any(t in unmeasured for t in c.tasks())]]
    assert not mapped["reason"].str.contains("not measured").any()
    assert (mapped["verdict"] != "inconclusive").sum() >= 10
    assert mapped["reason"].str.contains("precondition .* failed").sum() >= 8
    # without the map the same folder scores nothing: every claim lacks its catalog task
    (tmp_path / "bare").mkdir()
    bare, _ = write_scorecard(run_dir, tmp_path / "bare")
    assert pd.read_csv(bare, keep_default_na=False)["reason"].str.contains("no results of task").all()


def test_claims_command_and_report_read_the_runs_suite_from_suite_json(gpu_run, tmp_path, capsys):
    run_dir, _ = gpu_run
    assert claims_main([str(run_dir), "--out", str(tmp_path)]) == 0
    card = pd.read_csv(tmp_path / "claims.csv", keep_default_na=False)
    assert card["reason"].str.contains("not measured by suite claims_gpu").any()
    assert not card["reason"].str.contains("no results of task").any()
    assert cli_main(["report", str(run_dir), "--claims", "--out", str(tmp_path / "r.html")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "claims.csv", keep_default_na=False), card)
    # --suite names the map; a run of a suite without one (or no suite.json) reads the catalog names
    assert claims_main([str(run_dir), "--out", str(tmp_path), "--suite", "claims"]) == 0
    assert pd.read_csv(tmp_path / "claims.csv")["reason"].str.contains("no results of task").all()
    assert run_task_map(tmp_path) is None and run_task_map(tmp_path, SUITE) == gpu_map()


# -- the map itself ------------------------------------------------------------------------------------
def test_one_player_of_several_catalog_tasks_is_copied_under_each():
    rows = pd.DataFrame({"task": ["ncc_depth_cifar10", "ncc_depth_cifar10", "other", "ncc_depth_mnist5k"],
                         "value": [1.0, 2.0, 3.0, 9.0]})
    m = TaskMap("s", (("ncc_depth_mnist5k", "ncc_depth_cifar10"), ("ncc_depth_terminal_mnist5k", "ncc_depth_cifar10")))
    got = m.apply(rows)
    assert sorted(got[got.task == "ncc_depth_mnist5k"]["value"]) == [1.0, 2.0]     # the stale 9.0 replaced
    assert sorted(got[got.task == "ncc_depth_terminal_mnist5k"]["value"]) == [1.0, 2.0]
    assert list(got[got.task == "other"]["value"]) == [3.0] and "ncc_depth_cifar10" not in set(got.task)
    assert m.catalog_names({"ncc_depth_cifar10": "the run failed (boom)", "x": "y"}) == {
        "x": "y", "ncc_depth_mnist5k": "ncc_depth_cifar10: the run failed (boom)",
        "ncc_depth_terminal_mnist5k": "ncc_depth_cifar10: the run failed (boom)"}


# -- 3. a bad map: one line with did-you-mean -----------------------------------------------------------
def suite_file(tmp_path, body: str) -> Path:
    p = tmp_path / "my_gpu.yaml"
    p.write_text("suite: my_gpu\nscorecard: claims\ntasks: [train_collapse_cifar10, cdnv_bound_cifar10]\n" + body)
    return p


@pytest.mark.parametrize(("body", "wanted"), [
    ("scorecard_tasks: {terminal_phase_mnist: train_collapse_cifar10}\n",
     "unknown catalog task (suite my_gpu, scorecard_tasks) 'terminal_phase_mnist'. Did you mean: terminal_phase_mnist5k"),
    ("scorecard_tasks: {terminal_phase_mnist5k: train_collapse_cifar}\n",
     ("unknown task of suite my_gpu (scorecard_tasks.terminal_phase_mnist5k) 'train_collapse_cifar'. "
      "Did you mean: train_collapse_cifar10")),
    ("scorecard_tasks: {cdnv_bound_terminal_mnist5k: test_collapse_cifar10}\n",      # a task, not of this suite
     "unknown task of suite my_gpu (scorecard_tasks.cdnv_bound_terminal_mnist5k) 'test_collapse_cifar10'"),
])
def test_a_bad_map_is_one_line_with_did_you_mean(tmp_path, capsys, body, wanted):
    path = suite_file(tmp_path, body)
    with pytest.raises(UnknownNameError) as e:
        load_suite(str(path))
    assert wanted in str(e.value) and "\n" not in str(e.value)
    assert cli_main(["suite", str(path), "--out", str(tmp_path / "out")]) == 2    # before any training
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and wanted in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("body", "wanted"), [
    ("scorecard_tasks: [terminal_phase_mnist5k]\n", "scorecard_tasks must be a mapping"),
    ("scorecard_tasks: {}\n", "scorecard_tasks must be a mapping"),
])
def test_a_map_that_is_not_a_mapping_is_one_line(tmp_path, body, wanted):
    with pytest.raises(ValueError, match=wanted):
        load_suite(str(suite_file(tmp_path, body)))


def test_a_map_needs_the_claims_scorecard(tmp_path):
    p = tmp_path / "no_card.yaml"
    p.write_text("suite: no_card\ntasks: [train_collapse_cifar10]\n"
                 "scorecard_tasks: {terminal_phase_mnist5k: train_collapse_cifar10}\n")
    with pytest.raises(ValueError, match="scorecard_tasks needs `scorecard: claims`"):
        load_suite(str(p))


def test_check_task_map_takes_the_claims_it_is_given():
    claims = [c for c in CLAIMS if c.claim_id == "nc4_vanishes"]
    with pytest.raises(UnknownNameError, match="cdnv_bound_terminal_mnist5k"):
        check_task_map("s", {"cdnv_bound_terminal_mnist5k": "t"}, ["t"], claims)
    assert check_task_map("s", {"terminal_phase_mnist5k": "t"}, ["t"], claims).unmeasured(claims) == {}
