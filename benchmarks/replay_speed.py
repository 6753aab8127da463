"""The replay memory's host work per training iteration: what the loop spends in numpy each step.

    python benchmarks/replay_speed.py                      # the Pong recipe's memory on a GPU
    python benchmarks/replay_speed.py --envs 8 --replay-size 200000 --uniform

An iteration of n environments adds n transitions (``add``: the frames, and with prioritized
replay the sum-tree leaves that become or stop being sampleable), draws n · 8 / B batches of B
for the standard ratio of 8 sampled transitions per step (``sample``: the sum-tree walk, the
frame windows, n-step returns, importance weights), and with prioritized replay writes the
batches' |δ| back (``priorities``). On the GPU these run on the loop's thread between the
device's calls (``sample`` and ``replay`` in ``benchmarks/throughput.py``'s profile), so each
millisecond here is one the loop is not emulating or launching updates.

The memory is filled first (every slot written once), so the tree's walks have their full depth.
No Keras backend is used: the frames stay in host memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=128, help="environments adding a transition each per iteration")
    parser.add_argument("--replay-size", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-step", type=int, default=3)
    parser.add_argument("--uniform", action="store_true", help="uniform replay instead of prioritized")
    parser.add_argument("--iterations", type=int, default=500)
    args = parser.parse_args()

    from dqnviz.replay import ReplayMemory

    prioritized = not args.uniform
    memory = ReplayMemory(args.replay_size, num_envs=args.envs, n_step=args.n_step, prioritized=prioritized, seed=0)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (args.envs, 84, 84), np.uint8)
    batches = max(1, args.envs * 8 // args.batch_size)  # the standard ratio: 8 sampled per step

    def add():
        memory.add(frames, rng.integers(0, 6, args.envs), rng.choice([-1.0, 0.0, 1.0], args.envs),
                   rng.random(args.envs) < 0.001, rng.random(args.envs) < 0.001)

    for _ in range(memory.per_env + args.n_step + 4):
        add()
    seconds = {"add": 0.0, "sample": 0.0, "priorities": 0.0}
    for _ in range(args.iterations):
        start = time.perf_counter()
        add()
        added = time.perf_counter()
        drawn = memory.sample_batches(args.batch_size, batches, beta=0.5)
        sampled = time.perf_counter()
        if prioritized:
            memory.update_priorities(np.concatenate([b["envs"] for b in drawn]),
                                     np.concatenate([b["slots"] for b in drawn]),
                                     rng.exponential(0.5, batches * args.batch_size))
        seconds["add"] += added - start
        seconds["sample"] += sampled - added
        seconds["priorities"] += time.perf_counter() - sampled

    print(f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, numpy {np.__version__}")
    print(f"{'prioritized' if prioritized else 'uniform'} replay of {memory.capacity:,} transitions, "
          f"{args.envs} environments, {batches} batches of {args.batch_size} per iteration, "
          f"{args.n_step}-step returns; mean of {args.iterations} iterations")
    total = sum(seconds.values())
    for name, value in seconds.items():
        if value or name != "priorities":
            print(f"  {name:<11}{value / args.iterations * 1e3:7.3f} ms per iteration")
    print(f"  {'total':<11}{total / args.iterations * 1e3:7.3f} ms per iteration "
          f"= {total / args.iterations / args.envs * 1e6:.1f} µs per agent step")


if __name__ == "__main__":
    main()
