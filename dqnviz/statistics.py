"""Reading a run's statistics CSV (``reports/<run>.csv``, one row per phase), without Keras: the
command line decides where a resumed run goes from it, and the trainer what a resume still owes."""

from __future__ import annotations

import re
from pathlib import Path

CSV_COLUMNS = [
    "epoch", "phase", "steps", "nr_games", "average_reward", "min_game_reward", "max_game_reward",
    "last_exploration_rate", "total_train_steps", "replay_memory_count", "meanq", "meancost",
    "weight_updates", "total_time", "epoch_time", "steps_per_second",
]

# random: epoch 0, the replay memory filled by random play; refill: a resumed run refilling it
PHASES = ("random", "refill", "train", "test")


def first_malformed_row(data: bytes) -> tuple[int, str] | None:
    """The first whole row of a statistics CSV's bytes ``data`` (header and a last line without
    its newline aside) that no run could have written, as (line number, text); None if every row
    is sound. A row is sound with one field per column, a whole-number epoch and a known phase;
    blank lines are ignored, as the CSV reader does."""
    import csv
    import io

    text, _ = complete_lines(data.decode("utf-8", "replace"))
    reader = csv.reader(io.StringIO(text, newline=""))  # the CSV module's lines, quotes and all
    next(reader, None)  # the header
    first_line = 2
    for fields in reader:
        number, first_line = first_line, reader.line_num + 1  # where this record began
        if not fields:
            continue
        if len(fields) != len(CSV_COLUMNS) or not is_digits(fields[0]) or fields[1] not in PHASES:
            return number, ",".join(fields)
    return None


def is_digits(text: str) -> bool:
    """Whether a CSV cell is a whole number such as an epoch or a count: ASCII digits only
    (``str.isdigit`` takes ``"²"``, which ``int`` refuses)."""
    return bool(re.fullmatch(r"[0-9]+", text))


def malformed_row_message(path: Path, data: bytes) -> str | None:
    """Why a resumed run cannot append to the statistics CSV at ``path`` holding ``data``: a whole
    row no run wrote (:func:`first_malformed_row`); None if there is none. Such a row is not a
    crash's leftover (that has no newline, and is dropped), so it is not dropped silently."""
    if (bad := first_malformed_row(data)) is None:
        return None
    number, line = bad
    shown = line if len(line) <= 40 else line[:37] + "…"
    return (f"{path} line {number} is not a statistics row ({shown!r}): mend or delete that line, "
            f"or use --name to continue as a new run")


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
