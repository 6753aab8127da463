"""Progress for long work: a rich progress bar on a terminal, plain lines otherwise.

    with Progress("train", total=250_000) as progress:
        for step in ...:
            progress.update(step + 1, epsilon=0.53, reward=12.0)
"""

from __future__ import annotations

import errno
import sys
import time


_output_gone: set = set()  # the streams (by fileno) found closed or gone: said nothing more to


def say(*values, file=None) -> None:
    """``print(*values, file=file, flush=True)`` for a long command's log, where the output may go
    away under it: a reader that closed the pipe (``dqnviz train … | head``), a terminal that was
    closed. The first failed write asks for a stop (:func:`dqnviz.stopping.request_stop`, exit status
    141), raised where the run's files agree, not at the print; later lines to that stream are
    dropped."""
    stream = file or sys.stdout
    key = _stream_key(stream)
    if key in _output_gone:
        return
    try:
        print(*values, file=stream, flush=True)
    except UnicodeError:  # text the stream's encoding cannot take: a bug to see, not output gone
        raise
    except (OSError, ValueError):  # BrokenPipeError, EIO from a terminal gone, a full disk; a closed file
        _output_gone.add(key)
        from dqnviz.stopping import request_stop

        request_stop()


def output_gone(stream=None) -> bool:
    """Whether :func:`say` or a progress bar found ``stream`` (stdout by default) closed or gone."""
    return _stream_key(stream or sys.stdout) in _output_gone


def output_back() -> None:
    """Forget the streams :func:`say` found gone: a new command's output is tried again."""
    _output_gone.clear()


def _stream_key(stream):
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return id(stream)


def plural(noun: str, count) -> str:
    """``noun`` for a count of 1, ``noun + "s"`` otherwise: f"{n} {plural('game', n)}"."""
    return noun if count == 1 else noun + "s"


def join_words(words) -> str:
    """``words`` (a non-empty sequence of strings) as a phrase: commas, and "and" before the last
    (no comma there): ``["7"]`` → "7", ``["a", "b"]`` → "a and b", ``["a", "b", "c"]`` → "a, b and c"."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _bar_console(stream):
    """rich's Console on ``stream``, where a closed stream is an error, not rich's exit: rich would
    point the process's stdout at /dev/null and raise SystemExit (whatever stream it drew on)."""
    from rich.console import Console

    class BarConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, "the progress bar's stream was closed")

    return BarConsole(file=stream)


class Progress:
    """A progress bar (rich, on a TTY) or a plain line every ``every_seconds`` (elsewhere).

    Args:
        description: what is being done ("epoch 3 train").
        total: the number of units at completion.
        unit: what is counted ("steps", "filters").
        stream: where plain lines go (stderr by default).
        count_past_total: plain lines count work past ``total`` on (a test phase finishing its
            last games), where otherwise they stop at it.
    """

    def __init__(self, description: str, total: int, unit: str = "steps", stream=None,
                 every_seconds: float = 10.0, enabled: bool = True, count_past_total: bool = False):
        self.description, self.total, self.unit = description, max(int(total), 1), unit
        self.stream = stream or sys.stderr
        self.every_seconds = every_seconds
        self.count_past_total = count_past_total
        self.enabled = enabled and _stream_key(self.stream) not in _output_gone
        self.fancy = self.enabled and self.stream.isatty()
        self.start = time.perf_counter()
        self._last_print = self.start
        self._done = 0
        self._fields: dict = {}

    def __enter__(self):
        if self.fancy:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            # on the stream whose terminal made it a bar (stderr): rich's own default is stdout,
            # which put the bars into `dqnviz train … | tee log` and, once a reader closed the
            # pipe, ended the command from inside rich (SystemExit) with the phase's work unsaved
            self._rich = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
                console=_bar_console(self.stream), redirect_stdout=False, redirect_stderr=False,
            )
            try:
                self._rich.__enter__()
                self._task = self._rich.add_task(self.description, total=self.total, rate="", info="")
            except (OSError, ValueError, SystemExit):
                self._gone()
        return self

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self._done / elapsed if elapsed > 0 else 0.0

    def _rate_text(self) -> str:
        """``1,234 steps/s``, or ``0.31 episodes/s`` for slow units, so a rate never reads 0."""
        rate = self.rate()
        return f"{rate:,.0f} {self.unit}/s" if rate >= 10 else f"{rate:.2g} {self.unit}/s"

    def _info(self) -> str:
        return "  ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in self._fields.items())

    def update(self, done: int, **fields) -> None:
        """Set the units completed so far, and any fields to show (ε, reward, …).

        ``done`` may pass ``total`` (a test phase finishing its last games): the bar stays full and
        the rate counts everything done.
        """
        self._done = done
        self._fields.update(fields)
        if not self.enabled:
            return
        now = time.perf_counter()
        try:
            if self.fancy:
                if now - self._last_print > 0.1 or done >= self.total:
                    self._rich.update(self._task, completed=min(done, self.total), rate=self._rate_text(),
                                      info=self._info())
                    self._last_print = now
            elif now - self._last_print >= self.every_seconds:
                self._plain_line()
                self._last_print = now
        except (OSError, ValueError, SystemExit):  # rich ends the process on a broken pipe: not here
            self._gone()

    def _gone(self) -> None:
        """The output went away (a closed pipe, a terminal gone): no more progress, and a stop
        asked for as :func:`say` asks for one."""
        from dqnviz.stopping import request_stop

        self.enabled = False
        if self.fancy:
            self.fancy = False
            try:  # best effort: the display may be half started, its stream is gone either way
                self._rich.stop()
            except (Exception, SystemExit):
                pass
        _output_gone.add(_stream_key(self.stream))
        request_stop()

    def set_total(self, total: int) -> None:
        """Change the units at completion: work that ended early (games shorter than their cap)
        ends its bar full, at what was done, rather than short of a total never reached."""
        self.total = max(int(total), 1)
        if self.fancy and hasattr(self, "_task"):
            self._rich.update(self._task, total=self.total, completed=min(self._done, self.total))

    def _plain_line(self) -> None:
        """``epoch 1 test: 64/64 steps, +6,020 past it (304 steps/s) …``: with ``count_past_total``
        work past the total (a test phase's last games) is counted on, so that a log's lines still
        show it moving."""
        self._printed = (self._done, dict(self._fields))
        past = f", +{self._done - self.total:,} past it" if self.count_past_total and self._done > self.total else ""
        print(f"{self.description}: {min(self._done, self.total):,}/{self.total:,} {self.unit}{past} "
              f"({self._rate_text()}) {self._info()}".rstrip(), file=self.stream, flush=True)

    def __exit__(self, *exc):
        try:
            if self.fancy:
                self._rich.update(self._task, completed=min(self._done, self.total), rate=self._rate_text(),
                                  info=self._info())
                self._rich.__exit__(*exc)
            elif self.enabled and getattr(self, "_printed", None) != (self._done, self._fields):
                self._plain_line()  # the last line, unless the last update printed it already
        except (OSError, ValueError, SystemExit):  # the stop this asks for is the next block's to raise
            self._gone()
        return False
