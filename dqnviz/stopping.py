"""Stopping a run: SIGINT (Ctrl-C) and SIGTERM (``kill``, ``timeout``, a job scheduler).

The command line makes both signals raise :class:`KeyboardInterrupt`, so a stopped training run
saves its ``_interrupted`` snapshot whichever way it was stopped.

A KeyboardInterrupt raised at an arbitrary bytecode is not always delivered as one: raised inside
``__float__`` while numpy converts a list of device arrays, numpy turns it into a ``ValueError``.
Loops that must stop cleanly therefore run inside :class:`deferred_interrupts`, which notes the
signal and raises it at the loop's next :meth:`~deferred_interrupts.check`, a point where the
loop's state is whole. A second signal before that check raises at once, for the impatient.
"""

from __future__ import annotations

import signal
import threading

# SIGBREAK: Ctrl-Break on Windows, where SIGTERM is never delivered
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, *([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else []))
_last_signal = [signal.SIGINT]  # the stop signal that arrived last (a plain KeyboardInterrupt: SIGINT)


def _raise_interrupt(signum, frame):
    _last_signal[0] = signum
    raise KeyboardInterrupt


def exit_status() -> int:
    """The shell's exit status of a process stopped by the last stop signal: 128 + its number
    (130 for Ctrl-C, 143 for SIGTERM: what `timeout` and job schedulers expect)."""
    return 128 + int(_last_signal[0])


def raise_interrupt_on_stop_signals() -> dict:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt, as Ctrl-C does; return the old handlers.

    SIGINT is set too because a process started in the background by a non-interactive shell
    inherits it ignored, and would not stop at all. Does nothing outside the main thread, where
    Python cannot set handlers.
    """
    _last_signal[0] = signal.SIGINT  # a command's own stop, not an earlier command's in this process
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {number: signal.signal(number, _raise_interrupt) for number in STOP_SIGNALS}


def restore_signals(previous: dict) -> None:
    """Put back the handlers that :func:`raise_interrupt_on_stop_signals` returned."""
    for number, handler in previous.items():
        signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def interrupted_by(error: BaseException) -> bool:
    """Whether ``error`` is, or was caused by, a KeyboardInterrupt (numpy may wrap one)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


class deferred_interrupts:
    """Within the block, a stop signal is noted and raised as KeyboardInterrupt at :meth:`check`.

    Only signals that would have raised KeyboardInterrupt are deferred (Python's own SIGINT
    handler, or the command line's); a signal whose handler kills the process still kills it.
    A signal that arrives after the last check is raised when the block ends, so none is lost.
    Outside the main thread the block changes nothing.
    """

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def __enter__(self) -> "deferred_interrupts":
        if threading.current_thread() is not threading.main_thread():
            return self
        for number in STOP_SIGNALS:
            handler = signal.getsignal(number)
            if handler is signal.default_int_handler or handler is _raise_interrupt:
                self._previous[number] = signal.signal(number, self._note)
        return self

    def _note(self, signum, frame):
        _last_signal[0] = signum
        if self.requested:  # asked twice: stop now
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop signal arrived since the block began."""
        if self.requested:
            self.requested = False
            raise KeyboardInterrupt

    def __exit__(self, kind, error, traceback) -> None:
        restore_signals(self._previous)
        self._previous = {}
        if error is None:
            self.check()
