"""End-to-end speed and size of ``dqnviz nvis --filters all``, and how fast Chromium opens it.

    python benchmarks/nvis_speed.py                       # random-weight Breakout agent, one game
    python benchmarks/nvis_speed.py SNAPSHOT --games 1
    KERAS_BACKEND=jax python benchmarks/nvis_speed.py
    KERAS_BACKEND=jax python benchmarks/nvis_speed.py snapshots/pong-h100-10min_6.keras --no-browser   # no Chromium

Prints: seconds for the whole command in a fresh process (imports, model load, playing, all 160
filters of conv1..conv3, receptive fields, saliency, rendering), the time per phase, the report
size in MB, the Chromium page-load time (navigation start → load event, plus the first figures
in view drawn), and the time to draw every figure of the page. Targets: ≤ 60 s, ≤ 15 MB, ≤ 3 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))


def random_snapshot(folder, game="breakout"):
    from conftest import make_snapshot

    return str(make_snapshot(os.path.join(folder, f"{game}_1.keras"), game, 1))


def browser_times(path):
    """(page load s, all figures drawn s, figures, script errors) in headless Chromium."""
    from browser import all_plots_drawn, open_report

    with open_report(path) as check:
        page = check.page
        # a second, timed navigation (the first one started the browser)
        start = time.perf_counter()
        page.goto("file://" + os.path.abspath(path), wait_until="load")
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.dq-fig')).slice(0, 4)"
            ".every(el => el.querySelector('.js-plotly-plot svg.main-svg'))", timeout=30_000)
        load = time.perf_counter() - start
        navigation = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        start = time.perf_counter()
        figures = page.evaluate("dqnvizDrawAll()")
        draw_all = time.perf_counter() - start
        plots, drawn = all_plots_drawn(page)
        assert plots == drawn == figures, (plots, drawn, figures)
        return load, navigation / 1000, draw_all, figures, list(check.errors)


def _devices() -> str:
    """The accelerators the backend sees, in a child process (this one never imports Keras)."""
    probe = ("import keras; b = keras.config.backend()\n"
             "if b == 'jax':\n import jax; print(', '.join(sorted({d.device_kind for d in jax.devices()})))\n"
             "else:\n import tensorflow as tf; print(', '.join(d.name for d in tf.config.list_physical_devices('GPU')) or 'CPU')")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return result.stdout.strip() or "devices unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshot", nargs="?", help="a snapshot (default: a random-weight Breakout agent)")
    parser.add_argument("--games", type=int, default=1)
    parser.add_argument("--filters", default="all")
    parser.add_argument("--no-browser", action="store_true",
                        help="time the command only, not Chromium (a GPU machine has none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        snapshot = args.snapshot or random_snapshot(folder)
        out = os.path.join(folder, "report.html")
        command = [sys.executable, "-m", "dqnviz", "nvis", snapshot, "--filters", args.filters,
                   "--games", str(args.games), "--out", out, "--timings"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        load = os.getloadavg()[0]
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            return result.returncode
        phases = [line for line in result.stderr.splitlines() if line.startswith(("timings", "wrote"))]
        size = os.path.getsize(out) / 1e6
        backend = os.environ["KERAS_BACKEND"]
        print(f"nvis --filters {args.filters} --games {args.games} ({backend}, {os.cpu_count()} CPUs, "
              f"{_devices()})")
        for line in phases:
            print("  " + line)
        print(f"end to end      {seconds:6.1f} s   (target <= 60 s; CPU time {cpu:.1f} s, load average {load:.1f})")
        print(f"report size     {size:6.2f} MB  (target <= 15 MB)")
        if args.no_browser:
            return 0
        page_load, navigation, draw_all, figures, errors = browser_times(out)
        print(f"chromium load   {page_load:6.2f} s   (navigation→load event {navigation:.2f} s, first figures drawn; target <= 3 s)")
        print(f"draw all        {draw_all:6.2f} s   ({figures} figures, dqnvizDrawAll())")
        print(f"script errors   {len(errors)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
