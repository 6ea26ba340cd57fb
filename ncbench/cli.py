"""The `ncbench` command line: a thin layer over the library (`ncbench --help`)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ncbench.runner.preflight import parse_seeds

EPILOG = """\
examples:
  ncbench list tasks                       task specs shipped in tasks/ (and the task kinds)
  ncbench list models 'resnet*'            timm's models matching a pattern
  ncbench run train_collapse_mnist5k       one task on the embedded MNIST-5k, CPU, minutes
  ncbench run train_collapse_cifar10 --data-dir ~/data --device cuda
  ncbench suite default                    the default suite (what `make bench` runs)
  ncbench suite claims --jobs 4            independent trainings and tasks in 4 processes at once
  ncbench suite claims --launcher slurm --slurm slurm_partition=gpu --slurm gpus_per_node=1 --device cuda
  ncbench claims --model resnet18 --dataset cifar10 --recipe papyan2020   the claims scorecard of one setup
  torchrun --nproc_per_node 4 -m ncbench run train_collapse_cifar10 --device cuda

Network access only with --download (data sets and --pretrained weights); otherwise local files and caches.
A run on another --dataset or under torchrun is stored as <task>@dataset=...,world=N; with --recipe / --set
as <task>@recipe=NAME,recipe.lr=... (docs/recipes.md).
Results go to results/<run_id>/<task>/results.csv (tidy long format, one row per metric value);
rerunning skips finished tasks (same config hash) unless --force; an interrupted run resumes.
"""


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="timm model name (e.g. resnet18, vit_small_patch16_224); overrides the spec")
    p.add_argument("--dataset", help="data set name (see `ncbench list datasets`), imagefolder:PATH or "
                   "hf:NAME_OR_PATH[:CONFIG][?image=COL&label=COL] (docs/data.md); overrides the spec")
    p.add_argument("--epochs", type=int, help="training epochs (overrides the spec's recipe)")
    p.add_argument("--seed", type=int, help="random seed in [0, 2**32 - 1] (overrides the spec)")
    p.add_argument("--seeds", type=parse_seeds, metavar="S1,S2,...",
                   help="run each task once per seed (a group: results carry each seed, aggregate.csv the mean "
                        "and 95%% CI over seeds); e.g. --seeds 0,1,2")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default: auto)")
    p.add_argument("--pretrained", default=None,
                   help="start from timm pretrained weights: 'true' (timm's default tag) or a tag such as "
                        "a1_in1k; read from the local cache unless --download")
    p.add_argument("--checkpoint", help="start from a local checkpoint file (timm state_dict)")
    p.add_argument("--random-init", action="store_true",
                   help="frozen tier: measure the architecture at its seeded random initialisation (without "
                        "--pretrained or --checkpoint a frozen task refuses to run); rows say pretrained=random")
    p.add_argument("--model-kwargs", metavar="K=V,...",
                   help="keyword arguments for timm.create_model, as key=value pairs (img_size=28,patch_size=4) "
                        "or a JSON object; set as each task's options.model_kwargs")
    p.add_argument("--recipe", metavar="NAME",
                   help="train with the named recipe (ncbench/recipes/NAME.yaml: papyan2020, cpu-mnist5k, vit-adamw, "
                        "...) instead of the spec's; the run is stored as <task>@recipe=NAME")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="set any spec key, dotted (repeatable): recipe.lr=1e-3, recipe.optimizer=adamw, "
                        "options.baselines=false, model_kwargs.img_size=28; checked before any work, recorded "
                        "in config.json, and part of the run's name (<task>@recipe.lr=0.001)")
    p.add_argument("--data-dir", help="where real data sets live (default $NCBENCH_DATA or ~/.cache/ncbench/data)")
    p.add_argument("--download", action="store_true",
                   help="allow network access: fetch a missing data set or --pretrained weights (without it "
                        "ncbench never touches the network and uses only local files and caches)")
    p.add_argument("--out", default="results", help="results root folder (default: ./results)")
    p.add_argument("--force", action="store_true", help="recompute tasks that already have results")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", help="CPU threads for torch (default: $NCBENCH_THREADS, else half the "
                                     "CPUs this process may use, at least 1; recorded in each config.json)")
    p.add_argument("--json", action="store_true",
                   help="print the summary and the paths of the result files as one JSON document on stdout "
                        "(progress and tables go to stderr); see docs/python-api.md")
    _add_job_options(p)


def _add_job_options(p: argparse.ArgumentParser) -> None:
    """--jobs, --launcher, --slurm (ncbench.runner.suite_jobs; docs/parallel.md)."""
    p.add_argument("--jobs", metavar="N|auto",
                   help="independent trainings and tasks run in N processes at once, each with --threads "
                        "threads (values identical to --jobs 1); auto (default, or $NCBENCH_JOBS): CPUs / "
                        "threads, or one job per visible GPU with --device cuda")
    p.add_argument("--launcher", default="local", choices=["local", "slurm"],
                   help="local: --jobs worker processes here (default); slurm: every training and task "
                        "as a Slurm job through submitit (pip install 'ncbench[slurm]')")
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="a submitit parameter for --launcher slurm, repeatable: slurm_partition=gpu, "
                        "timeout_min=120, gpus_per_node=1, cpus_per_task=8, cluster=local (a local test)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ncbench", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="ncbench measures neural collapse in timm backbones: train collapse NC1-NC4, "
                    "test collapse, CDNV, minimal NCC-depth, few-shot transfer, minority collapse, "
                    "and the unconstrained-features model.")
    from ncbench import __version__
    parser.add_argument("--version", action="version", version=f"ncbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list tasks, suites, task kinds, data sets, recipes or timm models",
                       description="List what ncbench knows. PATTERN is a shell wildcard, e.g. 'resnet*'.")
    p.add_argument("what", nargs="?", default="tasks",
                   choices=["tasks", "suites", "kinds", "datasets", "models", "recipes"])
    p.add_argument("pattern", nargs="?", help="wildcard filter")
    p.add_argument("--pretrained", action="store_true", help="models: only those with pretrained weights")

    p = sub.add_parser("run", help="run one task spec", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run one task (a name from `ncbench list tasks`, or a path to a YAML spec).",
                       epilog=EPILOG)
    p.add_argument("task", help="task spec name or YAML path")
    _add_run_options(p)

    p = sub.add_parser("suite", help="run a suite of tasks (default: tasks/default.yaml)",
                       description="Run every task of a suite; shared training runs are trained once.")
    p.add_argument("suite", nargs="?", default="default", help="suite name or YAML path (default: default)")
    _add_run_options(p)

    p = sub.add_parser("claims", help="score every claim of the literature that applies to one setup",
                       description="Run the claims suite's tasks with --model / --dataset / --recipe / --set "
                                   "overridden, then write claims.csv, claims_detail.csv and claims.md into the "
                                   "run folder (docs/claims.md). Claims whose tasks cannot run on this setup are "
                                   "listed as not applicable, with the reason.")
    p.add_argument("--suite", default="claims", help="the claims suite whose tasks to run (default: claims)")
    _add_run_options(p)
    from ncbench.leaderboard_cli import add_commands
    add_commands(sub)
    return parser


def _overrides(args) -> dict:
    import os

    from ncbench.runner.preflight import parse_pretrained, resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)   # torchrun: the run is a DDP run of `world` processes
    o = {"model": args.model, "dataset": args.dataset, "seed": args.seed, "seeds": args.seeds,
         "checkpoint": args.checkpoint,
         "data_dir": args.data_dir, "device": resolve_device(args.device), "world_size": world if world > 1 else None}
    if args.pretrained is not None:
        o["pretrained"] = parse_pretrained(args.pretrained)
    if args.random_init:
        from ncbench.models.pretrained import RANDOM_INIT

        if args.pretrained is not None or args.checkpoint:
            raise ValueError("--random-init measures the seeded random initialisation: drop --pretrained and "
                             "--checkpoint, or drop --random-init to measure those weights")
        o["pretrained"] = RANDOM_INIT
    if args.download:
        o["download"] = True
    return {k: v for k, v in o.items() if v is not None}


def _recipe_changes(args) -> dict:
    """`--recipe` and `--set` as `load_task` / `load_suite` take them (each `--set` parsed and checked)."""
    from ncbench.specs.overrides import parse_set

    return {"recipe": args.recipe, "sets": [parse_set(t) for t in args.sets]}


def _apply_epochs(specs, epochs: int | None):
    if epochs is None:
        return specs
    for s in specs:
        if isinstance(s.recipe, str):
            s.recipe = {"protocol": s.recipe}
        s.recipe = {**s.recipe, "epochs": epochs}
    return specs


def _apply_model_kwargs(specs, text: str | None):
    """`--model-kwargs` into each spec's `options["model_kwargs"]` (merged over the spec's own)."""
    if text is None:
        return specs
    from ncbench.models.model_kwargs import parse_model_kwargs
    from ncbench.tasks import TASK_KINDS

    kwargs = parse_model_kwargs(text)
    takes = sorted(k for k in TASK_KINDS if "model_kwargs" in TASK_KINDS.get(k).known_options())
    deaf = [f"{s.name} ({s.kind})" for s in specs if s.kind not in takes]
    if deaf:
        raise ValueError(f"--model-kwargs: {', '.join(deaf)} take(s) no model_kwargs option; "
                         f"the kinds that do: {', '.join(takes)}")
    for s in specs:
        s.options = {**s.options, "model_kwargs": {**dict(s.options.get("model_kwargs") or {}), **kwargs}}
    return specs


def _validate(specs, remote: bool = False) -> None:
    """Fail fast, before any data or model is loaded: names, device, seed, checkpoint, weights.
    `remote` (--launcher slurm): the device is the compute nodes', not this machine's (unchecked)."""
    from dataclasses import replace

    from ncbench.runner.preflight import check_spec

    for s in specs:
        check_spec(replace(s, device="cpu") if remote else s)


def _run(suite: str, specs, args, scorecard: bool = False, unavailable: dict | None = None,
         task_map=None) -> int:
    """Run `specs` as the suite `suite`; `scorecard`: score the claims after; `unavailable` ({task: why
    it cannot run on this setup}, `ncbench claims`): score them, those claims not applicable, and write
    `claims.md` too; `task_map`: the suite's `scorecard_tasks` (`ncbench.claims.task_map.TaskMap`)."""
    import pandas as pd

    from ncbench.provenance.threads import available_cpus, configure_threads
    from ncbench.runner.jobs import resolve_jobs
    from ncbench.runner.launcher import parse_slurm
    from ncbench.runner.suite import summary_table
    from ncbench.runner.suite_jobs import run_suite

    threads = configure_threads(args.threads)
    _validate(specs, remote=args.launcher == "slurm")
    from ncbench.training.distributed import init_from_env, is_main, world_size
    init_from_env(specs[0].device)  # under torchrun: one DDP process group for the whole run
    if is_main() and not args.no_progress:
        import os
        print(f"threads: {threads} of {available_cpus()} CPUs (1-minute load {os.getloadavg()[0]:.1f}; "
              "--threads to change)")
    slots = resolve_jobs(args.jobs, specs[0].device, threads, world_size=world_size())
    slurm = parse_slurm(args.slurm, args.launcher)
    if args.launcher == "slurm" and args.jobs not in (None, "auto"):   # at most N Slurm jobs at once
        slurm.setdefault("slurm_array_parallelism", slots.jobs)
    if is_main() and not args.no_progress and (slots.jobs > 1 or args.launcher != "local"):
        print(f"jobs: {slots.describe() if args.launcher == 'local' else 'one Slurm job per training and task'} "
              "(--jobs, --launcher to change)")
    run_dir, runs = run_suite(suite, specs, Path(args.out), slots, launcher=args.launcher, slurm=slurm,
                              slurm_threads=threads if args.threads is not None else None, force=args.force,
                              progress=not args.no_progress)
    if not is_main():
        return 1 if any(r.outcome == "failed" for r in runs) else 0
    if args.json:   # main() sends everything else to stderr
        from ncbench.api import RunResult

        print(RunResult.from_runs(run_dir, runs).to_json(), file=args.json_stdout)
    from ncbench.core.board import metric_names

    table = summary_table(runs)
    if len(table):
        declared = {r.spec.name: set(metric_names(r.spec.leaderboard.get("metrics", {})))
                    & set(table.metric[table.task == r.spec.name])
                    for r in runs}
        keep = table[[m in (declared.get(t) or {m}) for t, m in zip(table.task, table.metric)]]
        short = keep.groupby("task", sort=False).head(12)   # the leaderboard's metrics, else the first 12
        with pd.option_context("display.max_rows", 200, "display.width", 160, "display.float_format", "{:.4g}".format):
            print("\nheadline metrics (final epoch, mean over seeds; all of them in each results.csv, "
                  "split == 'summary'; groups: aggregate.csv has the 95% intervals):")
            print(short.set_index(["task", "variant", "metric"]).to_string())
    print("\nresult files:")
    for r in runs:
        print(f"  {r.outcome:8s} {r.csv}" + (f"  ({r.error})" if r.error else ""))
    unranked = [r for r in runs if r.outcome != "failed" and r.result_status != "ok"]
    if unranked:
        print("\nruns that did not do what their recipe meant (flagged in results.csv `status`, never ranked):")
        for r in unranked:
            print(f"  {r.result_status:8s} {r.spec.name}: {r.result_reason}")
    if scorecard or unavailable is not None:   # a claims suite, or `ncbench claims`: every claim's verdict
        from ncbench.claims import verdict_counts, write_scorecard
        from ncbench.run_files import open_text

        if unavailable is not None:     # `ncbench claims`: a task that failed here cannot run on this setup
            unavailable = {**unavailable, **{r.spec.name.split("@")[0]: f"the run failed ({r.error})"
                                             for r in runs if r.outcome == "failed"}}
        card, _ = write_scorecard(run_dir, unavailable=unavailable, markdown=unavailable is not None,
                                  task_map=task_map)
        with open_text(card, run_dir) as f:
            tally = verdict_counts(pd.read_csv(f, keep_default_na=False))
        print(f"\nclaims scorecard: {card} ({tally})")
    failed = [r for r in runs if r.outcome == "failed"]
    return 1 if failed or unranked else 0   # a run left at chance (or diverged) is not a success either


