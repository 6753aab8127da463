"""Replay memory cost: bytes per transition as allocated and as measured, and a run's peak memory.

    python benchmarks/memory.py                          # 1,000,000 transitions
    python benchmarks/memory.py --replay-size 200000 --run

It allocates the replay memory, writes every slot (so the pages are really resident), and
reports the growth of the process's resident memory divided by the number of transitions.
With --run it also runs ``dqnviz train`` with that --replay-size for a short random phase in a
child process and prints that process's peak resident memory (ru_maxrss).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil
from _timing import seconds_per_call


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replay-size", type=int, default=1_000_000)
    parser.add_argument("--prioritized", action="store_true")
    parser.add_argument("--run", action="store_true", help="also measure the peak memory of a short dqnviz train run")
    args = parser.parse_args()

    from dqnviz.replay import ReplayMemory, bytes_per_transition, check_fits_in_memory

    # The child run goes first: ru_maxrss of a child counts what it inherited before exec, so it
    # must not be forked from a process that already holds a filled replay memory.
    if args.run:
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "dqnviz", "train", "pong", "--replay-size", str(args.replay_size),
                       "--random-steps", "5000", "--train-steps", "1000", "--test-steps", "500", "--epochs", "1",
                       "--snapshot-dir", tmp, "--report-dir", tmp, "--quiet"]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            print(f"peak resident memory of `dqnviz train pong --replay-size {args.replay_size:,}` "
                  f"(short run, replay partly filled): {peak_kib / 2**20:.2f} GiB")
            print(f"  a full replay adds {args.replay_size * bytes_per_transition() / 2**30:.2f} GiB at most")

    check_fits_in_memory(args.replay_size, prioritized=args.prioritized)
    process = psutil.Process()
    before = process.memory_info().rss
    start = time.perf_counter()
    memory = ReplayMemory(args.replay_size, prioritized=args.prioritized)
    frame = np.random.default_rng(0).integers(0, 255, (1, 84, 84), dtype=np.uint8)
    for index in range(args.replay_size):
        memory.add(frame, [index % 4], [0.0], [index % 1000 == 999], [index % 1000 == 0])
    filled = process.memory_info().rss
    seconds = time.perf_counter() - start
    print(f"replay memory of {memory.capacity:,} transitions{' (prioritized)' if args.prioritized else ''}:")
    print(f"  allocated   {memory.nbytes / memory.capacity:8.1f} bytes per transition ({memory.nbytes / 2**30:.2f} GiB)")
    print(f"  by design   {bytes_per_transition(prioritized=args.prioritized):8.1f} bytes per transition")
    print(f"  measured    {(filled - before) / memory.capacity:8.1f} bytes per transition (resident growth after writing every slot)")
    print(f"  simple_dqn  {6.57 * 2**30 / 1e6:8.1f} bytes per transition (6.57 GiB per million)")
    print(f"  filling took {seconds:.1f} s ({memory.capacity / seconds:,.0f} adds/s)")
    print(f"  sampling a batch of 32 (states and next states stacked, contiguous): "
          f"{1e3 * seconds_per_call(lambda: memory.sample(32)):.2f} ms")
    # What the trainer draws per iteration of 64 environments (batch 64 every 8 agent steps), without
    # the frames (``--device-replay`` stacks them on the device): one call for all 8 batches.
    one_by_one = 1e3 * seconds_per_call(lambda: [memory.sample_transitions(64) for _ in range(8)])
    together = 1e3 * seconds_per_call(lambda: memory.sample_batches(64, 8))
    print(f"  8 batches of 64 without frames: {together:.2f} ms drawn together (sample_batches), "
          f"{one_by_one:.2f} ms one by one")


if __name__ == "__main__":
    main()
