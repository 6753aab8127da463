"""What the benchmark scripts share (imported from beside them: ``python benchmarks/x.py``)."""

import os
import platform
import statistics
import time


def print_machine() -> None:
    """The Keras backend, the CPU and, under JAX, the devices: the first lines of a benchmark's
    output, so that figures from different machines are not compared by mistake."""
    import keras

    from dqnviz.trainer import sample_ahead, updates_before_actions

    print(f"backend {keras.config.backend()}, keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}")
    from dqnviz.backend import launches_asynchronously

    print("loop: the next batches drawn " + ("while the updates run" if sample_ahead() else "at each iteration's start")
          + "; the updates launched " + ("before the actions are read" if updates_before_actions(launches_asynchronously()) else
                                         "after the actions are sent") + " (a serial profile: after)")
    if keras.config.backend() == "jax":
        import jax

        from dqnviz.backend.jax import compiler_options, fewer_passes, launch_thread, matmul_convolutions

        print("jax devices:", ", ".join(str(d) for d in jax.devices()))
        print(f"update: {'fewer, bigger passes' if fewer_passes() else 'a pass per network and batch'}, "
              f"{'convolutions as matrix products' if matmul_convolutions() else 'XLA convolutions'}, "
              f"compiler options {compiler_options()}, "
              f"{'launched from a worker thread' if launch_thread() else 'launched in place'}; "
              f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")


def seconds_per_call(call, repeats: int = 200) -> float:
    """The mean wall time of ``call()`` over ``repeats`` calls, after one untimed call (caches,
    compilation)."""
    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def median_ms(call, repeats: int) -> float:
    """The median wall time of ``repeats`` calls of ``call()``, in milliseconds (no untimed call
    first: warm up before). The median, where :func:`seconds_per_call` gives the mean: a call of
    well under a millisecond is now and then held up by the host, which would move a mean."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def random_transition(rng, num_envs: int, rewards=(-1.0, 0.0, 1.0), terminal_rate: float = 0.01) -> tuple:
    """One agent step of ``num_envs`` environments as ``ReplayMemory.add`` takes it: random frames
    (num_envs, 84, 84) and actions (of 4), rewards drawn from ``rewards``, a terminal with
    probability ``terminal_rate``, no game start."""
    import numpy as np

    return (rng.integers(0, 256, (num_envs, 84, 84), np.uint8), rng.integers(0, 4, num_envs),
            rng.choice(np.asarray(rewards, np.float32), num_envs), rng.random(num_envs) < terminal_rate,
            np.zeros(num_envs, bool))


def random_replay(capacity: int, num_envs: int, steps: int, on_device: bool, seed: int = 0, **transition):
    """A replay memory (``DeviceReplay`` with ``on_device``, else ``ReplayMemory``) holding ``steps``
    agent steps of :func:`random_transition` (given ``transition``'s options), and the generator
    that drew them (for more)."""
    import numpy as np

    from dqnviz.replay import DeviceReplay, ReplayMemory

    rng = np.random.default_rng(seed)
    replay = (DeviceReplay if on_device else ReplayMemory)(capacity, num_envs=num_envs, seed=seed)
    for _ in range(steps):
        replay.add(*random_transition(rng, num_envs, **transition))
    return replay, rng
