"""The emulator's ceiling: agent steps/s with random actions, no network and no replay memory.

    python benchmarks/emulator.py                      # 1 env (both loops), then 16, 64, 128 envs
    python benchmarks/emulator.py --num-envs 1,256 --steps 20000

Whatever the learner and the accelerator do, training cannot step faster than this. With one
environment (the classic Nature loop) every agent step waits for the emulator to play
``frame_skip`` = 4 frames and for the network to choose the next action, one after the other,
so ``1 / (emulate + act)`` bounds it. With many, ale-py's C++ threads step the environments
together.

For one environment it times both loops: :class:`~dqnviz.atari.AtariEnv` (Python, what
``--num-envs 1`` trains with) and ale-py's C++ vector interface with a single environment, and
splits the Python loop's time into the emulator's ``act`` calls and our preprocessing.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def single_env(game: str, steps: int) -> dict:
    """Seconds per agent step of the Python loop, and how they split."""
    from dqnviz.atari import AtariEnv, resize_frame, resolve_rom

    env = AtariEnv(resolve_rom(game), seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    actions = rng.integers(0, env.num_actions, steps)
    start = time.perf_counter()
    for action in actions:
        if env.step(int(action)).game_over:
            env.reset()
    per_step = (time.perf_counter() - start) / steps

    # The emulator alone: frame_skip act() calls per agent step, restarting at game over.
    ale, ale_actions = env.ale, [env.actions[int(a)] for a in actions]
    ale.reset_game()
    start = time.perf_counter()
    for action in ale_actions:
        for _ in range(env.frame_skip):
            ale.act(action)
        if ale.game_over():
            ale.reset_game()
    emulator = (time.perf_counter() - start) / steps

    frame = ale.getScreenGrayscale()
    start = time.perf_counter()
    for _ in range(min(steps, 2000)):
        resize_frame(frame)
    resize = (time.perf_counter() - start) / min(steps, 2000)
    return {"per_step": per_step, "emulator": emulator, "resize": resize}


def vector_envs(game: str, num_envs: int, steps: int, threads: int = 0) -> float:
    """Agent steps/s of ale-py's C++ vector interface with ``num_envs`` environments."""
    from dqnviz.atari import VectorAtariEnv, resolve_rom

    env = VectorAtariEnv(resolve_rom(game), num_envs=num_envs, seed=0, num_threads=threads)
    env.reset()
    rng = np.random.default_rng(0)
    iterations = max(10, steps // num_envs)
    for _ in range(5):
        env.step(rng.integers(0, env.num_actions, num_envs))
    start = time.perf_counter()
    for _ in range(iterations):
        env.step(rng.integers(0, env.num_actions, num_envs))
    return iterations * num_envs / (time.perf_counter() - start)


def layout(num_envs: int, history: int = 4, repeats: int = 200) -> tuple[float, float]:
    """Seconds to turn one step's frames (N, history, 84, 84) into states (N, 84, 84, history):
    :func:`~dqnviz.atari.channels_last`, and numpy's contiguous copy of the transposed view."""
    from _timing import seconds_per_call

    from dqnviz.atari import channels_last

    frames = np.random.default_rng(0).integers(0, 256, (num_envs, history, 84, 84), dtype=np.uint8)
    return (seconds_per_call(lambda: channels_last(frames), repeats),
            seconds_per_call(lambda: np.ascontiguousarray(frames.transpose(0, 2, 3, 1)), repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="breakout")
    parser.add_argument("--num-envs", default="1,16,64,128", help="comma-separated environment counts")
    parser.add_argument("--steps", type=int, default=10_000, help="agent steps per configuration")
    args = parser.parse_args()

    print(f"{args.game}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, random actions")
    for num_envs in [int(n) for n in args.num_envs.split(",")]:
        if num_envs == 1:
            parts = single_env(args.game, args.steps)
            other = parts["per_step"] - parts["emulator"] - parts["resize"]
            print(f"1 env, Python loop (AtariEnv): {1 / parts['per_step']:,.0f} agent steps/s, "
                  f"{1e3 * parts['per_step']:.3f} ms per step = emulator {1e3 * parts['emulator']:.3f} "
                  f"+ resize {1e3 * parts['resize']:.3f} + rest {1e3 * other:.3f}")
            rate = vector_envs(args.game, 1, args.steps, threads=1)
            print(f"1 env, C++ vector interface: {rate:,.0f} agent steps/s ({1e3 / rate:.3f} ms per step)")
        else:
            threads = min(num_envs, os.cpu_count() or 1)  # the ceiling: every core emulates
            rate = vector_envs(args.game, num_envs, args.steps, threads=threads)
            print(f"{num_envs} envs, C++ vector interface, {threads} threads: "
                  f"{rate:,.0f} agent steps/s")
            ours, numpy_copy = layout(num_envs)
            print(f"  of which laying the states out channels last: {1e3 * ours:.3f} ms per iteration "
                  f"({1e3 * numpy_copy:.3f} ms as numpy's transposed copy)")


if __name__ == "__main__":
    main()
