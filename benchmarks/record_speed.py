"""How fast ``dqnviz record`` renders and encodes, in video frames (emulator frames) per second.

    python benchmarks/record_speed.py                      # random-weight Breakout agent
    python benchmarks/record_speed.py SNAPSHOT --frames 3000
    KERAS_BACKEND=jax python benchmarks/record_speed.py

Real time is 60 frames/s (15 agent steps/s, one saliency map per agent step). Prints one line per
configuration: without saliency, with gradient saliency, and gradient saliency without encoding
(to separate the network + drawing from ffmpeg).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def random_snapshot(folder, game="breakout"):
    from dqnviz.atari import AtariEnv, resolve_rom
    from dqnviz.config import TrainConfig
    from dqnviz.network import build_q_network
    from dqnviz.snapshot import save_snapshot
    from dqnviz.resume import snapshot_meta

    rom = resolve_rom(game)
    env = AtariEnv(rom, seed=0)
    model = build_q_network(env.num_actions, seed=0)
    meta = snapshot_meta(rom, env, TrainConfig(seed=0), run=game, epoch=1, total_steps=1000,
                         test_score={"average": 0.0, "std": 0.0, "min": 0.0, "max": 0.0, "episodes": 1})
    return save_snapshot(os.path.join(folder, f"{game}_bench.keras"), model, meta)


class NullWriter:
    frames = 0

    def write(self, frame):
        self.frames += 1


def measure(snapshot, frames, saliency, encode, folder, warmup=64):
    from dqnviz.commands.record import Recorder, VideoWriter

    # Warm up (compilation, ffmpeg start) on a separate recorder, then time a fresh one.
    Recorder(snapshot, saliency=saliency, max_frames=warmup).play(1, NullWriter())
    recorder = Recorder(snapshot, saliency=saliency, max_frames=frames, epsilon=0.05)
    path = os.path.join(folder, "bench.mp4")
    start = time.perf_counter()
    if encode:
        with VideoWriter(path, recorder.size) as writer:
            recorder.play(1, writer)
    else:
        recorder.play(1, NullWriter())
    elapsed = time.perf_counter() - start
    return recorder.frames_written, elapsed, recorder.size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("snapshot", nargs="?", help="a snapshot (default: a random-weight Breakout agent)")
    parser.add_argument("--frames", type=int, default=2400, help="emulator frames to record (default 2400 = 40 s)")
    args = parser.parse_args(argv)

    import keras

    from dqnviz.snapshot import load_snapshot

    with tempfile.TemporaryDirectory() as folder:
        snapshot = load_snapshot(args.snapshot or random_snapshot(folder))
        print(f"backend {keras.config.backend()}, {os.cpu_count()} CPUs, {snapshot.name}, {args.frames} frames")
        for label, saliency, encode in [
            ("no saliency, H.264", None, True),
            ("gradient saliency, H.264", "gradient", True),
            ("gradient saliency, no encoding", "gradient", False),
        ]:
            frames, elapsed, size = measure(snapshot, args.frames, saliency, encode, folder)
            fps = frames / elapsed
            print(f"{label:32s} {size[0]}x{size[1]}  {fps:7.1f} frames/s  ({fps / 60:.2f}x real time, "
                  f"{fps / 4:.1f} agent steps/s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
