"""CLI commands for leaderboards and reports: `submit`, `leaderboard`, `verify`, `report`.

A thin layer over `ncbench.leaderboard` and `ncbench.results.report`, plus `verify`, which reruns
tasks (so it lives here, in the layer that may import the suite runner); handlers return the exit
code, and ValueError/FileNotFoundError become `ncbench: error: ...` (exit 2) in cli.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ncbench.runner.preflight import parse_pretrained, parse_seeds, resolve_device

LB_HELP = "leaderboards folder (default: $NCBENCH_LEADERBOARDS, else the checkout's leaderboards/)"


def add_commands(sub) -> None:
    """Register the `submit`, `leaderboard`, `verify` and `report` sub-commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "submit", help="add a finished run (or a model, run first) to the leaderboards", formatter_class=fmt,
        description="Validate a finished run (schema, current task versions and protocol, completeness, "
                    "duplicates) and merge its headline metrics into leaderboards/<task>.csv and README.md.",
        epilog="examples:\n"
               "  ncbench submit results/leaderboard-1a2b3c4d\n"
               "  ncbench submit --model resnet18 --pretrained a1_in1k      runs tasks/leaderboard.yaml first\n"
               "  ncbench submit --model resnet18 --checkpoint my.pth --seed 1\n"
               "  ncbench submit --tier frozen --model resnet50 --pretrained a1_in1k   frozen transfer, no training\n"
               "  ncbench submit results/leaderboard-1a2b3c4d --replace     overwrite the same entry")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="finished run folder(s) results/<run_id>")
    p.add_argument("--model", help="timm model to run the leaderboard suite with, then submit")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--pretrained", help="with --model: timm pretrained tag (or 'true' for timm's default)")
    w.add_argument("--checkpoint", help="with --model: local checkpoint file (its sha256 identifies the row)")
    w.add_argument("--random-init", action="store_true",
                   help="with --model --tier frozen: the seeded random initialisation (rows say pretrained=random)")
    p.add_argument("--tier", choices=["trained", "frozen"], default="trained",
                   help="with --model: 'trained' runs tasks/leaderboard.yaml (trains), 'frozen' runs "
                        "tasks/leaderboard_frozen.yaml (the weights measured frozen, no training)")
    p.add_argument("--seed", type=int, help="with --model: one random seed instead of the suite's seeds")
    p.add_argument("--seeds", type=parse_seeds, metavar="S1,S2,...",
                   help="with --model: the seeds to run (default: the leaderboard suite's, 0,1,2)")
    p.add_argument("--device", default="auto", help="with --model: cpu, cuda, cuda:1 or auto (default: auto)")
    p.add_argument("--data-dir", help="with --model: where real data sets live")
    p.add_argument("--out", default="results", help="with --model: results root folder (default: ./results)")
    p.add_argument("--no-progress", action="store_true", help="with --model: no progress bars")
    p.add_argument("--dataset-name", metavar="NAME",
                   help="the public name of a run's local data set (imagefolder:PATH, a local hf: folder): boards "
                        "never hold paths, so such a run needs one")
    p.add_argument("--threads", help="with --model: CPU threads for torch, as for `ncbench run` (recorded in each "
                                     "config.json)")
    p.add_argument("--replace", action="store_true", help="overwrite entries that are already on the leaderboard")
    p.add_argument("--dry-run", action="store_true", help="run every check, write nothing")
    p.add_argument("--leaderboards", help=LB_HELP)
    p.set_defaults(handler=_submit)

    p = sub.add_parser("leaderboard", help="print the leaderboards (or one task's rows)",
                       description="Without TASK: the claims tally, then every task's standings as in "
                                   "leaderboards/README.md. With TASK: each row with its row number (for "
                                   "`ncbench verify TASK:ROW`). Text fits the terminal width (COLUMNS); see "
                                   "docs/leaderboards.md.")
    p.add_argument("task", nargs="?", help="task name (see `ncbench list tasks`)")
    p.add_argument("--columns", metavar="A,B,...",
                   help="the columns to show besides the identity ones (a header, a metric name or a prefix)")
    p.add_argument("--wide", action="store_true", help="every column and every character, whatever the terminal width")
    p.add_argument("--format", choices=["text", "csv", "json", "markdown"], default="text",
                   help="text (default, fits the terminal), or csv / json / markdown for scripts")
    p.add_argument("--render", action="store_true", help="re-render README.md from the CSVs")
    p.add_argument("--leaderboards", help=LB_HELP)
    p.set_defaults(handler=_leaderboard)

    p = sub.add_parser("verify", help="rerun a leaderboard row and check agreement", formatter_class=fmt,
                       description="Rerun the configuration of a submitted run with the current ncbench and "
                                   "report, per headline (metric, variant), whether |rerun - submitted| <= "
                                   "max(atol + rtol*|submitted|, the 95% t half-width over the entry's other seeds), "
                                   "with the tolerances each metric declares (ncbench.core.metrics) "
                                   "unless --rtol/--atol are given. Exit 0 when every metric agrees, 1 otherwise.",
                       epilog="ROW is TASK:N (N from `ncbench leaderboard TASK`), TASK:RUN_ID or a RUN_ID "
                              "(every task of that run, rerun together).")
    p.add_argument("row", metavar="ROW")
    p.add_argument("--run-dir", help="compare with this finished rerun instead of running one")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default: auto)")
    p.add_argument("--checkpoint", help="the checkpoint file of a row whose weights are sha256:...")
    p.add_argument("--out", default="results", help="results root folder for the rerun (default: ./results)")
    p.add_argument("--rtol", type=float, default=None,
                   help="relative tolerance for every metric (default: each metric's declared rtol)")
    p.add_argument("--atol", type=float, default=None,
                   help="absolute tolerance for every metric (default: each metric's declared atol)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", help="CPU threads for the rerun (default: the count the row's run recorded in "
                                     "OUT/<run_id>/<task>/config.json, else as for `ncbench run`)")
    p.add_argument("--leaderboards", help=LB_HELP)
    p.set_defaults(handler=_verify)

    p = sub.add_parser("report", help="write an offline HTML report of a run",
                       description="One HTML page: an overview (claims scorecard, a headline per task, "
                                   "failures and runs not ok), then each task's headline metrics, plots, "
                                   "class-pair heatmaps and, collapsible, per-epoch tables, spec and "
                                   "provenance (images linked relative to the page).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder results/<run_id>")
    p.add_argument("--out", help="HTML file to write (default: RUN_DIR/report.html)")
    p.add_argument("--claims", action="store_true",
                   help="evaluate the claims (ncbench.claims) on this run first: writes RUN_DIR/claims.csv "
                        "and claims_detail.csv, shown as the report's scorecard")
    p.set_defaults(handler=_report)


