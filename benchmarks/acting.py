"""Classic mode's action, taken apart: what one batch-1 forward pass costs, and where.

    KERAS_BACKEND=jax python benchmarks/acting.py
    KERAS_BACKEND=jax python benchmarks/acting.py --dueling --states 1,8 --repeats 2000

Classic mode (``--num-envs 1``, the Nature loop) steps one emulator and then chooses the next
action, one after the other, since the action needs the state: an agent step costs
``emulate + act`` (+ a share of the updates), so 1,000 agent steps/s leaves 1 ms for both. The
second H200 lease of 2026-11-28 measured ``act`` at 0.86–1.01 ms per step in the loop and the
emulator at 0.70–0.75 (``benchmarks/emulator.py`` times the emulator alone), with the Nature
network (no dueling head; ``--dueling`` adds one). This script times the action alone, with no
emulator and no learner: the compiled call the loop makes (:func:`dqnviz.backend.make_predict` on
frame stacks, as ``Learner.q_values``; here it reads the model's weights, where the loop's reads
the learner's, which can wait behind an update in flight: the loop's extra), for each way of
computing the convolutions (XLA's, and as matrix products, dqnviz's choice on an accelerator),
``N`` states per call. Each row is the median over ``--repeats`` calls of:

* ``round trip``: a uint8 frame stack on the host → Q-values on the host, what the loop waits for;
* ``device state``: the same from a state already on the device (no host-to-device copy);
* ``pipelined``: ``--repeats`` calls from the device-resident state dispatched back to back and
  read once, per call: the longer of the host's cost of a call (gathering the weights, the
  dispatch) and the device's time per pass, since the two overlap (under TensorFlow, which returns
  results eagerly, about ``device state``);
* ``ε-greedy``: the loop's own wrapper (:func:`dqnviz.agent.epsilon_greedy_later` at ε = 0.1).

Then, with a learner (``--update-batch``, Nature's 32; frames on the device under JAX, as
``--device-replay``), the loop's own call, ``Learner.q_values``, on one state: alone, and right
after one update is launched, which the loop's next action waits for (in classic mode at batch 32
every 4 steps, one action in four), and how long that update takes by itself.

``round trip − pipelined`` is what a pass's latency adds when nothing overlaps it: the two copies,
the synchronisation, and whichever of host and device work is the shorter, which a batch-1 pass
cannot hide behind anything. ``device state`` against ``round trip`` is the host-to-device copy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from _timing import median_ms, print_machine, random_replay, random_transition

NO_REWARD = dict(rewards=(0.0,), terminal_rate=0.0)  # the transitions' contents do not matter here


def time_acting(model, count: int, repeats: int, seed: int = 0) -> dict[str, float]:
    """Milliseconds per call of each way the action is taken (see the module docstring)."""
    import keras

    from dqnviz.agent import epsilon_greedy_later
    from dqnviz.backend import make_predict

    predict = make_predict(model, stacks=True)
    rng = np.random.default_rng(seed)
    stacks = rng.integers(0, 256, (count, 4, 84, 84), dtype=np.uint8)
    on_device = keras.ops.convert_to_tensor(stacks)
    for _ in range(5):  # compile, and let the device warm up
        np.asarray(predict(stacks))
        np.asarray(predict(on_device))
    results = {
        "round trip": median_ms(lambda: np.asarray(predict(stacks, wait=False)), repeats),
        "device state": median_ms(lambda: np.asarray(predict(on_device, wait=False)), repeats),
    }
    start = time.perf_counter()
    pending = [predict(on_device, wait=False) for _ in range(repeats)]
    np.asarray(pending[-1])
    results["pipelined"] = 1000.0 * (time.perf_counter() - start) / repeats
    num_actions = model.output_shape[-1]
    results["ε-greedy"] = median_ms(
        lambda: epsilon_greedy_later(lambda: predict(stacks, wait=False), count, num_actions, 0.1, rng)(), repeats)
    return results


def time_behind_update(dueling: bool, batch_size: int, repeats: int, seed: int = 0) -> dict[str, float]:
    """Milliseconds of ``Learner.q_values`` on one frame stack: alone, and right after a launched
    update of ``batch_size`` (classic mode's worst step); and of that update alone, until its loss
    is read."""
    import keras

    from dqnviz.config import TrainConfig
    from dqnviz.learner import Learner

    replay, rng = random_replay(20_000, num_envs=1, steps=2_000, on_device=keras.backend.backend() == "jax", seed=seed,
                                **NO_REWARD)
    learner = Learner(4, TrainConfig(num_envs=1, batch_size=batch_size, dueling=dueling, seed=seed))
    stack = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)

    def act():
        return np.asarray(learner.q_values(stack, stacks=True, wait=False))

    def launch():
        replay.add(*random_transition(rng, 1, **NO_REWARD))  # as the loop: a new frame staged per call
        return learner.train_transitions(replay, replay.sample_batches(batch_size, 1))

    def act_behind_update():
        pending = launch()
        start = time.perf_counter()
        act()
        seconds = time.perf_counter() - start
        pending.losses()
        return seconds

    for _ in range(5):  # compile, and let the device warm up
        act(), act_behind_update()
    return {
        "alone": median_ms(act, repeats),
        "behind an update": 1000.0 * statistics.median(act_behind_update() for _ in range(repeats)),
        "the update": median_ms(lambda: launch().losses(), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", default="1,8", help="states per call, comma-separated (default: 1,8)")
    parser.add_argument("--repeats", type=int, default=1000, help="timed calls per figure (default: 1000)")
    parser.add_argument("--actions", type=int, default=4, help="the network's actions (Breakout: 4)")
    parser.add_argument("--dueling", action="store_true", help="a dueling head (the shipped agents' recipe)")
    parser.add_argument("--update-batch", type=int, default=32, help="the learner's batch (default: Nature's 32; 0 skips it)")
    args = parser.parse_args()

    import keras

    from dqnviz.network import build_q_network

    print_machine()
    keras.utils.set_random_seed(0)
    model = build_q_network(args.actions, dueling=args.dueling)
    ways = [None]
    if keras.backend.backend() == "jax":
        ways = ["0", "1"]  # DQNVIZ_MATMUL_CONVOLUTIONS, read when a call is traced
    print(f"\n{'convolutions':<22}{'N':>4}{'round trip ms':>15}{'device state ms':>17}{'pipelined ms':>14}"
          f"{'ε-greedy ms':>13}{'act-bound steps/s':>19}")
    for way in ways:
        if way is not None:
            os.environ["DQNVIZ_MATMUL_CONVOLUTIONS"] = way
        label = {None: "the backend's", "0": "XLA's", "1": "as matrix products"}[way]
        for count in (int(n) for n in args.states.split(",")):
            figures = time_acting(model, count, args.repeats)
            print(f"{label:<22}{count:>4}{figures['round trip']:>15.3f}{figures['device state']:>17.3f}"
                  f"{figures['pipelined']:>14.3f}{figures['ε-greedy']:>13.3f}"
                  f"{1000.0 / figures['round trip'] * count:>19,.0f}")
    if args.update_batch > 0:
        if ways[0] is not None:
            os.environ.pop("DQNVIZ_MATMUL_CONVOLUTIONS", None)  # the loop's own choice again
        figures = time_behind_update(args.dueling, args.update_batch, args.repeats)
        print(f"\nthe loop's call (Learner.q_values, 1 state, the backend's convolutions): alone "
              f"{figures['alone']:.3f} ms; right after a batch-{args.update_batch} update is launched "
              f"{figures['behind an update']:.3f} ms; that update alone {figures['the update']:.3f} ms")


if __name__ == "__main__":
    main()
