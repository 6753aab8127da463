"""Does it learn? Train for a wall-clock budget, then evaluate with the Nature protocol.

    KERAS_BACKEND=jax python benchmarks/learning.py pong --minutes 10 -- --num-envs 64 --device-replay
    python benchmarks/learning.py breakout --minutes 28 --episodes 30 -- --double --dueling

Everything after ``--`` goes to ``dqnviz train``. When the budget runs out the run is stopped
with Ctrl-C (it saves ``<run>_<epoch>_interrupted.keras``, the weights at the end of the budget);
the newest snapshot, that one included, is then tested with ``dqnviz test`` (30 episodes, ε = 0.05,
18,000-frame cap; one row per episode in ``<snapshot>_test.csv`` beside it), unless ``--no-test``.
Prints the learning curve (test rows of the CSV) and the final line of ``dqnviz test``, next to
the Nature paper's score.
"""

from __future__ import annotations

import argparse
import csv
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NATURE = {"pong": 18.9, "breakout": 401.2, "space_invaders": 1976.0, "seaquest": 5286.0, "enduro": 301.8}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("game")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget")
    parser.add_argument("--episodes", type=int, default=30, help="test episodes (Nature: 30)")
    parser.add_argument("--out", default=None, help="folder for snapshots and the CSV (default: a temporary one)")
    parser.add_argument("--no-test", action="store_true",
                        help="skip the Nature test (on a leased GPU: test the snapshot elsewhere, where time is free)")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    extra = argv[split + 1:]  # options for dqnviz train
    folder = Path(args.out or tempfile.mkdtemp(prefix="dqnviz-learning-"))
    command = [sys.executable, "-m", "dqnviz", "train", args.game, "--snapshot-dir", str(folder),
               "--report-dir", str(folder), "--quiet", *extra]
    print("running:", " ".join(command), flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command)
    try:
        process.wait(timeout=args.minutes * 60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        process.wait()
    minutes = (time.perf_counter() - start) / 60
    csv_files = sorted(folder.glob("*.csv"))
    if not csv_files:
        sys.exit("no statistics were written")
    with open(csv_files[0], newline="") as f:
        rows = list(csv.DictReader(f))
    print(f"\ntrained {minutes:.1f} min; test phases (epoch, steps so far, average reward):")
    for row in rows:
        if row["phase"] == "test":
            print(f"  epoch {row['epoch']:>3}  {int(row['total_train_steps']):>10,} train steps  {float(row['average_reward']):8.2f}")
    snapshots = sorted(folder.glob("*.keras"), key=lambda p: p.stat().st_mtime)
    if not snapshots:
        sys.exit(f"no snapshot was written in {minutes:.1f} min: the budget ended before the first train phase")
    chosen = snapshots[-1]  # the weights at the end of the budget
    if args.no_test:
        print(f"\nnot tested (--no-test): dqnviz test {chosen}")
        return
    print(f"\ntesting {chosen} ({args.episodes} episodes, Nature protocol):", flush=True)
    result = subprocess.run([sys.executable, "-m", "dqnviz", "test", str(chosen), "--episodes", str(args.episodes),
                             "--csv", str(chosen.with_name(chosen.stem + "_test.csv")), "--quiet"],
                            capture_output=True, text=True)
    print(result.stdout.strip() or result.stderr.strip())
    if args.game in NATURE:
        print(f"Nature paper (Mnih et al. 2015): {NATURE[args.game]}")


if __name__ == "__main__":
    main()
