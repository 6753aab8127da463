"""Reading a run's statistics CSV (``reports/<run>.csv``, one row per phase), without Keras: the
command line decides where a resumed run goes from it, and the trainer what a resume still owes."""

from __future__ import annotations

from pathlib import Path


def read_statistics(csv_path: Path) -> list[dict] | None:
    """The rows of a statistics CSV, by column name; None if it cannot be read."""
    import csv

    try:
        with open(csv_path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def has_row(rows: list[dict] | None, epoch: int, phase: str) -> bool:
    """Whether statistics ``rows`` (from :func:`read_statistics`; None: none) hold ``epoch``'s ``phase``."""
    return any(row.get("epoch") == str(epoch) and row.get("phase") == phase for row in rows or ())
