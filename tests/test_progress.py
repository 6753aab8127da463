"""Progress output when stderr is not a terminal: plain lines with a rate that never reads 0."""

import io

import pytest

from dqnviz import progress as progress_module
from dqnviz.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """Progress's clock, moved by hand: ``clock.now += 10``."""
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "perf_counter", fake)
    return fake


def test_plain_lines_every_few_seconds_and_at_the_end(clock):
    stream = io.StringIO()
    with Progress("epoch 1 test", total=64, stream=stream, every_seconds=10, count_past_total=True) as bar:
        clock.now += 4
        bar.update(32, ε=0.05)  # too soon for a line
        assert stream.getvalue() == ""
        clock.now += 6
        bar.update(64)
        clock.now += 10
        bar.update(6_084, **{"games to finish": 0})  # finishing its games: past the total
    lines = stream.getvalue().splitlines()
    assert lines[0] == "epoch 1 test: 64/64 steps (6.4 steps/s) ε 0.05"
    # the bar stays full, the steps past it are counted on, and the rate counts all 6,084 in 20 s
    assert lines[-1] == "epoch 1 test: 64/64 steps, +6,020 past it (304 steps/s) ε 0.05  games to finish 0"


def test_a_train_phase_that_overshoots_by_part_of_an_iteration_just_ends_full(clock):
    stream = io.StringIO()
    with Progress("epoch 1 train", total=500, stream=stream) as bar:  # 128 envs do not divide 500
        clock.now += 10
        bar.update(512)
    assert stream.getvalue().splitlines()[-1] == "epoch 1 train: 500/500 steps (51 steps/s)"


def test_a_slow_rate_keeps_its_digits(clock):
    stream = io.StringIO()
    with Progress("testing pong_17", total=30, unit="episodes", stream=stream) as bar:
        clock.now += 13
        bar.update(4)
    assert "4/30 episodes (0.31 episodes/s)" in stream.getvalue()


def test_disabled_progress_prints_nothing():
    stream = io.StringIO()
    with Progress("quiet", total=10, stream=stream, enabled=False) as bar:
        bar.update(10)
    assert stream.getvalue() == ""


def test_work_that_ends_early_ends_its_bar_full(clock):
    """A recording whose games end before their frame cap: the last line reads 706/706 frames,
    not 706/18,000, in plain lines and on a terminal (rich)."""
    stream = io.StringIO()
    with Progress("record pong_24", total=18_000, unit="frames", stream=stream) as bar:
        clock.now += 2
        bar.update(706)
        bar.set_total(706)
    assert stream.getvalue().splitlines()[-1] == "record pong_24: 706/706 frames (353 frames/s)"

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    with Progress("record pong_24", total=18_000, unit="frames", stream=Terminal()) as bar:
        bar.update(706)
        bar.set_total(706)
        task = bar._rich.tasks[0]
        assert (task.total, task.completed) == (706, 706)


def test_the_last_line_is_not_printed_twice(clock):
    """Work whose last update came after a long step prints that line once, not again at the end."""
    stream = io.StringIO()
    with Progress("analyse 3 layers", total=4, stream=stream, every_seconds=10) as bar:
        clock.now += 11
        bar.update(3)
        clock.now += 11
        bar.update(4)
        clock.now += 0.01
    assert stream.getvalue().splitlines() == ["analyse 3 layers: 3/4 steps (0.27 steps/s)",
                                              "analyse 3 layers: 4/4 steps (0.18 steps/s)"]


class _Terminal:
    """A stream that says it is a terminal, keeping what is written (or failing: ``broken``)."""

    def __init__(self, broken=False):
        self.text, self.broken = [], broken

    def isatty(self):
        return True

    def write(self, text):
        if self.broken:
            raise BrokenPipeError(32, "Broken pipe")
        self.text.append(text)
        return len(text)

    def flush(self):
        if self.broken:
            raise BrokenPipeError(32, "Broken pipe")

    def fileno(self):
        raise OSError("no file")


def test_a_bar_is_drawn_on_its_own_stream_and_a_stream_gone_stops_a_run(capsys):
    """The rich bar went to stdout whatever its stream (into `dqnviz train … | tee log`; with
    the reader gone, rich ended the process from inside, the phase unsaved). It is drawn on the
    stream that is the terminal; a stream gone disables the bar and asks the run to stop."""
    from dqnviz.progress import Progress
    from dqnviz.stopping import deferred_interrupts, stop_requests_accepted

    terminal = _Terminal()
    with Progress("epoch 1 train", total=10, stream=terminal) as bar:
        bar.update(10, reward=1.0)
    assert "epoch 1 train" in "".join(terminal.text)
    assert capsys.readouterr().out == ""
    with stop_requests_accepted():
        with Progress("epoch 2 train", total=10, stream=_Terminal(broken=True)) as bar:
            bar.update(10)
            assert not bar.enabled
        with pytest.raises(KeyboardInterrupt):
            with deferred_interrupts() as stop:
                stop.check()


def test_words_are_joined_with_commas_and_a_last_and():
    from dqnviz.progress import join_words

    assert join_words(["7"]) == "7"
    assert join_words(["5", "9"]) == "5 and 9"
    assert join_words(("1", "2", "3", "4")) == "1, 2, 3 and 4"
