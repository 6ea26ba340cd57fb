"""Seconds per training epoch of the default suite's shared run (test_resnet on MNIST-5k) against the
torch thread count and the OpenMP wait policy, with and without a CPU hog of our own.

    python scripts/thread_cliff.py [--epochs 3] [--hogs 2] [--threads 1 2] [--policies unset PASSIVE ACTIVE]
                                   [--rounds 1]

Each configuration runs in a fresh interpreter (the wait policy is read when torch loads OpenMP);
the hog is `--hogs` busy Python processes started here in a session of their own and stopped by
their PIDs; `--rounds` repeats
the no-hog / hog pair, so that a changing background load hits both. Prints a table of the median
epoch time and its ratio to the first configuration without the hog.
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
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--policies", nargs="+", default=["unset", "PASSIVE", "ACTIVE"])
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    configs = [(t, None if pol == "unset" else pol) for t in args.threads for pol in args.policies]
    results: dict = {}
    for hog in (False, True) * args.rounds:
        hogs = []
        if hog:
            # own session: under autogroup scheduling, hogs in this session would share its CPU
            # slice with the measured epoch (see scripts/loaded_epoch.py `hogs`)
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
                    for _ in range(args.hogs)]
            time.sleep(1)
        try:
            for t, pol in configs:
                load = os.getloadavg()[0]
                times = run(t, pol, args.epochs)
                results.setdefault((hog, t, pol), []).append((sorted(times)[len(times) // 2], load))
                print(f"hog={hog} threads={t} OMP_WAIT_POLICY={pol or '(unset)'}: "
                      f"{', '.join(f'{x:.1f}' for x in times)} s/epoch (load {load:.1f})", flush=True)
        finally:
            for h in hogs:                 # stop our own hog, by PID
                h.kill()
                h.wait()
    def median(runs):
        return sorted(r[0] for r in runs)[len(runs) // 2]

    quiet = median(results[(False, *configs[0])])
    print(f"\n| hog | threads | OMP_WAIT_POLICY | s/epoch (median of rounds) | vs no hog, {configs[0][0]} "
          "thread(s) | load at the starts |")
    print("|---|---|---|---|---|---|")
    for (hog, t, pol), runs in results.items():
        loads = ", ".join(f"{r[1]:.1f}" for r in runs)
        print(f"| {args.hogs if hog else 0} busy | {t} | {pol or '(unset)'} | {median(runs):.2f} | "
              f"{median(runs) / quiet:.2f} | {loads} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
