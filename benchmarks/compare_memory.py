"""Peak memory of ``dqnviz compare`` as the number of snapshots grows (the evolution view of many
epochs is the large case): each count runs as its own ``python -m dqnviz compare`` process, whose
peak resident set size (the kernel's ``ru_maxrss``) and wall time are printed, then the memory
each further snapshot adds.

    KERAS_BACKEND=jax python benchmarks/compare_memory.py                 # the shipped agents
    python benchmarks/compare_memory.py --counts 2,4,8 a.keras b.keras …  # snapshots of your own

With no snapshots given it uses the shipped ones (snapshots/*.keras), each copied under two names
so that up to twice as many distinct files can be compared; every snapshot plays one whole game
(compare's default), so the figures include the states of real games.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def run_compare(paths, out) -> tuple[float, float, int]:
    """(peak resident MB, seconds, exit status) of one ``dqnviz compare`` of ``paths``; its
    stderr goes to a file (a pipe read only at the end could fill and stall it), whose last line
    is shown when the command fails."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([sys.executable, "-m", "dqnviz", "compare", *paths, "--out", out, "--quiet"],
                                   stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            errors.seek(0)
            lines = errors.read().decode(errors="replace").strip().splitlines()
            print(f"  exit {code}: {lines[-1] if lines else ''}", file=sys.stderr)
    return usage.ru_maxrss / 1024, time.perf_counter() - start, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("snapshots", nargs="*", help="snapshots to compare (default: the shipped ones, twice)")
    parser.add_argument("--counts", default="2,4,8", help="how many of them to compare, in turn (default 2,4,8)")
    options = parser.parse_args()
    counts = [int(c) for c in options.counts.split(",")]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory() as folder:
        paths = options.snapshots
        if not paths:
            shipped = sorted(glob.glob(os.path.join(ROOT, "snapshots", "*.keras")))
            paths = []
            for copy in ("a", "b"):
                for path in shipped:
                    paths.append(os.path.join(folder, f"{copy}-{os.path.basename(path)}"))
                    shutil.copyfile(path, paths[-1])
        left_out = [c for c in counts if not 2 <= c <= len(paths)]
        counts = [c for c in counts if 2 <= c <= len(paths)]
        if not counts:
            parser.error(f"--counts needs a count from 2 to {len(paths)}, the snapshots there are")
        if left_out:
            print(f"left out: {', '.join(map(str, left_out))} (from 2 to {len(paths)} snapshots)", file=sys.stderr)
        print(f"backend {os.environ.get('KERAS_BACKEND', 'tensorflow')}, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.1f}; one game per snapshot")
        rows, failed = [], False
        for count in counts:
            peak, seconds, code = run_compare(paths[:count], os.path.join(folder, f"compare-{count}.html"))
            if code == 0:
                rows.append((count, peak))
            failed |= code != 0
            print(f"compare {count:2d} snapshots: peak {peak:,.0f} MB, {seconds:.1f} s" + ("" if code == 0 else " (failed)"))
        if len(rows) > 1:  # from the runs that finished only
            (first, low), (last, high) = rows[0], rows[-1]
            print(f"each snapshot past {first} adds {(high - low) / (last - first):,.0f} MB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
