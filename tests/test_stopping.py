"""A stop signal ends a run at a point where its state is whole, and is never lost or mistaken for a crash."""

import signal

import pytest

from dqnviz.cli import main
from dqnviz.snapshot import load_snapshot
from dqnviz.stopping import deferred_interrupts, interrupted_by

from tests.helpers import TINY


@pytest.fixture(autouse=True)
def python_default_sigint():
    """SIGINT as in an interactive Python: raising KeyboardInterrupt. A test run started in the
    background by a non-interactive shell inherits SIGINT ignored, and nothing would be deferred."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_signal_inside_the_block_waits_for_the_next_check():
    reached = False
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts() as stop:
            signal.raise_signal(signal.SIGINT)  # runs the handler before returning
            reached = stop.requested
            stop.check()
    assert reached
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_signal_stops_at_once():
    after_second = False
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            after_second = True
    assert not after_second


def test_a_signal_after_the_last_check_is_raised_when_the_block_ends():
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts() as stop:
            stop.check()
            signal.raise_signal(signal.SIGINT)
    with deferred_interrupts() as stop:  # nothing pending: the block ends quietly
        stop.check()


def test_an_interrupt_that_numpy_wrapped_is_still_an_interrupt():
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as stop:
            raise ValueError("setting an array element with a sequence.") from stop
    except ValueError as error:
        wrapped = error
    assert interrupted_by(wrapped) and interrupted_by(KeyboardInterrupt())
    assert not interrupted_by(ValueError("a real bug"))


def test_the_command_line_reports_a_wrapped_interrupt_as_an_interrupt(monkeypatch, capsys):
    from dqnviz.commands import games

    def wrapped_interrupt(args):
        raise ValueError("setting an array element with a sequence.") from KeyboardInterrupt()

    monkeypatch.setattr(games, "run", wrapped_interrupt)
    assert main(["games"]) == 130
    assert capsys.readouterr().err.strip() == "dqnviz games: interrupted"

    def real_bug(args):
        raise ValueError("a real bug")

    monkeypatch.setattr(games, "run", real_bug)
    with pytest.raises(ValueError, match="a real bug"):
        main(["games"])


def test_a_signal_during_an_update_finishes_the_step_before_saving(tmp_path, monkeypatch, capsys):
    """SIGTERM lands while the 5th update's losses are read (where numpy once swallowed it): the
    step completes, so the snapshot holds 5 updates and the 20 steps that made them."""
    from dqnviz import trainer

    calls = {"started": 0, "finished": 0}
    original = trainer.Trainer._finish_updates

    def signal_on_fifth(self, pending, stats):
        calls["started"] += 1
        if calls["started"] == 5:
            signal.raise_signal(signal.SIGTERM)
        original(self, pending, stats)  # priorities and losses of this update are still read
        calls["finished"] += 1

    monkeypatch.setattr(trainer.Trainer, "_finish_updates", signal_on_fifth)
    dirs = ["--snapshot-dir", str(tmp_path), "--report-dir", str(tmp_path)]
    assert main(["train", "pong", "--epochs", "1", *TINY, *dirs]) == 143  # 128 + SIGTERM
    assert "interrupted: saved" in capsys.readouterr().out
    meta = load_snapshot(tmp_path / "pong_1_interrupted.keras").meta
    interrupted = meta["interrupted"]
    assert (interrupted["phase"], interrupted["steps_done"], interrupted["updates"]) == ("train", 20, 5)
    assert meta["weight_updates"] == 5
    assert calls == {"started": 5, "finished": 5}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
