"""Every run identity ncbench computes, for every shipped spec: config hashes, group hashes, member
hashes, run names (plain, another data set, two DDP processes, a `--set`), suite run ids, trajectory
keys (code fingerprint fixed) and the loaded spec dicts. `tests/data/identity_head.json` holds what
the code before `ncbench.core.identity` computed (`python tests/identity_snapshot.py` writes it);
`tests/test_identity.py` asserts the code now computes the same."""
from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

DATA = Path(__file__).parent / "data" / "identity_head.json"
FINGERPRINT = "0" * 16
CHECKPOINT_BYTES = b"ncbench identity snapshot checkpoint\n"


def _trajectory_keys(spec) -> list[str]:
    from ncbench.tasks.base import TASK_KINDS

    try:
        task = TASK_KINDS.get(spec.kind)(spec)
    except ValueError:   # a spec that a kind refuses: its refusal is part of the snapshot
        return ["refused"]
    return [cfg.key() for cfg in task.trajectories()]


def _identities(spec) -> dict:
    from ncbench.specs import group_hash, members

    ms = members(spec)
    return {"config_hash": spec.config_hash(), "name": spec.name,
            "members": [[m.variant, m.seed, m.config_hash()] for m in ms],
            "group_hash": group_hash(spec, ms),
            "trajectories": [_trajectory_keys(m) for m in ms]}


def snapshot(tmp: Path) -> dict:
    """The identities of every shipped spec and suite (`tmp`: a folder for one checkpoint file)."""
    from ncbench.core.identity import weights_identity
    from ncbench.leaderboard.submit import spec_hash, weights_tag
    from ncbench.runner.suite import run_id_for
    from ncbench.specs.loading import (
        _read_yaml,
        available,
        load_suite,
        load_task,
        suite_names,
        task_names,
    )

    ckpt = tmp / "weights.pt"
    ckpt.write_bytes(CHECKPOINT_BYTES)
    out: dict = {"files": {}, "tasks": {}, "suites": {}}
    with mock.patch("ncbench.training.trajectory.code_fingerprint", lambda: FINGERPRINT):
        for name, path in available().items():
            out["files"][path.name] = json.loads(json.dumps(_read_yaml(path), default=str))
        for name in task_names():
            spec = load_task(name)
            other = "cifar10" if spec.dataset != "cifar10" else "mnist5k"
            variants = {"plain": spec, "dataset": load_task(name, dataset=other),
                        "world2": load_task(name, world_size=2),
                        "set": load_task(name, sets=[("recipe.lr", 0.125)]),
                        "long_set": load_task(name, sets=[("recipe.lr", 0.125), ("description", "x" * 130)]),
                        "checkpoint": load_task(name, checkpoint=str(ckpt))}
            entry = {"spec": {**json.loads(json.dumps(spec.to_dict(), default=str)), "source": Path(spec.source).name},
                     "spec_hash": spec_hash(spec.to_dict()),
                     "weights": weights_identity(str(ckpt), False),
                     "weights_tag": weights_tag({"checkpoint": str(ckpt)}),
                     "pretrained_tags": [weights_identity(None, p) for p in (False, True, "true", "augreg")]}
            for label, s in variants.items():
                entry[label] = _identities(s)
            out["tasks"][name] = entry
        for name in suite_names():
            suite, specs = load_suite(name)
            out["suites"][name] = {"run_id": run_id_for(suite, specs),
                                   "hashes": [s.config_hash() for s in specs], "names": [s.name for s in specs]}
    return out


CHANGED_ON_PURPOSE = {
    "suites/claims": "issue 28: the claims suite runs the redesigned experiments on three architectures (claims_multiarch "
                     "merged into it; superseded tasks dropped) and ncc_depth_mnist5k on six seeds (a sign test needs them)",
    "files/claims.yaml": "the same change, in the suite file",
}
"""Identities that moved deliberately since the capture, each with its reason."""


def without_boards(value):
    """`value` without its `leaderboard` blocks: a board is presentation, hashed nowhere (issue 24 wrote
    them as metric lists; tests/test_core.py holds each board's facts to the ones its YAML spelt out)."""
    if isinstance(value, dict):
        return {k: without_boards(v) for k, v in value.items() if k != "leaderboard"}
    if isinstance(value, list):
        return [without_boards(v) for v in value]
    return value


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        DATA.write_text(json.dumps(snapshot(Path(d)), indent=1, sort_keys=True) + "\n")
    print(DATA)

