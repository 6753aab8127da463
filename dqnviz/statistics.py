"""Reading a run's statistics CSV (``reports/<run>.csv``, one row per phase), without Keras: the
command line decides where a resumed run goes from it, and the trainer what a resume still owes."""

from __future__ import annotations

from pathlib import Path


class Statistics(list):
    """The rows of a statistics CSV (dicts by column name), with ``columns``: its header ([] for an
    empty file), and ``cut``: whether its last line lacked its newline (a row cut short by a crash
    or a full disk mid-write), which is then not among the rows."""

    columns: list[str] = []
    cut: bool = False


def complete_lines(text: str) -> tuple[str, bool]:
    """``text`` up to its last line break, and whether anything followed it: a CSV row is whole
    only with its newline (rows are written with it in one write)."""
    if not text or text.endswith(("\n", "\r")):
        return text, False
    return text[: max(text.rfind("\n"), text.rfind("\r")) + 1], True


def read_statistics(csv_path: Path) -> Statistics | None:
    """The rows of a statistics CSV, by column name; None if it cannot be read. A last line without
    its newline is left out (see :class:`Statistics`)."""
    import csv
    import io

    try:
        with open(csv_path, newline="") as f:
            text = f.read()
        text, cut = complete_lines(text)
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = Statistics(reader)
        rows.columns, rows.cut = list(reader.fieldnames or []), cut
        return rows
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def has_row(rows: list[dict] | None, epoch: int, phase: str) -> bool:
    """Whether statistics ``rows`` (from :func:`read_statistics`; None: none) hold ``epoch``'s ``phase``."""
    return any(row.get("epoch") == str(epoch) and row.get("phase") == phase for row in rows or ())
