"""What the benchmark scripts share (imported from beside them: ``python benchmarks/x.py``)."""

import os
import platform
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