def _run_leaderboard_suite(args) -> Path:
    from ncbench.provenance.threads import configure_threads
    from ncbench.runner.preflight import check_spec
    from ncbench.runner.suite import run_tasks
    from ncbench.specs import load_suite

    configure_threads(args.threads)   # the same thread policy as `ncbench run` (float reduction order)

    overrides = {"model": args.model, "seed": args.seed, "data_dir": args.data_dir, "device": resolve_device(args.device),
                 "seeds": args.seeds}
    if args.seed is not None and args.seeds is None:
        overrides["seeds"] = [args.seed]          # one seed asked for: that seed only
    if args.checkpoint:
        overrides["checkpoint"] = str(Path(args.checkpoint).expanduser().resolve())
    if args.pretrained:
        overrides["pretrained"] = parse_pretrained(args.pretrained)
    if getattr(args, "random_init", False):
        from ncbench.models.pretrained import RANDOM_INIT

        overrides["pretrained"] = RANDOM_INIT
    suite = "leaderboard_frozen" if getattr(args, "tier", "trained") == "frozen" else "leaderboard"
    name, specs = load_suite(suite, **{k: v for k, v in overrides.items() if v is not None})
    for s in specs:
        check_spec(s)
    run_dir, runs = run_tasks(name, specs, Path(args.out), progress=not args.no_progress)
    failed = [f"{r.spec.name}: {r.error}" for r in runs if r.outcome == "failed"]
    if failed:
        raise ValueError("the leaderboard suite failed, nothing submitted: " + "; ".join(failed))
    return run_dir


