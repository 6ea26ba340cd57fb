"""Where a number came from: package versions, git hash, device, time (after lm-evaluation-harness),
threads, and the machine (`ncbench.provenance.machine`: CPU, its capability, BLAS/oneDNN, GPU and CUDA)."""
from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path

from ncbench.provenance.machine import machine_provenance
from ncbench.provenance.threads import thread_provenance
from ncbench.version import __version__


def git_hash() -> str:
    """Commit of the ncbench source tree, with `+dirty` for uncommitted changes; `unknown` if none."""
    root = Path(__file__).resolve().parent.parent   # the checkout holding the ncbench package
    try:
        h = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                           text=True, timeout=10, check=False)
        if h.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return h.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device}:{torch.cuda.get_device_name(torch.device(device))}"
    return device


def provenance(device: str) -> dict:
    """Strings per key, and the `machine` block (never part of a config hash: descriptive, not identity)."""
    import timm
    import torch

    return {"ncbench_version": __version__, "torch_version": torch.__version__,
            "timm_version": timm.__version__, "device": device_name(device), "git_hash": git_hash(),
            "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **thread_provenance(), "machine": machine_provenance(device)}
