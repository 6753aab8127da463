"""Training-phase throughput: agent steps/s, learner updates/s, and where the time goes.

    KERAS_BACKEND=jax python benchmarks/throughput.py                 # classic (1 env) and 8 envs
    KERAS_BACKEND=tensorflow python benchmarks/throughput.py --num-envs 1 --steps 4000

Each configuration fills the replay memory with random play, then times a train phase at the
standard replay ratio (one batch-32 update per 4 agent steps: 8 sampled transitions per step),
at a fixed exploration rate ε (``--epsilon``, default 0.1: the Nature run's ε after its decay, for
49 M of its 50 M agent steps). ε matters with one environment: a step whose action is random
skips the network's forward pass.
A first, untimed train phase compiles the step. The profiles (``--profile``):
``serial`` waits for every iteration's updates where they are dispatched, so that each part's cost
(act, emulate, replay, sample, learn) is its own, the overlap of learning and emulation given up;
``overlapped`` leaves the loop as it runs and says where the host waits: ``emulate`` is sending
the actions plus waiting for the emulators, ``learn`` dispatching the updates plus waiting for
their results. Where the two agree, nothing overlaps; the serial sum minus the overlapped total
is what the overlap saves. The overlapped profile costs only a clock read per part, so its run is
also the one whose agent steps/s are printed; the serial profile takes a run of its own.

``--count-transfers`` (JAX) counts the host-to-device transfers per iteration of a train phase,
from JAX's transfer guard: on a GPU each costs a round of driver work, whatever its size.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

# TrainConfig fields that shape the learning step, given with train's own flags (--prioritized,
# --double, --dueling, --n-step) and --emulator-threads
RECIPE = ("prioritized", "double", "dueling", "n_step", "emulator_threads")

# Quiet C++ logs, except the transfer guard's warnings when they are counted.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if "--count-transfers" in sys.argv else "3")


def count_transfers(run, iterations: int) -> float:
    """Host-to-device transfers per iteration while ``run()`` plays ``iterations`` iterations."""
    import jax

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+") as log:
        os.dup2(log.fileno(), 2)  # the guard logs from C++, to the process's stderr
        try:
            with jax.transfer_guard_host_to_device("log"):
                run()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        transfers = sum("host-to-device transfer" in line for line in log)
    return transfers / iterations


@contextlib.contextmanager
def warm_trainer(game: str, num_envs: int, warmup: int, replay_size: int, batch_size: int,
                 train_frequency: int, profile: bool | str, seed: int = 0, device_replay: bool = False,
                 epsilon: float = 0.1, recipe: dict | None = None):
    """A trainer whose replay memory holds ``warmup`` random steps and whose step is compiled;
    ``recipe`` holds further :class:`~dqnviz.config.TrainConfig` fields (see ``RECIPE``)."""
    from dqnviz.atari import resolve_rom
    from dqnviz.config import TrainConfig
    from dqnviz.trainer import Trainer

    config = TrainConfig(num_envs=num_envs, replay_size=replay_size, batch_size=batch_size,
                         train_frequency=train_frequency, seed=seed, validation_states=32,
                         device_replay=device_replay, epsilon_start=epsilon, epsilon_end=epsilon, **(recipe or {}))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(resolve_rom(game), config, run="bench", snapshot_dir=tmp, report_dir=tmp,
                          show_progress=False, log=lambda *_: None, profile=profile)
        trainer.started = time.perf_counter()
        trainer.run_phase(0, "random", max(warmup, 4 * batch_size))
        trainer.run_phase(1, "train", max(200, 16 * num_envs))  # compile, warm caches
        yield trainer


def measure(steps: int, **options) -> tuple[float, float, dict, float]:
    """``(agent steps/s, updates/s, seconds per part, seconds)`` of a ``steps``-step train phase."""
    with warm_trainer(**options) as trainer:
        updates_before = trainer.learner.updates
        start = time.perf_counter()
        stats = trainer.run_phase(1, "train", steps)
        seconds = time.perf_counter() - start
        updates = trainer.learner.updates - updates_before
        return stats.steps / seconds, updates / seconds, dict(trainer.timer.seconds), seconds


def measure_transfers(**options) -> float:
    """Host-to-device transfers per iteration of a train phase (JAX)."""
    with warm_trainer(**options) as trainer:
        iterations = max(16, options["train_frequency"] // options["num_envs"] * 16)
        return count_transfers(lambda: trainer.run_phase(1, "train", iterations * options["num_envs"]), iterations)


def main():
    from dqnviz.config import add_config_arguments

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="breakout")
    parser.add_argument("--num-envs", default="1,8", help="comma-separated environment counts")
    parser.add_argument("--steps", type=int, default=3000, help="timed agent steps per configuration")
    parser.add_argument("--warmup", type=int, default=2000, help="random steps that fill the replay memory first")
    parser.add_argument("--replay-size", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-frequency", type=int, default=4)
    parser.add_argument("--device-replay", action="store_true", help="keep replay frames on the accelerator")
    parser.add_argument("--epsilon", type=float, default=0.1, help="exploration rate during the timed phase")
    add_config_arguments(parser, only=RECIPE)  # the learning recipe, with train's own flags and checks
    parser.add_argument("--profile", choices=["serial", "overlapped", "both", "none"], default="serial",
                        help="the per-part breakdown: serial (every update waited for), overlapped "
                             "(where the running loop waits), both, or none (default: serial)")
    parser.add_argument("--no-profile", action="store_const", dest="profile", const="none",
                        help="the same as --profile none")
    parser.add_argument("--count-transfers", action="store_true",
                        help="JAX: also count host-to-device transfers per iteration")
    args = parser.parse_args()

    from _timing import print_machine

    from dqnviz.atari import default_emulator_threads
    from dqnviz.progress import plural

    print_machine()
    print(f"replay ratio: batch {args.batch_size} every {args.train_frequency} agent steps "
          f"= {args.batch_size / args.train_frequency:g} sampled transitions per step; ε = {args.epsilon:g}")
    recipe = {name: getattr(args, name) for name in RECIPE if getattr(args, name) is not None}
    if recipe:
        print("recipe:", ", ".join(f"{name} {value}" for name, value in recipe.items()))
    for num_envs in [int(n) for n in args.num_envs.split(",")]:
        options = dict(game=args.game, num_envs=num_envs, warmup=args.warmup, replay_size=args.replay_size,
                       batch_size=args.batch_size, train_frequency=args.train_frequency,
                       device_replay=args.device_replay, epsilon=args.epsilon, recipe=recipe)
        # The overlapped profile only times the loop as it runs (a clock read per part), so its run
        # is the throughput run too; the serial profile waits for the device and needs its own.
        overlapped = args.profile in ("overlapped", "both")
        rate, update_rate, parts, seconds = measure(args.steps, profile="overlapped" if overlapped else False, **options)
        threads = (recipe.get("emulator_threads") or default_emulator_threads(num_envs)) if num_envs > 1 else 0
        threads = f", {threads} emulator {plural('thread', threads)}" if threads else ""
        print(f"\n{args.game}, {num_envs} env(s){threads}: {rate:,.0f} agent steps/s, {update_rate:,.1f} updates/s "
              f"({args.steps:,} steps in {seconds:.1f} s)")
        if args.count_transfers:
            per_iteration = measure_transfers(profile=False, **options)
            print(f"  host-to-device transfers: {per_iteration:.1f} per iteration of {num_envs} agent steps")
        if overlapped:
            print_profile("overlapped", parts, seconds, args.steps, num_envs)
        if args.profile in ("serial", "both"):
            _, _, parts, total = measure(args.steps, profile="serial", **options)
            print_profile("serial", parts, total, args.steps, num_envs)


def print_profile(mode: str, parts: dict, total: float, steps: int, num_envs: int) -> None:
    """Each part's share of the timed phase, per iteration and per agent step."""
    other = total - sum(parts.values())
    print({"serial": "  share of time (serial profile: every update waited for):",
           "overlapped": "  where the loop waits (overlapped profile: emulate = send + wait for the "
                         "emulators, learn = dispatch + wait for the device):"}[mode])
    iterations = steps / num_envs
    for name, value in sorted({**parts, "other": other}.items(), key=lambda kv: -kv[1]):
        print(f"    {name:8s} {100 * value / total:5.1f}%  {1e3 * value / iterations:7.3f} ms per iteration"
              f"  {1e6 * value / steps:8.1f} µs per agent step")
    print(f"    total    {1e3 * total / iterations:7.3f} ms per iteration = {steps / total:,.0f} agent steps/s")
    if mode == "serial":
        # Replay bookkeeping, sampling and the loop itself stay on the host whatever the device:
        # they bound the agent steps/s that a faster learner and emulator could reach.
        host = parts.get("replay", 0.0) + parts.get("sample", 0.0) + max(other, 0.0)
        if host > 0:
            print(f"  host-side ceiling (replay + sample + loop only): {steps / host:,.0f} agent steps/s")


if __name__ == "__main__":
    main()
