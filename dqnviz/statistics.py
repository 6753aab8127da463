"""A run's statistics CSV (``reports/<run>.csv``, one row per phase), without Keras: what one phase
measured (:class:`PhaseStats`, its row), the file it is appended to (:class:`StatisticsCSV`), and
reading it back: the command line decides where a resumed run goes from it, the trainer what a
resume still owes, ``dqnviz plot`` what to draw."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


from dqnviz.errors import UserError
from dqnviz.outputs import cannot_write, try_flock
from dqnviz.progress import say

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


# ----------------------------------------------------------------------------------------------
# Writing: a phase's figures, appended as one row

_BINARY = getattr(os, "O_BINARY", 0)  # Windows: bytes as written, no \n → \r\n (rows end in \r\n already)

@dataclass
class PhaseStats:
    """What one phase measured; becomes one CSV row."""

    epoch: int
    phase: str
    steps: int = 0
    game_scores: list = field(default_factory=list)
    partial_score: float = 0.0
    epsilon: float = 1.0
    costs: list = field(default_factory=list)
    updates: int = 0
    seconds: float = 0.0
    # what an interrupted sitting of this phase measured (see :meth:`carried`), counted in the row
    steps_before: int = 0
    cost_sum_before: float = 0.0
    costs_before: int = 0
    earlier_added: bool = False

    @property
    def average_reward(self) -> float:
        import numpy as np  # here, not at the top: the command line imports this module at its start

        scores = self.game_scores or [self.partial_score]
        return float(np.mean(scores))

    def carried(self) -> dict:
        """The figures an ``_interrupted`` snapshot keeps, so that the resumed phase's one CSV row
        counts the whole phase: steps, ended games, seconds, updates and the losses read."""
        import numpy as np

        return {"steps_done": self.steps, "seconds": round(self.seconds, 3),
                "game_scores": [float(s) for s in self.game_scores], "updates": self.updates,
                "cost_sum": float(np.sum(self.costs)) + self.cost_sum_before,
                "cost_count": len(self.costs) + self.costs_before}

    def add_earlier(self, carried: dict | None) -> None:
        """Count an interrupted sitting's :meth:`carried` figures in this phase's. A snapshot
        written before those were kept (only ``steps_done``) adds nothing: its steps without
        their seconds would overstate the rate."""
        if not carried or "seconds" not in carried or self.earlier_added:
            return
        self.earlier_added = True
        self.steps_before = int(carried["steps_done"])
        self.steps += self.steps_before
        self.seconds += float(carried["seconds"])
        self.game_scores[:0] = [float(s) for s in carried.get("game_scores", [])]
        self.updates += int(carried.get("updates", 0))
        self.cost_sum_before = float(carried.get("cost_sum", 0.0))
        self.costs_before = int(carried.get("cost_count", 0))

    @property
    def meancost(self) -> float:
        """The mean of the losses read: those of every 16th iteration's updates (every update's when
        prioritized or profiling)."""
        import numpy as np

        count = len(self.costs) + self.costs_before
        return (float(np.sum(self.costs)) + self.cost_sum_before) / count if count else 0.0

    def row(self, total_train_steps, replay_count, meanq, weight_updates, total_time, epoch_time) -> dict:
        """The CSV row; ``meanq`` None (no validation states) is an empty cell, not a made-up 0."""
        scores = self.game_scores or [self.partial_score]
        return {
            "epoch": self.epoch, "phase": self.phase, "steps": self.steps, "nr_games": len(self.game_scores),
            "average_reward": round(self.average_reward, 4), "min_game_reward": float(min(scores)),
            "max_game_reward": float(max(scores)), "last_exploration_rate": round(self.epsilon, 6),
            "total_train_steps": total_train_steps, "replay_memory_count": replay_count,
            "meanq": "" if meanq is None else round(float(meanq), 6), "meancost": round(self.meancost, 6),
            "weight_updates": weight_updates, "total_time": round(total_time, 2),
            "epoch_time": round(epoch_time, 2), "steps_per_second": round(self.steps / max(self.seconds, 1e-9), 2),
        }


class RunTaken(UserError):
    """The run's statistics CSV is another's: it exists though a new run was to create it
    (``busy`` False), or another process holds it open to write (``busy`` True)."""

    def __init__(self, path: Path, busy: bool = False):
        self.path, self.busy = Path(path), busy
        super().__init__(f"{path} is in use by another dqnviz train running now" if busy else f"{path} exists")


class StatisticsCSV:
    """``reports/<run>.csv``: one row per phase, appended and synced at once (never rewritten).

    Each row (and the header) goes to the file in one ``os.write``; if that fails (a full disk, a
    file-size limit) the file is cut back to its size before, so that it only ever holds whole
    lines, and the failure is a one-line :class:`UserError`.

    Args:
        path: the file.
        new: a new run's CSV, which must not exist yet: it is created with ``O_EXCL``, the run's
            claim on its name, atomic against another ``dqnviz train`` choosing the same name at
            the same moment (:class:`RunTaken`). Otherwise (a resumed run) an existing file is
            appended to, after its header is checked and a last line without its newline (a row
            half written when a run stopped) is dropped, saying so; a missing one is created.
        lock: hold an exclusive ``flock`` on the file until :meth:`close` (or the process's end,
            however it ends: a killed run leaves no stale lock), so that a second run writing
            the same CSV at the same time is refused (:class:`RunTaken` with ``busy``).
        log: where the line on a dropped partial row goes.
    """

    def __init__(self, path: Path, new: bool = False, lock: bool = False, log=say):
        self.path = Path(path)
        self._fd = None
        self._created = False  # by this run (a resumed run appends to its own)
        self.rows_appended = 0
        self._size_before_last = 0  # the file's size before the last write (see withdraw_last_row)
        self.dropped = None  # the partial last line dropped on opening, if any
        # the folders made for the file, outermost first: removed with it by discard_if_unused
        self._made_folders = [folder for folder in reversed(self.path.parents) if not folder.exists()]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise cannot_write(self.path, error) from None
        if new or not self.path.exists():
            try:  # created now, so that the run's name is taken while its first phase runs
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | _BINARY, 0o666)
                self._created = True
            except FileExistsError:
                if new:
                    raise RunTaken(self.path) from None
            except OSError as error:
                raise cannot_write(self.path, error) from None
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | _BINARY)
            except OSError as error:
                raise cannot_write(self.path, error) from None
        try:
            # without flock (Windows) a new run's claim is its CSV's O_EXCL creation alone
            if lock and try_flock(self._fd) is False:
                raise RunTaken(self.path, busy=True)
            if not self._created:
                self._open_existing(log)
            if os.fstat(self._fd).st_size == 0:
                self._write(_csv_line(CSV_COLUMNS))
        except BaseException:
            self.close()
            if self._created:
                self._remove()
            raise

    def _open_existing(self, log) -> None:
        """Check the header of the file being appended to, and drop a partial last line. Read from
        the descriptor this object holds (and has locked), so that the bytes checked are those of
        the file appended to, whatever is renamed over its path meanwhile."""
        chunks = []
        os.lseek(self._fd, 0, os.SEEK_SET)  # appends still go to the end (O_APPEND)
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        data = b"".join(chunks)
        if not data:
            self._created = True  # an empty file: as good as new (its header is written now)
            return
        first = data.splitlines()[0] if data.splitlines() else b""
        try:
            header = next(csv.reader([first.decode("utf-8")]), [])
        except (UnicodeDecodeError, csv.Error):
            header = None
        if header != CSV_COLUMNS:
            raise UserError(f"{self.path} exists but is not a dqnviz statistics file; use --report-dir or --name")
        if message := malformed_row_message(self.path, data):
            raise UserError(message)
        if not data.endswith((b"\n", b"\r")):
            keep = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
            self.dropped = data[keep:]
            try:
                os.ftruncate(self._fd, keep)
            except OSError as error:
                raise cannot_write(self.path, error) from None
            shown = self.dropped.decode("utf-8", "replace")
            shown = shown if len(shown) <= 40 else shown[:37] + "…"
            log(f"{self.path}: dropped its last line, a row cut short when an earlier sitting stopped "
                f"({shown!r}, no newline)" if keep else
                f"{self.path}: its header lacked its newline: written again")

    def _write(self, data: bytes) -> None:
        """Append ``data`` whole or not at all: on any failure the file is cut back to its size before."""
        if self._fd is None:
            raise UserError(f"cannot write {self.path}: the statistics file was closed")
        size = os.fstat(self._fd).st_size
        self._size_before_last = size
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                if written <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
            os.fsync(self._fd)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)
            raise cannot_write(self.path, error) from None

    def append(self, row: dict) -> None:
        buffer = io.StringIO()
        csv.DictWriter(buffer, CSV_COLUMNS).writerow(row)
        self._write(buffer.getvalue().encode("utf-8"))
        self.rows_appended += 1

    def withdraw_last_row(self) -> None:
        """Cut off the row this run appended last (its epoch's snapshot could not be saved), so that
        the file ends with the last saved epoch's rows. Cutting a file short needs no free space."""
        if self._fd is None or not self.rows_appended:
            return
        try:
            os.ftruncate(self._fd, self._size_before_last)
            os.fsync(self._fd)
        except OSError as error:
            raise cannot_write(self.path, error) from None
        self.rows_appended -= 1

    def close(self) -> None:
        """Close the file (and so release its lock); appending after this is an error."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self):
        self.close()

    def discard_if_unused(self) -> bool:
        """Remove the file if this run created it and wrote no row (stopped in its first phase; True),
        so that a header alone neither takes the run's name nor reads as an empty run."""
        if self._created and not self.rows_appended:
            self._remove()
            return True
        return False

    def discard_if_created(self) -> bool:
        """Remove the file if this run created it, rows and all (True): for a run that saved no
        snapshot, whose rows nothing can resume."""
        if self._created:
            self._remove()
            return True
        return False

    def _remove(self) -> None:
        """Delete the file, and the folders made for it if they are empty."""
        self.close()
        self.path.unlink(missing_ok=True)
        for folder in reversed(self._made_folders):
            try:
                folder.rmdir()
            except OSError:  # not empty: another file went there meanwhile
                break


def _csv_line(values) -> bytes:
    """One CSV line as ``csv.writer`` writes it (``\\r\\n``-terminated), in UTF-8."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode("utf-8")
