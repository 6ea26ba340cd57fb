"""Speed and memory of the collapse metric engine (run with `pytest --benchmark-only`).

(a) streaming engine vs the naive stored-feature float64 reference, N=50,000, d=512, K=100;
(b) per-batch `update` cost as a fraction of a timm resnet18 forward pass (CPU, 32×32, batch 256);
(c) K=1,000, d=2,048, N=100,000 streamed in batches of 1,024 generated on the fly: time and the
    peak-RSS growth beyond one batch (subprocess, `resource.getrusage`; the issue's ceiling 4 GiB).
Figures go to `benchmark.extra_info` and are printed (`-s` to see them).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from reference_nc import collapse_reference

from ncbench.metrics import CollapseStats, collapse_metrics

ROOT = Path(__file__).resolve().parents[2]


def _features(N: int, d: int, K: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(K, d, generator=g) * 0.5
    y = torch.randint(0, K, (N,), generator=g)
    return centres[y] + torch.randn(N, d, generator=g), y


def test_bench_engine_vs_reference(benchmark):
    N, d, K = 50_000, 512, 100
    H, y = _features(N, d, K)
    W = torch.randn(K, d, generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    ref = collapse_reference(H.double().numpy(), y.numpy(), K, W.double().numpy())
    t_ref = time.perf_counter() - t0
    got = benchmark.pedantic(collapse_metrics, args=(H, y, W), rounds=3, iterations=1, warmup_rounds=0)
    t_engine = benchmark.stats.stats.mean
    for k in ("nc1", "nc1_quotient", "cdnv", "nc3", "etf_error_h"):
        assert got[k] == pytest.approx(ref[k], rel=1e-9), k
    assert abs(got["ncc_acc"] - ref["ncc_acc"]) <= ref["ncc_ties"] / N
    benchmark.extra_info.update(reference_s=t_ref, engine_s=t_engine, speedup=t_ref / t_engine)
    print(f"\n[a] N={N} d={d} K={K}: reference {t_ref:.2f} s, engine {t_engine:.2f} s, "
          f"speed-up x{t_ref / t_engine:.1f}")


def test_bench_update_vs_resnet18_forward(benchmark):
    timm = pytest.importorskip("timm")
    K, B = 100, 256
    model = timm.create_model("resnet18", num_classes=K).eval()
    x = torch.randn(B, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, K, (B,), generator=torch.Generator().manual_seed(1))

    def forward():
        with torch.no_grad():
            feats = model.forward_head(model.forward_features(x), pre_logits=True)
            return feats, model.get_classifier()(feats)

    feats, logits = forward()
    assert feats.shape == (B, 512)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        forward()
        times.append(time.perf_counter() - t0)
    t_fwd = float(np.median(times))

    stats = CollapseStats(K, 512)
    for _ in range(4):                       # a state that has seen data (all classes present)
        stats.update(feats, y)
    benchmark.pedantic(stats.update, args=(feats, y), rounds=20, iterations=1, warmup_rounds=2)
    t_update = benchmark.stats.stats.median
    second = stats.second_pass(model.get_classifier().weight, model.get_classifier().bias)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        second.update(feats, y, logits)
        times.append(time.perf_counter() - t0)
    t_second = float(np.median(times))
    benchmark.extra_info.update(forward_s=t_fwd, update_s=t_update, second_update_s=t_second,
                                update_fraction=t_update / t_fwd, second_fraction=t_second / t_fwd)
    print(f"\n[b] resnet18 forward (B={B}, 32x32, CPU) {t_fwd * 1e3:.1f} ms; pass-one update "
          f"{t_update * 1e3:.2f} ms = {100 * t_update / t_fwd:.1f}% (target <= 10%); pass-two update "
          f"{t_second * 1e3:.2f} ms = {100 * t_second / t_fwd:.1f}%")


LARGE_K_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    import torch
    sys.path.insert(0, sys.argv[1])
    from ncbench.metrics import CollapseStats

    K, d, N, B = 1000, 2048, 100_000, 1024
    centres = torch.randn(K, d, generator=torch.Generator().manual_seed(0)) * 0.2

    def batch(i):                          # generated on the fly, identical in both passes
        g = torch.Generator().manual_seed(1000 + i)
        n = min(B, N - i * B)
        y = torch.randint(0, K, (n,), generator=g)
        return centres[y] + torch.randn(n, d, generator=g), y

    nb = (N + B - 1) // B
    x, y = batch(0)                        # baseline: interpreter, torch, one batch
    kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    base = kib()
    t0 = time.perf_counter()
    stats = CollapseStats(K, d)
    for i in range(nb):
        stats.update(*batch(i))
    t1 = time.perf_counter()
    second = stats.second_pass()
    for i in range(nb):
        second.update(*batch(i))
    t2 = time.perf_counter()
    res = stats.compute(second)
    t3 = time.perf_counter()
    print(json.dumps(dict(pass_one_s=t1 - t0, pass_two_s=t2 - t1, compute_s=t3 - t2, total_s=t3 - t0,
                          base_rss_mib=base / 1024, peak_rss_mib=kib() / 1024,
                          growth_mib=(kib() - base) / 1024, n=stats.n,
                          nc1=res.metrics["nc1"], ncc_acc=res.metrics["ncc_acc"])))
""")


def test_bench_large_k_streaming_memory(benchmark):
    def run():
        out = subprocess.run([sys.executable, "-c", LARGE_K_SCRIPT, str(ROOT)], capture_output=True,
                             text=True, check=True, timeout=1800)
        return json.loads(out.stdout.strip().splitlines()[-1])

    info = benchmark.pedantic(run, rounds=1, iterations=1)
    assert info["n"] == 100_000 and math.isfinite(info["nc1"])
    benchmark.extra_info.update(info)
    print(f"\n[c] K=1000 d=2048 N=100000 (B=1024): pass one {info['pass_one_s']:.1f} s, pass two "
          f"{info['pass_two_s']:.1f} s, compute {info['compute_s']:.1f} s; peak RSS growth beyond one "
          f"batch {info['growth_mib']:.0f} MiB (limit 4096 MiB)")
    assert info["growth_mib"] <= 4096
