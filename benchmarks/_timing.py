"""What the benchmark scripts share (imported from beside them: ``python benchmarks/x.py``)."""

import time


def seconds_per_call(call, repeats: int = 200) -> float:
    """The mean wall time of ``call()`` over ``repeats`` calls, after one untimed call (caches,
    compilation)."""
    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats
