"""Speed of the vectorised few-shot evaluator vs learn2learn's task loop (`--benchmark-only`).

600 five-way five-shot 15-query episodes on cached features (20 classes × 100 samples × 512-d),
one torch thread for both sides:
- ncbench: `sample_episodes` + `ncc_accuracy` (on CPU the fused numba kernel of
  `ncbench.fewshot.ncc_kernel`; its batched torch path, the CUDA one, is timed beside it);
- learn2learn: `ncc_accuracy_learn2learn`, a loop over `Taskset` tasks (NWays, KShots(k+q),
  LoadData, RemapLabels), NCC on each task's features — the same work, episode by episode.
Both sides are first run on the *same* learn2learn episodes and must give the same per-episode
accuracies. The speed ratio (target ≥ 20×) goes to `benchmark.extra_info` and the ratio table.
"""
from __future__ import annotations

import time

import pytest
import torch

from ncbench.fewshot import ncc_accuracy, sample_episodes

N_WAY, K_SHOT, N_QUERY, EPISODES = 5, 5, 15, 600


@pytest.fixture(scope="module")
def cached_features():
    g = torch.Generator().manual_seed(0)
    C, m, d = 20, 100, 512
    labels = torch.arange(C).repeat_interleave(m)
    x = 0.2 * torch.randn(C, d, generator=g)[labels] + torch.randn(C * m, d, generator=g)
    return x, labels


def _vectorised(x, labels):
    return ncc_accuracy(x, sample_episodes(labels, N_WAY, K_SHOT, N_QUERY, EPISODES, seed=0))


def _best_of(fn, rounds: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(rounds):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def test_bench_fewshot_vectorised_vs_learn2learn(benchmark, cached_features, one_thread, ratio_table):
    pytest.importorskip("learn2learn", reason="no learn2learn: run scripts/install-learn2learn.sh")
    from ncbench.fewshot.learn2learn_sampler import (
        ncc_accuracy_learn2learn,
        sample_episodes_learn2learn,
    )

    x, labels = cached_features
    same = sample_episodes_learn2learn(labels, N_WAY, K_SHOT, N_QUERY, EPISODES, seed=0)
    assert torch.equal(ncc_accuracy(x, same),
                       ncc_accuracy_learn2learn(x, labels, N_WAY, K_SHOT, N_QUERY, EPISODES, seed=0))

    def l2l():
        return ncc_accuracy_learn2learn(x, labels, N_WAY, K_SHOT, N_QUERY, EPISODES, seed=0)

    acc_l2l = l2l()  # warm-up (first Taskset build)
    acc = benchmark.pedantic(_vectorised, args=(x, labels), rounds=20, iterations=1,
                             warmup_rounds=2)
    # The ratio from interleaved rounds (one learn2learn run, then the best of 5 vectorised runs)
    # so that a shared machine's changing load hits both sides alike; the median round is kept.
    # Also on process CPU time, which waiting for a busy core does not inflate.
    rounds, cpu_rounds = [], []
    for _ in range(5):
        for clock, out in ((time.perf_counter, rounds), (time.process_time, cpu_rounds)):
            t_l2l = _best_of(l2l, 1, clock)
            out.append((t_l2l / _best_of(lambda: _vectorised(x, labels), 5, clock), t_l2l))
    ratio, t_l2l = sorted(rounds)[len(rounds) // 2]
    ratio_cpu = sorted(cpu_rounds)[len(cpu_rounds) // 2][0]
    ep = sample_episodes(labels, N_WAY, K_SHOT, N_QUERY, EPISODES, seed=0)
    t_eval = _best_of(lambda: ncc_accuracy(x, ep), 10)
    assert torch.equal(ncc_accuracy(x, ep, backend="torch"), ncc_accuracy(x, ep))
    t_torch = _best_of(lambda: ncc_accuracy(x, ep, backend="torch"), 10)
    t_sample = _best_of(lambda: sample_episodes(labels, N_WAY, K_SHOT, N_QUERY, EPISODES), 10)
    t_vec = t_l2l / ratio
    benchmark.extra_info.update(learn2learn_s=t_l2l, vectorised_s=t_vec, evaluate_only_s=t_eval,
                                sample_only_s=t_sample, evaluate_torch_path_s=t_torch,
                                speed_ratio=ratio,
                                speed_ratio_rounds=[r for r, _ in rounds],
                                speed_ratio_cpu_time=ratio_cpu,
                                acc_vectorised=float(acc.mean()),
                                acc_learn2learn=float(acc_l2l.mean()))
    ratio_table.add(benchmark, "learn2learn Taskset loop, 600 episodes", "vectorised sample + NCC", ratio, ">= 20")
    ratio_table.add(benchmark, "same, on process CPU time", "vectorised sample + NCC", ratio_cpu, ">= 20")
    ratio_table.add(benchmark, "batched torch NCC (the CUDA path), evaluate only", "fused CPU kernel",
                    t_torch / t_eval, "")
    print(f"\n{EPISODES} episodes {N_WAY}-way {K_SHOT}-shot {N_QUERY}-query, 2000×512 features: "
          f"learn2learn loop {t_l2l * 1e3:.0f} ms, ncbench {t_vec * 1e3:.1f} ms "
          f"(sample {t_sample * 1e3:.1f} + evaluate {t_eval * 1e3:.1f}; torch path "
          f"{t_torch * 1e3:.1f}); speed ratio x{ratio:.1f} "
          f"(rounds: {', '.join(f'{r:.1f}' for r, _ in rounds)}; on CPU time x{ratio_cpu:.1f}); "
          f"accuracy "
          f"{float(acc.mean()):.4f} vs {float(acc_l2l.mean()):.4f}")
