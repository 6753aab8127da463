"""Numbers, and lists of them, as messages show them."""

from __future__ import annotations


def format_few(items, shown: int = 6) -> str:
    """The first ``shown`` of ``items`` in a message: ``"a, b, c"``, or ``"a, b, … (40 more)"``."""
    items = list(items)
    return ", ".join(map(str, items[:shown])) + (f", … ({len(items) - shown} more)" if len(items) > shown else "")


def format_bytes(count: float) -> str:
    """A byte count for a message, in binary units: ``"4,096 bytes"`` below 1 MiB, ``"13 MiB"``
    below 1 GiB (2³⁰ bytes), ``"6.57 GiB"`` from there."""
    if count >= 2**30:
        return f"{count / 2**30:.2f} GiB"
    if count >= 2**20:
        return f"{count / 2**20:.0f} MiB"
    return f"{int(count):,} bytes"
