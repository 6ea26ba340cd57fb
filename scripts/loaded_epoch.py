"""Seconds per training epoch of the default suite's shared run (`train_collapse_mnist5k`: timm
test_resnet on MNIST-5k, the `cpu-mnist5k` recipe) on a quiet CPU and beside busy processes of our own.

    python scripts/loaded_epoch.py [--epochs 2] [--hogs 2] [--rounds 2] [--threads N]

Each measurement runs in a fresh interpreter set up as `ncbench run` sets itself up (sleeping
OpenMP waits before torch loads, `configure_threads()`: the default thread count unless
`--threads`), trains one warm-up epoch and then times `--epochs` epochs. The loaded measurement
starts `--hogs` busy Python processes first and stops them by their PIDs afterwards (`try/finally`);
`--rounds` alternates quiet and loaded runs so that a changing background load hits both. Prints
each run, the median ratio loaded/quiet (target <= 2; the fair share of one thread beside two hogs
on two otherwise idle cores is 1.5), and `uptime` before and after. Exit 0 whatever the ratio
(a measurement, not a test). `scripts/thread_cliff.py` reuses `epoch_times` and `hogs`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from ncbench.provenance.threads import configure_threads, prefer_sleeping_waits, thread_provenance
prefer_sleeping_waits()                      # what the CLI does before torch loads OpenMP
import torch
from ncbench.data import load_dataset
from ncbench.models.backbone import build_backbone
from ncbench.specs import load_task
from ncbench.training.recipe import protocol
from ncbench.training.trainer import Trainer
configure_threads(None if sys.argv[2] == "default" else int(sys.argv[2]))
spec = load_task("train_collapse_mnist5k")
train = load_dataset(spec.dataset, "train")
torch.manual_seed(0)
model = build_backbone(spec.model, train.num_classes, train.in_chans)
r = protocol(spec.recipe["protocol"])
trainer = Trainer(model, r, "cpu", 0, progress=False)
trainer.scheduler = r.scheduler(trainer.optimizer, len(train) // r.batch_size + 1)
trainer.train_epoch(train)                   # warm-up: first-call allocations, oneDNN primitives
times, cpu = [], []
for _ in range(int(sys.argv[3])):
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train_epoch(train)
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
print(json.dumps(dict(wall=times, cpu=cpu, **thread_provenance())))
"""


def epoch_times(threads: str | int = "default", epochs: int = 2, env: dict | None = None) -> dict:
    """`{"wall": [s per epoch], "cpu": [process CPU s per epoch], "torch_threads": ...}` from a
    fresh interpreter (`threads`: a count, or "default" for ncbench's own choice)."""
    out = subprocess.run([sys.executable, "-c", CHILD, ROOT, str(threads), str(epochs)],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"epoch child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def hogs(n: int, own_session: bool = True) -> Iterator[list[int]]:
    """`n` busy Python processes for the block, stopped by their PIDs afterwards.

    `own_session`: the hogs run in a session of their own (`setsid`), as another user's or
    terminal's jobs do. With Linux's autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`)
    each session shares the CPUs fairly with the others and its processes share its slice, so hogs
    left in the measuring session take their CPU from the epoch being measured: `1 + n` times
    slower whenever other sessions keep the CPUs busy, whatever ncbench's thread settings.
    """
    procs = []
    try:
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                  start_new_session=own_session) for _ in range(n)]
        time.sleep(1.0)                       # let them reach the run queue
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def autogroup() -> str:
    """Whether the kernel schedules sessions as groups ("on"/"off"/"unknown")."""
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return "on" if f.read().strip() == "1" else "off"
    except OSError:
        return "unknown"


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:  # pragma: no cover - no uptime binary
        return "load average {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per run (after one warm-up)")
    p.add_argument("--hogs", type=int, default=2, help="busy processes of the loaded runs")
    p.add_argument("--rounds", type=int, default=2, help="quiet/loaded pairs")
    p.add_argument("--threads", default="default", help="torch threads (default: ncbench's choice)")
    p.add_argument("--same-session", action="store_true",
                   help="keep the hogs in this session (autogroup: they then share its CPU slice)")
    args = p.parse_args(argv)
    print(f"before: {uptime()}; autogroup scheduling: {autogroup()}; hogs in "
          f"{'this' if args.same_session else 'their own'} session", flush=True)
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    threads = None
    for _ in range(args.rounds):
        for loaded in (False, True):
            load = os.getloadavg()[0]
            with hogs(args.hogs if loaded else 0, own_session=not args.same_session):
                res = epoch_times(args.threads, args.epochs)
            threads = res["torch_threads"]
            wall, cpu = statistics.median(res["wall"]), statistics.median(res["cpu"])
            runs[loaded].append((wall, cpu))
            print(f"{'loaded' if loaded else 'quiet ':6s} ({args.hogs if loaded else 0} hogs, load "
                  f"{load:.1f}, {threads} threads): "
                  f"{', '.join(f'{t:.2f}' for t in res['wall'])} s/epoch wall, "
                  f"{', '.join(f'{t:.2f}' for t in res['cpu'])} s CPU", flush=True)
    quiet = statistics.median(w for w, _ in runs[False])
    loaded = statistics.median(w for w, _ in runs[True])
    print(f"\nepoch wall time: quiet {quiet:.2f} s, beside {args.hogs} busy processes {loaded:.2f} s, "
          f"ratio {loaded / quiet:.2f} (target <= 2; fair share 1.5 on 2 idle cores), "
          f"{threads} torch threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}")
    print(f"after: {uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
