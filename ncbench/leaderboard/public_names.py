"""Boards hold public names only (issue #27 item 4): a board row names its data set the way every
reader can find it (`mnist5k`, `cifar10`, `hf:owner/name`), never a path on the submitter's machine
(`imagefolder:/home/...`, a local `hf:` folder or file). A run on local data reaches a board only
under a public name given with `--dataset-name NAME`. A run of another data set than its task's
(stored as `TASK@dataset=...`, `ncbench.runner.preflight.run_identity`) belongs to another board: the
refusal says which board this is and how to make one for the other data set.
"""
from __future__ import annotations

import re
from pathlib import Path

_PUBLIC = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*(/[A-Za-z0-9][A-Za-z0-9_.+-]*)?")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def is_local_dataset(dataset: str) -> bool:
    """True for a data set named by a path on this machine: `imagefolder:PATH`, `hf:` of a local folder
    or file (absolute, `~`, `./`, a drive letter, a parquet/arrow file, or a path that exists here), or
    a bare path."""
    dataset = str(dataset)
    if dataset.startswith("imagefolder:"):
        return True
    target = dataset.removeprefix("hf:")
    if not dataset.startswith("hf:") and not target.startswith(("/", "~", ".", "\\")):
        return bool(_WINDOWS_DRIVE.match(target))
    target = target if _WINDOWS_DRIVE.match(target) else target.split(":", 1)[0]   # hf:NAME_OR_PATH[:CONFIG]
    return (target.startswith(("/", "~", ".", "\\")) or bool(_WINDOWS_DRIVE.match(target))
            or target.endswith((".parquet", ".arrow")) or Path(target).expanduser().exists())


def check_public_name(name: str) -> str:
    """A `--dataset-name`: letters, digits and `_ . + -`, optionally `owner/name` (a hub data set),
    at most 100 characters, and not a path; else ValueError saying what is allowed."""
    if not isinstance(name, str) or len(name) > 100 or not _PUBLIC.fullmatch(name) or ".." in name:
        raise ValueError(f"--dataset-name {name!r} is not a public data set name: use letters, digits and _ . + - "
                         f"(or owner/name for a Hugging Face hub data set), e.g. 'oxford_pets' or "
                         f"'timm/oxford-iiit-pet', not a path")
    return name


def other_dataset_refusal(task: str, ran_dataset: str) -> str | None:
    """The refusal of a run stored as `TASK@dataset=...` (or `@world=N`) whose TASK has a board, else None."""
    base, at, parts = task.partition("@")
    if not at:
        return None
    from ncbench.leaderboard.schema import current_spec

    try:
        spec = current_spec(base)
    except ValueError:
        return None
    keys = dict(p.split("=", 1) for p in parts.split(",") if "=" in p)
    if "dataset" in keys:
        token = re.sub(r"[^A-Za-z0-9_]", "_", keys["dataset"]).strip("_")
        new = f"{base.replace(spec.dataset, token) if spec.dataset in base else f'{base}_{token}'}"
        return (f"this board is for {spec.dataset}: the run measured {ran_dataset} (stored as {task}); a board "
                f"compares models on one data set. To make a board for {ran_dataset}: copy tasks/{base}.yaml to "
                f"tasks/{new}.yaml with `name: {new}` and `dataset: {ran_dataset}`, run `ncbench run {new}`, "
                f"then submit that run")
    if "world" in keys:
        return (f"this board is for single-process runs: the run used {keys['world']} processes (stored as {task}), "
                f"which changes BatchNorm statistics; rerun {base} without torchrun to submit it")
    return None
