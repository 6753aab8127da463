"""How long ``dqnviz compare`` takes for two snapshots with 8 filters per layer (target ≤ 90 s).

    KERAS_BACKEND=tensorflow python benchmarks/compare_speed.py [--max-steps N]

Two random-weight Nature-CNN snapshots (breakout and pong, as in the tests) are written to a
temporary folder and compared with the default options (1 game each, 8 filters per layer) unless
--max-steps is given. Prints the wall time of the whole command and of its parts.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", default=None)
    parser.add_argument("--filters", default="8")
    options = parser.parse_args()
    import keras

    from tests.conftest import make_snapshot
    from tests.helpers import run_cli

    with tempfile.TemporaryDirectory() as folder:
        a = str(make_snapshot(os.path.join(folder, "breakout_1.keras"), "breakout", 1))
        b = str(make_snapshot(os.path.join(folder, "pong_2.keras"), "pong", 2, seed=1))
        out = os.path.join(folder, "compare.html")
        argv = ["compare", a, b, "--filters", options.filters, "--out", out, "--quiet"]
        if options.max_steps:
            argv += ["--max-steps", options.max_steps]
        start = time.perf_counter()
        code = run_cli(argv)
        elapsed = time.perf_counter() - start
        size = os.path.getsize(out) / 1e6 if os.path.exists(out) else 0
    print(f"compare 2 snapshots, {options.filters} filters per layer, backend {keras.config.backend()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}: {elapsed:.1f} s "
          f"(exit {code}, page {size:.1f} MB; target <= 90 s)")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
