"""Classic mode's action, taken apart: what one batch-1 forward pass costs, and where.

    KERAS_BACKEND=jax python benchmarks/acting.py
    KERAS_BACKEND=jax python benchmarks/acting.py --dueling --states 1,8 --repeats 2000

Classic mode (``--num-envs 1``, the Nature loop) steps one emulator and then chooses the next
action, one after the other, since the action needs the state: an agent step costs
``emulate + act`` (+ a share of the updates), so 1,000 agent steps/s leaves 1 ms for both. The
2026-11-28 H200 leases measured ``act`` at 0.86–1.01 ms per step in the loop and the emulator at
0.70–0.75 (``benchmarks/emulator.py`` times the emulator alone). This script times the action
alone, with no emulator and no learner, in the loop's own call (:func:`dqnviz.backend.make_predict`
on frame stacks, as ``Learner.q_values``), for each way of computing the convolutions (XLA's, and
as matrix products, dqnviz's choice on an accelerator), ``N`` states per call. Each row is the
median over ``--repeats`` calls of:

* ``round trip``: a uint8 frame stack on the host → Q-values on the host, what the loop waits for;
* ``device state``: the same from a state already on the device (no host-to-device copy);
* ``pipelined``: ``--repeats`` calls dispatched back to back and read once, per call: the
  device's time per pass when launches overlap it (under TensorFlow, which returns results
  eagerly, the same as the round trip);
* ``ε-greedy``: the loop's own wrapper (:func:`dqnviz.agent.epsilon_greedy_later` at ε = 0.1).

``round trip − pipelined`` is what one pass's latency adds on top of its work: the launches, the
two copies and the synchronisation, which a batch-1 pass cannot hide behind anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


def median_ms(function, repeats: int) -> float:
    """The median of ``repeats`` timed calls of ``function()``, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", default="1,8", help="states per call, comma-separated (default: 1,8)")
    parser.add_argument("--repeats", type=int, default=1000, help="timed calls per figure (default: 1000)")
    parser.add_argument("--actions", type=int, default=4, help="the network's actions (Breakout: 4)")
    parser.add_argument("--dueling", action="store_true", help="a dueling head (the shipped agents' recipe)")
    args = parser.parse_args()

    import keras

    from _timing import print_machine
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


if __name__ == "__main__":
    main()
