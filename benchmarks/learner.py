"""The learner alone: how long one iteration's updates take to dispatch, and to finish.

    KERAS_BACKEND=jax python benchmarks/learner.py                       # 64 envs' worth: 8 × batch 64
    KERAS_BACKEND=jax python benchmarks/learner.py --calls 8x64,2x256,16x32
    DQNVIZ_FEWER_PASSES=0 KERAS_BACKEND=jax python benchmarks/learner.py   # A/B (see backend/jax.py)

No emulator and no loop: a replay memory of random frames (on the device, the default under JAX;
``--host-replay`` keeps them on the host) and the compiled update, called as the trainer calls it,
``K`` batches per call. For each (K, batch size) it prints

* ``dispatch``: host time until the call returns (JAX dispatches asynchronously, so this is the
  host's own work: packing the batches, sending them, launching the device's kernels; launched
  from the worker thread, a GPU's default, it is only the packing: ``DQNVIZ_LAUNCH_THREAD=0``
  measures the launches);
* ``done``: time until the results are read back (host and device together);
* per update, and the agent steps/s the learner alone allows at the replay ratio
  ``--transitions-per-step`` (Nature: 8, one batch of 32 every 4 steps):
  ``K · batch / ratio / done``.

If ``dispatch`` is close to ``done``, the device waits for the host (kernel launches), and the
learner's cost is the host's; a loop that overlaps it with emulation cannot hide it, because the
same host runs the loop.

``--program`` (JAX, frames on the device) also prints what the compiled call is made of, from its
optimized HLO: the instructions of its entry computation that launch work, how many of them are
command buffers (XLA's CUDA graphs, one launch each) and how many operations those hold, and the
launches left outside them by kind. ``--program-file PREFIX`` keeps each configuration's HLO text
as ``PREFIX<K>x<B>.hlo.txt``.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# Instructions that launch nothing on the device: views, tuples, parameters, constants.
NOT_LAUNCHED = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "opt-barrier", "after-all",
                "partition-id", "replica-id"}


def hlo_computations(text: str) -> dict[str, list[tuple[str, str]]]:
    """The computations of an HLO module's text, ``{name: [(opcode, instruction line), …]}``; the
    entry computation is named ``ENTRY``."""
    computations, name = {}, None
    for line in text.splitlines():
        header = re.match(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$", line)
        if header:
            name = "ENTRY" if header.group(1) else header.group(2)
            computations[name] = []
        elif line.strip() == "}":
            name = None
        elif name is not None:
            instruction = re.match(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*.*?\s([a-z][\w\-]*)\(", line)
            if instruction:
                computations[name].append((instruction.group(1), line))
    return computations


def program_summary(text: str) -> str:
    """One paragraph on the launches of a compiled program (see the module docstring)."""
    computations = hlo_computations(text)
    if "ENTRY" not in computations:
        return f"no entry computation parsed from {len(text):,} characters of HLO (pass --program-file to read it)"
    # an asynchronous pair (copy-start, copy-done) is one launch and a wait
    launched = [(opcode, line) for opcode, line in computations["ENTRY"]
                if opcode not in NOT_LAUNCHED and not opcode.endswith("-done")]
    graph_calls = [line for opcode, line in launched
                   if opcode == "call" and re.search(r"to_apply=%?command_buffer", line)]
    held = 0
    for line in graph_calls:
        target = re.search(r"to_apply=%?([\w.\-]+)", line).group(1)
        held += sum(1 for opcode, _ in computations.get(target, []) if opcode not in NOT_LAUNCHED)
    in_graphs = set(graph_calls)
    outside = collections.Counter(opcode for opcode, line in launched if line not in in_graphs)
    everywhere = collections.Counter(opcode for body in computations.values() for opcode, _ in body)
    kinds = ", ".join(f"{opcode} {count}" for opcode, count in outside.most_common(8))
    return (f"entry computation: {len(launched)} launching instructions: {len(graph_calls)} command buffers "
            f"(CUDA graphs) holding {held} operations, and outside them {kinds or 'none'}; the whole module: "
            f"{everywhere['fusion']} fusions, {everywhere['custom-call']} custom calls (cuBLAS, cuDNN), "
            f"{everywhere['while']} while loops, {everywhere['convolution']} convolutions")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", default="8x64", type=lambda text: [tuple(map(int, c.split("x"))) for c in text.split(",")],
                        help="comma-separated KxB: K updates of batch B per call (default 8x64: an iteration "
                             "of 64 environments at batch 64 every 8 steps)")
    parser.add_argument("--num-envs", type=int, default=64, help="environments the replay memory holds")
    parser.add_argument("--replay-size", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per configuration")
    parser.add_argument("--transitions-per-step", type=float, default=8.0)
    parser.add_argument("--host-replay", action="store_true", help="frames on the host (the default under TensorFlow)")
    parser.add_argument("--double", action="store_true")
    parser.add_argument("--dueling", action="store_true")
    parser.add_argument("--program", action="store_true",
                        help="also summarise each configuration's compiled program: its launches (JAX, frames on the device)")
    parser.add_argument("--program-file", metavar="PREFIX",
                        help="with --program, keep each configuration's optimized HLO as PREFIX<K>x<B>.hlo.txt")
    args = parser.parse_args()

    import keras
    import numpy as np
    from _timing import print_machine, random_replay, random_transition

    from dqnviz.config import TrainConfig
    from dqnviz.learner import Learner

    device_replay = keras.config.backend() == "jax" and not args.host_replay
    print_machine()
    print(f"frames on the {'device' if device_replay else 'host'}")

    n = args.num_envs
    replay, rng = random_replay(args.replay_size, n, min(args.replay_size // n, 2_000), device_replay)
    config = TrainConfig(num_envs=n, double=args.double, dueling=args.dueling, seed=0)
    learner = Learner(4, config)
    print(f"replay: {replay.num_sampleable():,} transitions of {n} environments; network: "
          f"{'dueling' if args.dueling else 'Nature'}, {'double' if args.double else 'plain'} DQN targets\n")
    print("  K  batch   dispatch ms   done ms   per update ms   learner-bound agent steps/s")
    for count, batch_size in args.calls:
        def call():
            transitions = replay.sample_batches(batch_size, count)
            # frames staged since the last call travel with it, as in training
            replay.add(*random_transition(rng, n, rewards=(0.0,), terminal_rate=0.0))
            started = time.perf_counter()
            pending = learner.train_transitions(replay, transitions)
            dispatched = time.perf_counter()
            pending.losses()
            return dispatched - started, time.perf_counter() - started

        for _ in range(3):  # compile, warm
            call()
        timings = np.array([call() for _ in range(args.repeats)])
        dispatch, done = np.median(timings, axis=0)
        steps_per_second = count * batch_size / args.transitions_per_step / done
        print(f"{count:3d}  {batch_size:5d}   {1e3 * dispatch:11.3f}   {1e3 * done:7.3f}   "
              f"{1e3 * done / count:13.3f}   {steps_per_second:27,.0f}", flush=True)
        if args.program and device_replay:
            text = learner.step.compiled_program(replay.buffer, replay.sample_batches(batch_size, count))
            if args.program_file:
                with open(f"{args.program_file}{count}x{batch_size}.hlo.txt", "w") as f:
                    f.write(text)
            print(f"     program: {program_summary(text)}", flush=True)


if __name__ == "__main__":
    main()
