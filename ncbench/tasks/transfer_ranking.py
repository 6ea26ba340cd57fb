"""`transfer_ranking`: rank a model zoo by transferability estimators against measured transfer.

Every zoo entry (a timm model with `pretrained` weights, a `checkpoint`, or a `train:` block that
trains it here first, shared and cached like any training run) is measured frozen on one target
(`options.target`, a `frozen_transfer` task: its data, classes, preprocessing and measurements),
one job per model (`ncbench.runner.launcher`: inline, local worker processes or SLURM). Per
estimator, the Kendall τ-b and Vigna's weighted τ_w (`ncbench.transfer.rank_correlation`)
between the models' scores and their ground-truth accuracy (`options.ground_truth`, default the
linear-probe accuracy on the target's test split) are the headline numbers: the table that
transferability papers publish (NCTI: Wang et al. 2023; LogME: You et al. 2021).

Estimators (computed on the target's train split only): `ncti` (the NCTI index over this zoo,
`S̄_seli + S̄_ncc − S̄_vc`), `logme`, `knn_loo_acc`, `ncc_acc`, `nc1` and `cdnv` (lower = more
collapsed = predicted better: their negatives are ranked).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd

from ncbench.core import identity
from ncbench.run_files import open_text
from ncbench.tasks.base import Task, TaskMeta, TaskOutput, register_task, rows_from
from ncbench.tasks.options import Options, integer, mapping, one_of
from ncbench.transfer.rank_correlation import LOWER_IS_BETTER

ZOO_KEYS = ("model", "pretrained", "checkpoint", "train", "name", "model_kwargs")


def zoo_entries(value):
    """At least two mappings, each with a `model` and keys among `ZOO_KEYS`."""
    if not isinstance(value, list) or len(value) < 2:
        raise ValueError("needs at least two models to rank (a list of mappings with a 'model')")
    for i, z in enumerate(value):
        if not isinstance(z, dict) or "model" not in z:
            raise ValueError(f"entry {i} must be a mapping with a 'model'")
        bad = sorted(set(z) - set(ZOO_KEYS))
        if bad:
            raise ValueError(f"entry {i} has unknown keys {bad}; known: {list(ZOO_KEYS)}")
    return value


def launcher_name(value):
    """One of `ncbench.runner.launcher.LAUNCHERS`."""
    from ncbench.runner.launcher import LAUNCHERS

    return one_of(*LAUNCHERS)(value)


@dataclass(frozen=True)
class TransferRankingOptions(Options):
    target: str = "frozen_transfer"
    zoo: list = field(default_factory=list)
    ground_truth: str = "probe_acc"
    estimators: list = field(default_factory=lambda: ["ncti", "logme", "knn_loo_acc", "ncc_acc", "nc1", "cdnv"])
    launcher: str = "inline"
    max_parallel: int = 1
    slurm: dict = field(default_factory=dict)
    CHECKS: ClassVar[dict] = {"zoo": zoo_entries, "launcher": launcher_name, "max_parallel": integer(1),
                              "slurm": mapping()}


@dataclass(frozen=True)
class TransferRankingMeta(TaskMeta):
    target: str
    ground_truth: str         # the measured transfer the estimators are ranked against
    failed: list[str]         # "label: why" of each zoo model that did not run
    models: list[str]         # the ranked models
    jobs: list[str]           # their frozen-transfer run ids


@register_task("transfer_ranking")
class TransferRanking(Task):
    """Kendall τ and weighted τ of transferability estimators against measured transfer, over a zoo."""

    OPTIONS: ClassVar[type[Options]] = TransferRankingOptions
    META: ClassVar[type[TaskMeta]] = TransferRankingMeta

    def __init__(self, spec):
        super().__init__(spec)
        for i, z in enumerate(self.options["zoo"]):
            if not (z.get("pretrained") or z.get("checkpoint") or z.get("train")):
                raise ValueError(f"task '{spec.name}': zoo entry {i} ({z.get('name') or z['model']}) has no weights: "
                                 f"give it pretrained: TAG, checkpoint: FILE or train: {{...}}, or pretrained: random "
                                 f"to rank its random initialisation on purpose")
        self.target_spec()                        # validates the target task and its options now
        self.check_weights()

    def check_weights(self) -> None:
        """Fail fast, before any job, when pretrained weights of the zoo are not on this machine:
        one message with the one command that fetches all of them."""
        from ncbench.models.pretrained import (
            RANDOM_INIT,
            WeightsNotCachedError,
            requested_tag,
            resolve_weights,
        )

        missing = []
        for z in self.options["zoo"]:
            pre = z.get("pretrained")
            if pre and pre != RANDOM_INIT and not z.get("checkpoint") and not z.get("train"):
                try:
                    resolve_weights(z["model"], pre, self.spec.download,
                                    dict(z.get("model_kwargs") or {}).get("pretrained_cfg_overlay"))
                except WeightsNotCachedError:
                    tag = requested_tag(z["model"], pre)
                    missing.append(f"{z['model'].split('.')[0]}.{tag}" if tag else z["model"])
        if missing:
            names = ", ".join(f"'{m}'" for m in missing)
            raise WeightsNotCachedError(
                f"task '{self.spec.name}': the pretrained weights of {len(missing)} zoo models are not on this "
                f"machine ({', '.join(missing)}). On a machine with internet run: python -c \"import timm; "
                f"[timm.create_model(m, pretrained=True) for m in ({names},)]\" and copy its Hugging Face "
                "cache (~/.cache/huggingface/hub) here, or set HF_HOME")

    # -- the pieces ----------------------------------------------------------------------------
    def target_spec(self, **changes):
        from ncbench.specs import load_task

        s = self.spec
        spec = load_task(self.options["target"], dataset=s.dataset, device=s.device, data_dir=s.data_dir,
                         seed=s.seed, **changes)
        if spec.kind != "frozen_transfer":
            raise ValueError(f"task '{s.name}': options.target must name a frozen_transfer task, "
                             f"'{spec.name}' is a {spec.kind}")
        return spec

    def _train_config(self, entry: dict):
        from ncbench.training.recipe import Recipe
        from ncbench.training.trajectory import TrajectoryConfig

        t = dict(entry["train"])
        classes = t.pop("classes", None)
        kwargs = tuple(sorted(dict(t.pop("model_kwargs", {})).items()))
        return TrajectoryConfig(dataset=t.pop("dataset", "mnist5k"), model=entry["model"],
                                recipe=Recipe.from_dict(t.pop("recipe", {})), seed=int(t.pop("seed", self.spec.seed)),
                                classes=tuple(classes) if classes is not None else None, model_kwargs=kwargs,
                                data_dir=self.spec.data_dir, device=self.spec.device, **t)

    def trajectories(self) -> list:
        return [self._train_config(z) for z in self.options["zoo"] if z.get("train")]

    def _weights(self, ctx, entry: dict) -> dict:
        """`{"pretrained": ..., "checkpoint": ...}` of a zoo entry; a `train:` entry is trained (once,
        cached) and its backbone saved as a timm state_dict checkpoint beside its training run."""
        if not entry.get("train"):
            return {"pretrained": entry.get("pretrained", False), "checkpoint": entry.get("checkpoint")}
        from ncbench.run_files import save_torch

        cfg = self._train_config(entry)
        _, traj = ctx.trajectory(cfg)
        path = Path(os.path.abspath(traj.dir / "backbone.pth"))   # absolute: jobs may run elsewhere (SLURM)
        if not path.is_file():
            model = traj.load_final_model().cpu()
            save_torch(model.body.state_dict(), path, traj.root)
        return {"pretrained": False, "checkpoint": str(path)}

    def jobs(self, ctx) -> list:
        from ncbench.runner.zoo_jobs import Job

        out = []
        for entry in self.options["zoo"]:
            w = self._weights(ctx, entry)
            extra = {"options": {**self.target_spec().options, "model_kwargs": entry["model_kwargs"]}} \
                if entry.get("model_kwargs") else {}
            spec = self.target_spec(model=entry["model"], **w, **extra)
            label = entry.get("name") or entry["model"] + (f".{w['pretrained']}" if isinstance(w["pretrained"], str) else "")
            out.append((label, Job(spec.to_dict(), str((ctx.out_dir.parent / "_jobs").resolve()),
                                      f"{spec.name}-{label}-{identity.digest_of(spec.to_dict(), 8)}")))
        return out

    # -- measuring -----------------------------------------------------------------------------
    def run(self, ctx) -> TaskOutput:
        from ncbench.runner.zoo_jobs import run_jobs
        from ncbench.transfer.ncti import ncti_total
        from ncbench.transfer.rank_correlation import kendall_tau, weighted_tau

        o = self.options
        labelled = self.jobs(ctx)
        statuses = run_jobs([j for _, j in labelled], o["launcher"], max_parallel=int(o["max_parallel"]),
                            slurm=o["slurm"])
        records, failed = [], []
        for (label, job), (status, why) in zip(labelled, statuses):
            if status != "done":
                failed.append(f"{label}: {why}")
                continue
            with open_text(job.task_dir / "results.csv", job.task_dir) as f:
                df = pd.read_csv(f)
            summ = df[df.split == "summary"].set_index("metric").value.astype(float).to_dict()
            records.append({"model": label, "arch": job.spec["model"], "job": job.run_id,
                            "weights": job.spec.get("checkpoint") or job.spec.get("pretrained") or "", **summ})
        if len(records) < 2:
            raise RuntimeError(f"fewer than two zoo models were measured: {'; '.join(failed) or 'none ran'}")
        for r, total in zip(records, ncti_total(records)):
            r["ncti"] = total
        truth = [r.get(o["ground_truth"], math.nan) for r in records]
        rows, scores = [], []
        summary: dict[str, float] = {"models": float(len(records)), "failed_models": float(len(failed))}
        for est in o["estimators"]:
            sign = -1.0 if est in LOWER_IS_BETTER else 1.0
            s = [sign * r.get(est, math.nan) for r in records]
            summary[f"kendall_tau_{est}"] = kendall_tau(s, truth)
            summary[f"weighted_tau_{est}"] = weighted_tau(s, truth)
            scores += [{"model": r["model"], "estimator": est, "value": r.get(est, math.nan), "score": v,
                        o["ground_truth"]: t} for r, v, t in zip(records, s, truth)]
        best = max(range(len(records)), key=lambda i: -math.inf if math.isnan(truth[i]) else truth[i])
        summary["best_ground_truth"] = truth[best]
        rows += rows_from(summary, split="summary", n_samples=len(records))
        models = pd.DataFrame(records)
        meta = TransferRankingMeta(o["target"], o["ground_truth"], failed, [r["model"] for r in records],
                                   [j.run_id for _, j in labelled])
        return TaskOutput(rows, tables={"models": models, "scores": pd.DataFrame(scores)}, meta=meta)

