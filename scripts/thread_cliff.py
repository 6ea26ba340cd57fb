"""Seconds per training epoch of the default suite's shared run (test_resnet on MNIST-5k) against the
torch thread count and the OpenMP wait policy, with and without a CPU hog of our own.

    python scripts/thread_cliff.py [--epochs 3] [--hogs 2]

Each configuration runs in a fresh interpreter (the wait policy is read when torch loads OpenMP);
the hog is `--hogs` busy Python processes started here and stopped by their PIDs. Prints a table of
the median epoch time and its ratio to the quiet 1-thread time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
from ncbench.data import load_dataset
from ncbench.models.backbone import build_backbone
from ncbench.specs import load_task
from ncbench.training.recipe import protocol
from ncbench.training.trainer import Trainer
torch.set_num_threads(int(sys.argv[2]))
spec = load_task("train_collapse_mnist5k")
train = load_dataset("mnist5k", "train")
model = build_backbone(spec.model, train.num_classes, train.in_chans)
r = protocol("cpu-mnist5k")
trainer = Trainer(model, r, "cpu", 0, progress=False)
trainer.scheduler = r.scheduler(trainer.optimizer, len(train) // r.batch_size + 1)
times = []
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter(); trainer.train_epoch(train); times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def run(threads: int, policy: str | None, epochs: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "NCBENCH_THREADS")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", CHILD, root, str(threads), str(epochs)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--hogs", type=int, default=2)
    args = p.parse_args()
    configs = [(t, pol) for t in (1, 2) for pol in (None, "PASSIVE", "ACTIVE")]
    results = {}
    for hog in (False, True):
        hogs = []
        if hog:
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
            time.sleep(1)
        try:
            for t, pol in configs:
                load = os.getloadavg()[0]
                times = run(t, pol, args.epochs)
                results[(hog, t, pol)] = (sorted(times)[len(times) // 2], load)
                print(f"hog={hog} threads={t} OMP_WAIT_POLICY={pol or '(unset)'}: "
                      f"{', '.join(f'{x:.1f}' for x in times)} s/epoch (load {load:.1f})", flush=True)
        finally:
            for h in hogs:                 # stop our own hog, by PID
                h.kill()
                h.wait()
    quiet = results[(False, 1, None)][0]
    print("\n| hog | threads | OMP_WAIT_POLICY | s/epoch (median) | vs no hog, 1 thread | load at start |")
    print("|---|---|---|---|---|---|")
    for (hog, t, pol), (sec, load) in results.items():
        print(f"| {args.hogs if hog else 0} busy | {t} | {pol or '(unset)'} | {sec:.2f} | {sec / quiet:.2f} | {load:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
