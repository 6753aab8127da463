"""What the benchmark scripts share (imported from beside them: ``python benchmarks/x.py``)."""

import os
import platform
import time


def print_machine() -> None:
    """The Keras backend, the CPU and, under JAX, the devices: the first lines of a benchmark's
    output, so that figures from different machines are not compared by mistake."""
    import keras

    print(f"backend {keras.config.backend()}, keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}")
    if keras.config.backend() == "jax":
        import jax

        print("jax devices:", ", ".join(str(d) for d in jax.devices()))


def seconds_per_call(call, repeats: int = 200) -> float:
    """The mean wall time of ``call()`` over ``repeats`` calls, after one untimed call (caches,
    compilation)."""
    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats
