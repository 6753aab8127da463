"""Stopping a run: SIGINT (Ctrl-C), SIGTERM (``kill``, ``timeout``, a job scheduler) and SIGHUP
(the terminal closed, the ssh connection lost; left alone under ``nohup``, which ignores it).

The command line makes these signals raise :class:`KeyboardInterrupt`, so a stopped training run
saves its ``_interrupted`` snapshot whichever way it was stopped. Output that can no longer be
written (a reader that closed the pipe, a terminal gone) asks for a stop the same way
(:func:`request_stop`, used by :func:`dqnviz.progress.say`), so that it stops where the run's
files agree rather than where the print failed.

A KeyboardInterrupt raised at an arbitrary bytecode is not always delivered as one: raised inside
``__float__`` while numpy converts a list of device arrays, numpy turns it into a ``ValueError``.
Loops that must stop cleanly therefore run inside :class:`deferred_interrupts`, which notes the
signal and raises it at the loop's next :meth:`~deferred_interrupts.check`, a point where the
loop's state is whole. A second signal before that check raises at once, for the impatient.
"""

from __future__ import annotations

import signal
import threading

# SIGBREAK: Ctrl-Break on Windows, where SIGTERM is never delivered; SIGHUP: not on Windows
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, *[getattr(signal, name) for name in ("SIGHUP", "SIGBREAK")
                                                 if hasattr(signal, name)])
_last_signal = [signal.SIGINT]  # the stop signal that arrived last (a plain KeyboardInterrupt: SIGINT)
_active: list = []  # the deferred_interrupts blocks open now, innermost last
_pending = [False]  # a stop asked for by request_stop while no block was open: the next block's to raise
_scopes = [0]  # stop_requests_accepted blocks open now: outside them request_stop asks for nothing
# SIGPIPE's number where it has one: the status a shell gives a writer whose reader went away
_PIPE = int(getattr(signal, "SIGPIPE", 13))


def _raise_interrupt(signum, frame):
    _last_signal[0] = signum
    raise KeyboardInterrupt


def exit_status() -> int:
    """The shell's exit status of a process stopped by the last stop signal: 128 + its number
    (130 for Ctrl-C, 143 for SIGTERM: what `timeout` and job schedulers expect)."""
    return 128 + int(_last_signal[0])


def raise_interrupt_on_stop_signals() -> dict:
    """Make the stop signals raise KeyboardInterrupt, as Ctrl-C does; return the old handlers.

    SIGINT is set even where it is ignored, because a process started in the background by a
    non-interactive shell inherits it ignored, and would not stop at all; SIGHUP is left ignored
    where it is (``nohup``: the run is meant to outlive its terminal). Does nothing outside the
    main thread, where Python cannot set handlers.
    """
    _last_signal[0] = signal.SIGINT  # a command's own stop, not an earlier command's in this process
    _pending[0] = False
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {number: signal.signal(number, _raise_interrupt) for number in signals_to_take()}


def signals_to_take() -> list:
    """The stop signals a command takes: all of :data:`STOP_SIGNALS` but a SIGHUP that is ignored
    (``nohup``: the run is meant to outlive its terminal). SIGINT is taken even where ignored (see
    :func:`raise_interrupt_on_stop_signals`)."""
    hangup = getattr(signal, "SIGHUP", None)
    return [number for number in STOP_SIGNALS if not (number == hangup and signal.getsignal(number) is signal.SIG_IGN)]


def request_stop(signum: int = _PIPE) -> None:
    """Ask for a stop as the signal ``signum`` would (its exit status 128 + ``signum``), within a
    :class:`stop_requests_accepted` block (a training run): noted by the innermost
    :class:`deferred_interrupts` block open now and raised at its next check, or with none open
    by the next block that opens. For output that can no longer be written (SIGPIPE: 141), where
    raising at the print itself could leave a run's files half done. Outside such a block (a
    recording, the Python API) it asks for nothing: the work ends as it would have."""
    if not _scopes[0]:
        return
    _last_signal[0] = signum
    if _active:
        _active[-1].requested = True
    else:
        _pending[0] = True


class stop_requests_accepted:
    """Within the block, :func:`request_stop` stops the work at its next
    :meth:`deferred_interrupts.check`; a request not yet raised when the block ends is dropped."""

    def __enter__(self) -> "stop_requests_accepted":
        _scopes[0] += 1
        return self

    def __exit__(self, *exc) -> None:
        _scopes[0] -= 1
        if not _scopes[0]:
            _pending[0] = False


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
        self.requested = False  # a stop is due at the next check (a signal's, or request_stop's)
        self._signalled = False  # a stop signal arrived (a second one raises at once)
        self._previous: dict = {}

    def __enter__(self) -> "deferred_interrupts":
        if threading.current_thread() is not threading.main_thread():
            return self
        _active.append(self)
        if _pending[0]:  # asked for by request_stop while no block was open
            _pending[0], self.requested = False, True
        for number in STOP_SIGNALS:
            handler = signal.getsignal(number)
            if handler is signal.default_int_handler or handler is _raise_interrupt:
                self._previous[number] = signal.signal(number, self._note)
        return self

    def _note(self, signum, frame):
        _last_signal[0] = signum
        if self._signalled:  # asked twice: stop now
            raise KeyboardInterrupt
        self._signalled = self.requested = True

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop signal arrived since the block began."""
        if self.requested:
            self.requested = self._signalled = False
            raise KeyboardInterrupt

    def __exit__(self, kind, error, traceback) -> None:
        restore_signals(self._previous)
        self._previous = {}
        if self in _active:
            _active.remove(self)
        if error is None:
            self.check()