def main(argv: list[str] | None = None) -> int:
    from ncbench.provenance.threads import prefer_sleeping_waits
    prefer_sleeping_waits()         # before torch loads its OpenMP runtime
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if getattr(args, "json", False):   # one JSON document on stdout, the human output on stderr
        import contextlib

        args.json_stdout = sys.stdout
        with contextlib.redirect_stdout(sys.stderr):
            return _command(args)
    return _command(args)


def _command(args) -> int:
    from ncbench.registry import (
        UnknownNameError,  # (a missing data set is a FileNotFoundError: an OSError)
    )
    try:
        if args.command == "list":
            return _list(args)
        if args.command == "run":
            from ncbench.specs import load_task
            spec = load_task(args.task, **_recipe_changes(args), **_overrides(args))
            specs = _apply_model_kwargs(_apply_epochs([spec], args.epochs), args.model_kwargs)
            return _run(spec.name, specs, args)
        if args.command == "claims":
            return _claims(args)
        if args.command == "suite":
            from ncbench.specs import load_suite
            name, specs = load_suite(args.suite, **_recipe_changes(args), **_overrides(args))
            from ncbench.specs import suite_settings
            settings = suite_settings(args.suite)
            return _run(name, _apply_model_kwargs(_apply_epochs(specs, args.epochs), args.model_kwargs), args,
                        scorecard=settings.get("scorecard") == "claims", task_map=settings.get("scorecard_tasks"))
        return args.handler(args)
    except BrokenPipeError:  # e.g. `ncbench leaderboard | head` (before OSError, its base)
        sys.stderr.close()
        return 0
    except (UnknownNameError, OSError, ValueError) as e:   # OSError: e.g. a full disk
        print(f"ncbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ncbench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _claims(args) -> int:
    """`ncbench claims --model M ...`: the claims suite on one setup, each task loaded on its own so that
    one that cannot run there (a model-free kind given --model, a data set it cannot use) is named, not fatal."""
    from ncbench.claims.catalog import CLAIMS
    from ncbench.registry import UnknownNameError
    from ncbench.specs import load_suite, load_task, suite_settings

    _, listed = load_suite(args.suite)
    task_map = suite_settings(args.suite).get("scorecard_tasks")
    changes, overrides = _recipe_changes(args), _overrides(args)
    specs, unavailable = [], {}
    for base in listed:
        try:
            spec = load_task(base.name, **changes, **{"seeds": base.seeds, **overrides})
            if args.model and "model" in spec.sweep:      # --model replaces the spec's architecture axis
                spec = dataclasses.replace(spec, sweep={k: v for k, v in spec.sweep.items() if k != "model"})
            one = _apply_model_kwargs(_apply_epochs([spec], args.epochs), args.model_kwargs)
            _validate(one, remote=args.launcher == "slurm")      # e.g. a data set missing here
            specs += one
        except (UnknownNameError, ValueError, OSError) as e:
            unavailable[base.name] = str(e)
    names = {s.name for s in listed}
    if task_map is None:        # with a map, catalog tasks no task plays are its `unmeasured`
        unavailable.update({t: f"not a task of the suite '{args.suite}'" for c in CLAIMS for t in c.tasks()
                            if t not in names})
    if not specs:
        raise ValueError(f"no task of the suite '{args.suite}' can run on this setup: "
                         + "; ".join(f"{t}: {why}" for t, why in unavailable.items()))
    print(f"claims on this setup: {len(specs)} task(s) to run" + (
        f"; cannot run here: {', '.join(sorted(t for t in unavailable if t in names))}" if unavailable else ""))
    return _run("claims", specs, args, unavailable=unavailable, task_map=task_map)


def _list(args) -> int:
    import fnmatch

    if args.what == "models":
        from ncbench.models.backbone import list_models
        names = list_models(args.pattern, pretrained=args.pretrained)
        print("\n".join(names) if names else f"no timm model matches '{args.pattern}'")
        return 0
    if args.what == "datasets":
        from ncbench.data import list_datasets
        print("\n".join(list_datasets(args.pattern)))
        return 0
    if args.what == "recipes":   # ncbench/recipes/<name>.yaml (`--recipe NAME`)
        from ncbench.training.recipe import PROTOCOLS
        for n, r in PROTOCOLS.items():
            if not args.pattern or fnmatch.fnmatch(n, args.pattern):
                print(f"{n:14s} {r.optimizer} lr {r.lr:g}, wd {r.weight_decay:g}, {r.schedule}, {r.epochs} epochs"
                      + (f", {r.warmup_epochs} warm-up" if r.warmup_epochs else ""))
        return 0
    if args.what == "kinds":
        from ncbench.tasks import TASK_KINDS
        for k in TASK_KINDS:
            doc = (sys.modules[TASK_KINDS.get(k).__module__].__doc__ or "").strip().splitlines()
            print(f"{k:20s} {doc[0] if doc else ''}")
        return 0
    from ncbench import specs
    if args.what == "suites":
        for n in specs.suite_names():
            if not args.pattern or fnmatch.fnmatch(n, args.pattern):
                print(n)
        return 0
    print(f"{'task':32s} {'kind':18s} {'v':>2s}  {'dataset':14s} {'model':22s} {'tier':6s} runs  sweep")
    for n in specs.task_names():
        if args.pattern and not fnmatch.fnmatch(n, args.pattern):
            continue
        s = specs.load_task(n)
        sweep = " × ".join(f"{k}[{len(v)}]" for k, v in s.sweep.items()) + (f" seeds{s.seeds}" if s.seeds else "")
        print(f"{s.name:32s} {s.kind:18s} {s.version:>2d}  {s.dataset:14s} {s.model:22s} {s.tier:6s} "
              f"{len(specs.members(s)):>4d}  {sweep}")
    return 0