def rerun_overrides(row: dict, device: str, checkpoint: str | None) -> dict:
    """Spec overrides that reproduce a board row's configuration."""
    from ncbench.results.integrity import file_sha256

    o = {"model": row["model"], "dataset": row["dataset"], "seed": int(row["seed"]), "device": device}
    weights = row["pretrained"]
    if weights.startswith("sha256:"):
        if not checkpoint:
            raise ValueError(f"the row was trained from checkpoint {weights}: pass --checkpoint FILE")
        got = "sha256:" + file_sha256(Path(checkpoint))[:16]
        if got != weights:
            raise ValueError(f"--checkpoint {checkpoint} hashes to {got}, the row's weights are {weights}")
        o["checkpoint"] = str(checkpoint)
    elif weights:
        o["pretrained"] = True if weights == "true" else weights
    return o


def recorded_threads(out, task: str, row: dict) -> int | None:
    """The torch thread count the row's run recorded (`provenance.torch_threads` of its config.json in
    `out/<run_id>/<task>/`, when that folder is here and holds the row's configuration), else None."""
    from ncbench.run_files import read_json

    run_dir = Path(out) / str(row["run_id"])
    try:
        cfg = read_json(run_dir / task / "config.json", run_dir)
        if cfg.get("config_hash") != row.get("config_hash"):
            return None
        return int(cfg["provenance"]["torch_threads"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def _rerun_threads(threads: str | None, out, members: list, log) -> None:
    """Set the rerun's thread count: `--threads`, else the one the rows' run recorded, else the
    default of `ncbench run` (said, since the rerun may then reduce floats in another order)."""
    from ncbench.provenance.threads import available_cpus, configure_threads

    if threads is not None:
        log(f"rerunning with {configure_threads(threads)} torch thread(s) (--threads)")
        return
    counts = {recorded_threads(out, t, r) for t, _, r in members}
    if None in counts or len(counts) != 1:
        n = configure_threads(None)
        log(f"the row's run folder (with its thread count) is not under {out}: rerunning with {n} torch thread(s) "
            f"(--threads N to match the original run)")
        return
    (n,), cpus = counts, available_cpus()
    if n > cpus:
        raise ValueError(f"the row's run used {n} torch threads, this process may run on {cpus} CPU(s): rerun with "
                         f"--threads 1..{cpus} (the last bits may then differ)")
    configure_threads(n)
    log(f"rerunning with {n} torch thread(s), as the row's run recorded")


def _rerun(hits, device: str, checkpoint: str | None, out, progress: bool, log, threads: str | None = None) -> dict:
    """Rerun the runs of `hits` (those sharing a configuration together) with the thread count of
    their run (`_rerun_threads`); {(task, row): task folder}."""
    from ncbench.leaderboard.schema import RUN
    from ncbench.runner.suite import run_tasks
    from ncbench.specs import load_task

    groups: dict[tuple, list] = {}
    for task, i, row in hits:
        groups.setdefault(tuple(row[c] for c in RUN if c not in ("task", "task_version")), []).append((task, i, row))
    dirs = {}
    for members in groups.values():
        specs = [load_task(t, **rerun_overrides(r, device, checkpoint)) for t, _, r in members]
        _rerun_threads(threads, out, members, log)
        rd, runs = run_tasks("verify", specs, Path(out), progress=progress, log=log)
        failed = [f"{r.spec.name}: {r.error}" for r in runs if r.outcome == "failed"]
        if failed:
            raise ValueError("the rerun failed: " + "; ".join(failed))
        dirs.update({(t, i): rd / t for t, i, _ in members})
    return dirs


def verify(ref: str, leaderboards: str | Path | None = None, *, run_dir: str | Path | None = None,
           out: str | Path = "results", device: str = "cpu", checkpoint: str | None = None,
           rtol: float | None = None, atol: float | None = None, progress: bool = True, log=print,
           threads: str | None = None):
    """Rerun the configuration of the board run(s) `ref` (or read an existing rerun in `run_dir`) and
    compare each headline (metric, variant) of the run (`ncbench.leaderboard.agreement`).
    Returns [(task, row, comparison)], one per run."""
    from ncbench.leaderboard import agreement
    from ncbench.leaderboard.aggregate import board_columns, cell
    from ncbench.leaderboard.schema import RUN, Column, current_spec, leaderboards_dir, task_board
    from ncbench.leaderboard.store import find_rows, read_tables, rows_like
    from ncbench.leaderboard.submit import entry_from_task_dir

    agreement.check_tolerance("rtol", rtol)
    agreement.check_tolerance("atol", atol)
    hits = find_rows(ref, leaderboards)
    for task, i, row in hits:
        spec = current_spec(task)
        if int(row["task_version"]) != spec.version:
            raise ValueError(f"{task} row {i} is for version {row['task_version']}, the registry has version "
                             f"{spec.version}: it cannot be rerun with this ncbench")
    if run_dir is None:
        dirs = _rerun(hits, device, checkpoint, out, progress, log, threads)
    else:
        base = Path(run_dir)
        dirs = {(t, i): (base if (base / "results.csv").is_file() else base / t) for t, i, _ in hits}
    tables = read_tables(leaderboards_dir(leaderboards))
    results = []
    for task, i, row in hits:
        entry = entry_from_task_dir(dirs[(task, i)])
        if entry is None:
            raise ValueError(f"{task}: declares no leaderboard metrics to verify")
        differ = {c: (row[c], entry.row[c]) for c in RUN if row[c] != entry.row[c]}
        if differ:
            raise ValueError(f"{dirs[(task, i)]} is another configuration than {task} row {i}: "
                             + ", ".join(f"{c} {a!r} vs {b!r}" for c, (a, b) in differ.items()))
        note = agreement.machine_note(row, entry.row)
        if note:
            log(f"{task} row {i}: {note}")
        table, board = tables[task], task_board(task).spec
        mine = rows_like(table, row, RUN)
        variants = set(mine["variant"].astype(str))
        columns = [c for c in board_columns(table, board) if c.variant in variants]
        submitted = {Column(c.metric, c.variant): r.get(c.metric, "") for c in columns
                     for _, r in mine[mine["variant"] == c.variant].iterrows()}
        rerun = {Column(m, r["variant"]): v for r in entry.rows for m, v in r.items()}
        group = rows_like(table, row)
        others = group[group["seed"].astype(str) != str(row["seed"])]     # leave-one-out: never the row checked
        spread = {c: ((x := cell(others, c)).half_width, x.n) for c in columns}
        results.append((task, i, agreement.compare(submitted, rerun, columns, rtol, atol, spread)))
    return results


def _submit(args) -> int:
    from ncbench.leaderboard import submit

    if bool(args.model) == bool(args.run_dirs):
        raise ValueError("submit takes RUN_DIR(s) or --model NAME (one of the two)")
    if not args.model and (args.pretrained or args.checkpoint or args.random_init or args.seed is not None or args.seeds):
        raise ValueError("--pretrained, --checkpoint, --random-init, --seed and --seeds go with --model; a run folder "
                         "already says them")
    if args.dataset_name is not None:
        from ncbench.leaderboard.public_names import check_public_name

        check_public_name(args.dataset_name)            # before a --model run starts
    run_dirs = args.run_dirs or [_run_leaderboard_suite(args)]
    res = submit(run_dirs, args.leaderboards, replace=args.replace, dry_run=args.dry_run, dataset_name=args.dataset_name)
    for n in res.notes:
        print(f"note: {n}")
    verb = "would " if args.dry_run else ""
    for e in res.added:
        print(f"{verb}add      {e.describe()}")
    for e in res.replaced:
        print(f"{verb}replace  {e.describe()}")
    for p in res.written:
        print(f"wrote {p}")
    return 0


def _leaderboard(args) -> int:
    from ncbench.leaderboard import leaderboards_dir, read_table, read_tables, write_readme
    from ncbench.leaderboard import terminal as term

    if args.render:
        print(f"wrote {write_readme(args.leaderboards)}")
        return 0
    _refresh_readme(args.leaderboards)
    lb_dir = leaderboards_dir(args.leaderboards)
    wanted = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    width = term.terminal_width()
    tally = term.claims_tally(lb_dir)
    if args.task:
        path = lb_dir / f"{args.task}.csv"
        if not path.is_file():
            from ncbench.leaderboard.store import board_files

            have = sorted(p.stem for p in board_files(lb_dir))
            raise FileNotFoundError(f"no leaderboard for '{args.task}' in {lb_dir} (have: {have or 'none yet'})")
        table = read_table(path, args.task)
        if args.format != "text":
            print(term.export({args.task: table}, args.format, tally, args.task, wanted))
        else:
            print("\n".join(term.rows_lines(args.task, table, width, wanted, args.wide)))
        return 0
    tables = read_tables(lb_dir)
    if args.format != "text":
        print(term.export(tables, args.format, tally, None, wanted))
        return 0
    if tally:
        print("\n".join(term.tally_lines(tally, width)))
    if not tables:
        print(f"no leaderboards yet in {lb_dir}: submit a run with `ncbench submit results/<run_id>`")
    for task, table in tables.items():
        print("\n" + "\n".join(term.standings_lines(task, table, width, wanted, args.wide)))
    return 0


def _refresh_readme(leaderboards) -> None:
    """Rebuild a stale README.md (#23 item 20), with one line on stderr; a read-only folder only warns."""
    import sys

    from ncbench.leaderboard.store import refresh_readme
    from ncbench.results.writer import ResultsWriteError

    try:
        rebuilt = refresh_readme(leaderboards)
    except ResultsWriteError as e:
        print(f"ncbench: warning: README.md does not match the board CSVs and could not be rebuilt: {e}",
              file=sys.stderr)
        return
    if rebuilt:
        print(f"ncbench: note: {rebuilt} did not match the board CSVs: rebuilt it", file=sys.stderr)


def _verify(args) -> int:
    import pandas as pd

    results = verify(args.row, args.leaderboards, run_dir=args.run_dir, out=args.out, device=resolve_device(args.device),
                     checkpoint=args.checkpoint, rtol=args.rtol, atol=args.atol, progress=not args.no_progress,
                     threads=args.threads)
    ok = True
    for task, i, cmp in results:
        agree = bool(cmp["agrees"].all())
        ok &= agree
        tol = ("each metric's declared tolerance or the spread of the entry's other seeds" if args.rtol is None and args.atol is None else
               f"rtol {'declared' if args.rtol is None else format(args.rtol, 'g')}, "
               f"atol {'declared' if args.atol is None else format(args.atol, 'g')}")
        print(f"\n{task} row {i}: {'AGREES' if agree else 'DISAGREES'} ({tol})")
        with pd.option_context("display.float_format", "{:.6g}".format, "display.width", 160):
            print(cmp.to_string(index=False))
    return 0 if ok else 1


def _report(args) -> int:
    from ncbench.results.report import write_report

    if args.claims:
        from ncbench.claims.scorecard import run_task_map, write_scorecard

        write_scorecard(args.run_dir, task_map=run_task_map(args.run_dir))   # a claims_gpu run: its task map
        print(f"wrote {Path(args.run_dir) / 'claims.csv'}")
    path = write_report(args.run_dir, args.out)
    print(f"wrote {path}")
    return 0
