"""A stop signal ends a run at a point where its state is whole, and is never lost or mistaken for a crash."""

import os
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


# --- the moments between phases, a hang-up, and output that goes away (interruption audit) ---

@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """The run's folders, and the working directory's reports/ that a resume looks in first, in tmp_path."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _dirs(tmp_path):
    return ["--snapshot-dir", str(tmp_path / "snapshots"), "--report-dir", str(tmp_path / "reports")]


def _rows(tmp_path, run="pong"):
    from dqnviz.statistics import read_statistics

    return [(int(row["epoch"]), row["phase"]) for row in read_statistics(tmp_path / "reports" / f"{run}.csv")]


def test_a_stop_while_a_trained_epoch_is_saved_keeps_the_epoch_and_resumes_as_the_same_run(
        tmp_path, in_tmp, monkeypatch, capsys):
    """Ctrl-C just after a train phase (its row written, its snapshot being saved) saved an
    _interrupted snapshot beside the epoch's train row, and resuming it went on as a new run
    (pong-2). Now the save finishes and the run stops as in the test phase: the resume plays the
    test, and the run goes on in its own CSV."""
    from dqnviz import trainer

    original = trainer.Trainer._save_trained_epoch

    def stopped_while_saving(self, epoch):
        signal.raise_signal(signal.SIGINT)
        return original(self, epoch)

    monkeypatch.setattr(trainer.Trainer, "_save_trained_epoch", stopped_while_saving)
    assert main(["train", "pong", "--epochs", "2", *TINY, *_dirs(tmp_path)]) == 130
    out = capsys.readouterr().out
    assert "saved" in out and "epoch 1's test phase was cut short" in out
    names = sorted(p.name for p in (tmp_path / "snapshots").glob("*.keras"))
    assert names == ["pong_1.keras"]
    assert _rows(tmp_path)[-1] == (1, "train")
    monkeypatch.setattr(trainer.Trainer, "_save_trained_epoch", original)
    assert main(["train", "--resume", str(tmp_path / "snapshots" / "pong_1.keras"), "--epochs", "2", *TINY]) == 0
    out = capsys.readouterr().out
    assert "new run" not in out and "playing it again" in out
    assert not (tmp_path / "reports" / "pong-2.csv").exists()
    assert [r for r in _rows(tmp_path) if r[1] in ("train", "test")] == [(1, "train"), (1, "test"), (2, "train"),
                                                                          (2, "test")]


def _stop_during_the_tested_save(monkeypatch):
    """Ctrl-C while the trainer saves an epoch's snapshot with its test score; returns the real save."""
    from dqnviz import trainer

    original = trainer.Trainer.save

    def stopped_while_saving(self, epoch, test_score=None, suffix="", **extra):
        if test_score is not None:
            signal.raise_signal(signal.SIGINT)
        return original(self, epoch, test_score=test_score, suffix=suffix, **extra)

    monkeypatch.setattr(trainer.Trainer, "save", stopped_while_saving)
    return original


def test_a_stop_while_a_tested_epoch_is_saved_keeps_it_whole(tmp_path, in_tmp, monkeypatch, capsys):
    """Ctrl-C during the save that adds the test score said "the test phase was cut short" though
    its row was written, and left the snapshot without its score. Now the save finishes: the
    snapshot has its score, no _interrupted one is left, and the resume goes on with epoch 2."""
    from dqnviz import trainer

    original = _stop_during_the_tested_save(monkeypatch)
    assert main(["train", "pong", "--epochs", "2", *TINY, *_dirs(tmp_path)]) == 130
    out = capsys.readouterr().out
    assert "it stopped after epoch 1's test phase" in out and "cut short" not in out
    snapshot = tmp_path / "snapshots" / "pong_1.keras"
    assert load_snapshot(snapshot).meta["test_score"] is not None
    assert sorted(p.name for p in (tmp_path / "snapshots").glob("*.keras")) == ["pong_1.keras"]
    monkeypatch.setattr(trainer.Trainer, "save", original)
    assert main(["train", "--resume", str(snapshot), "--epochs", "2", *TINY]) == 0
    out = capsys.readouterr().out
    assert "playing it again" not in out and "new run" not in out
    assert [r for r in _rows(tmp_path) if r[1] in ("train", "test")] == [(1, "train"), (1, "test"), (2, "train"),
                                                                          (2, "test")]


def test_a_second_stop_before_the_trained_epoch_is_saved_takes_its_row_back(tmp_path, in_tmp, monkeypatch, capsys):
    """Two Ctrl-Cs right after a train phase stop at once: the epoch's row is taken back, so its
    _interrupted snapshot (all its steps played) resumes as the same run, and no whole-epoch
    snapshot lies beside it."""
    from dqnviz import trainer

    def stopped_twice(self, epoch):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # the impatient second: raised here, before any save
        raise AssertionError("not reached")

    original = trainer.Trainer._save_trained_epoch
    monkeypatch.setattr(trainer.Trainer, "_save_trained_epoch", stopped_twice)
    assert main(["train", "pong", "--epochs", "1", *TINY, *_dirs(tmp_path)]) == 130
    names = sorted(p.name for p in (tmp_path / "snapshots").glob("*.keras"))
    assert names == ["pong_1_interrupted.keras"]
    assert _rows(tmp_path) == [(0, "random")]
    meta = load_snapshot(tmp_path / "snapshots" / names[0]).meta
    assert meta["interrupted"]["steps_done"] == 48
    monkeypatch.setattr(trainer.Trainer, "_save_trained_epoch", original)
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "snapshots" / names[0]), "--epochs", "1", *TINY]) == 0
    assert "new run" not in capsys.readouterr().out
    assert [r for r in _rows(tmp_path) if r[1] in ("train", "test")] == [(1, "train"), (1, "test")]


def test_a_fresh_run_stopped_again_before_its_first_snapshot_leaves_no_file(tmp_path, in_tmp, monkeypatch, capsys):
    """Two quick Ctrl-Cs in epoch 1's train phase, the second while its _interrupted snapshot is
    saved: nothing to resume from, so no CSV (its random row only) keeps the name from a new run."""
    from dqnviz import trainer

    original_phase, original_save = trainer.Trainer.run_phase, trainer.Trainer.save

    def stopped_in_training(self, epoch, name, *args, **kwargs):
        if name == "train":
            raise KeyboardInterrupt
        return original_phase(self, epoch, name, *args, **kwargs)

    def stopped_while_saving(self, *args, **kwargs):
        raise KeyboardInterrupt  # the second Ctrl-C, before the snapshot is written

    monkeypatch.setattr(trainer.Trainer, "run_phase", stopped_in_training)
    monkeypatch.setattr(trainer.Trainer, "save", stopped_while_saving)
    assert main(["train", "pong", "--epochs", "2", "--name", "twice", *TINY, *_dirs(tmp_path)]) == 130
    assert "stopped before its first snapshot: removed" in capsys.readouterr().out
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []
    monkeypatch.setattr(trainer.Trainer, "run_phase", original_phase)
    monkeypatch.setattr(trainer.Trainer, "save", original_save)
    assert main(["train", "pong", "--epochs", "1", "--name", "twice", *TINY, *_dirs(tmp_path)]) == 0  # the name is free


def test_a_run_stopped_before_its_first_row_leaves_no_validation_states(tmp_path, in_tmp, monkeypatch, capsys):
    """The validation states are saved before epoch 0's row: a stop between them removed the CSV
    but left snapshots/<run>.validation.npz."""
    from dqnviz import trainer

    original = trainer.Trainer.write_row

    def stopped_before_the_row(self, stats, *args, **kwargs):
        if stats.phase == "random":
            raise KeyboardInterrupt
        return original(self, stats, *args, **kwargs)

    monkeypatch.setattr(trainer.Trainer, "write_row", stopped_before_the_row)
    assert main(["train", "pong", "--epochs", "1", *TINY, *_dirs(tmp_path)]) == 130
    assert "no snapshot to save" in capsys.readouterr().out
    left = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert left == []


def test_hangup_stops_like_sigterm_unless_ignored():
    """SIGHUP (a terminal closed, an ssh session lost) killed every command outright, so a
    training run lost its phase; now it stops the command as Ctrl-C does (exit 129), except
    under nohup, which ignores it."""
    from dqnviz import stopping

    hangup = getattr(signal, "SIGHUP", None)
    if hangup is None:  # pragma: no cover - Windows has no hang-up signal
        pytest.skip("no SIGHUP on this platform")
    previous = signal.signal(hangup, signal.SIG_DFL)
    try:
        handlers = stopping.raise_interrupt_on_stop_signals()
        assert signal.getsignal(hangup) is stopping._raise_interrupt
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(hangup)
        assert stopping.exit_status() == 129
        stopping.restore_signals(handlers)
        signal.signal(hangup, signal.SIG_IGN)  # nohup
        handlers = stopping.raise_interrupt_on_stop_signals()
        assert signal.getsignal(hangup) is signal.SIG_IGN
        stopping.restore_signals(handlers)
    finally:
        signal.signal(hangup, previous)


def test_a_hangup_saves_the_training_runs_interrupted_snapshot(tmp_path, in_tmp, monkeypatch, capsys):
    from dqnviz import trainer

    if not hasattr(signal, "SIGHUP"):  # pragma: no cover
        pytest.skip("no SIGHUP on this platform")
    original = trainer.Trainer._finish_updates
    calls = []

    def hangup_on_third(self, pending, stats):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGHUP)
        original(self, pending, stats)

    monkeypatch.setattr(trainer.Trainer, "_finish_updates", hangup_on_third)
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        assert main(["train", "pong", "--epochs", "1", *TINY, *_dirs(tmp_path)]) == 129
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert "interrupted: saved" in capsys.readouterr().out
    meta = load_snapshot(tmp_path / "snapshots" / "pong_1_interrupted.keras").meta
    assert meta["interrupted"]["updates"] == 3


def test_a_reader_that_closes_stdout_stops_the_run_where_it_can_resume(tmp_path):
    """`dqnviz train … | head -1`: the next log line failed right after the epoch's row was
    written, and the run died (exit 141, nothing on stderr) with no snapshot to resume. Now the
    closed pipe stops the run as a stop signal does, said on stderr, and the run resumes."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    command = [sys.executable, "-m", "dqnviz", "train", "pong", "--epochs", "2", *TINY, *_dirs(tmp_path)]
    with subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        first = process.stdout.readline()
        process.stdout.close()  # as head -1 does
        _, err = process.communicate(timeout=300)
    assert first.startswith(b"training pong as run pong")
    assert process.returncode == 141, err.decode()
    err = err.decode()
    assert "Traceback" not in err
    assert "its output could not be written (a closed pipe, a full disk), interrupted: saved" in err
    saved = err.split("continue with: dqnviz train --resume ")[1].split()[0]
    resumed = subprocess.run([sys.executable, "-m", "dqnviz", "train", "--resume", saved, "--epochs", "2", *TINY],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "new run" not in resumed.stdout
    assert (2, "test") in _rows(tmp_path)


def test_a_stop_while_the_command_line_is_imported_is_one_line(tmp_path):
    """A Ctrl-C in the command's first tenth of a second (importing it) printed Python's traceback."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = (
        "import os, signal, sys, importlib.abc\n"
        "class StopOnImport(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'dqnviz.cli':\n"
        "            signal.raise_signal(signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, StopOnImport())\n"
        "sys.argv = ['dqnviz', 'games']\n"
        "from dqnviz.__main__ import main\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=root),
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr.strip(), done.stdout) == (130, "dqnviz: interrupted", "")


def test_a_stop_request_counts_only_within_a_run_and_never_as_a_signal():
    """request_stop (output that cannot be written) stops a training run at its next check; a
    request outside a run (a recording, the Python API) asks for nothing and lingers nowhere; and
    after a request, one real Ctrl-C is still the first signal, deferred like any first one."""
    from dqnviz.stopping import deferred_interrupts, request_stop, stop_requests_accepted

    request_stop()  # outside any run: nothing
    with deferred_interrupts() as stop:
        stop.check()
    with stop_requests_accepted():
        request_stop()  # no block open: the next one raises
        with pytest.raises(KeyboardInterrupt):
            with deferred_interrupts() as stop:
                stop.check()
        with deferred_interrupts() as stop:
            request_stop()
            signal.raise_signal(signal.SIGINT)  # not "the second stop": no raise here
            reached = True
            with pytest.raises(KeyboardInterrupt):
                stop.check()
        assert reached
        request_stop()  # left pending when the run ends: dropped
    with deferred_interrupts() as stop:
        stop.check()


def test_a_second_stop_before_a_train_row_is_written_leaves_the_last_epochs_rows(tmp_path, in_tmp, monkeypatch):
    """Two quick stops while epoch 2's train row was being made (its meanq measured) withdrew the
    CSV's last row, which was epoch 1's test row: the row is marked as written only once it is."""
    from dqnviz import trainer

    original = trainer.Trainer.meanq

    def stopped_twice_in_meanq(self):
        stats = self.phase_stats
        if stats is not None and (stats.epoch, stats.phase) == (2, "train"):
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return original(self)

    monkeypatch.setattr(trainer.Trainer, "meanq", stopped_twice_in_meanq)
    assert main(["train", "pong", "--epochs", "2", *TINY, *_dirs(tmp_path)]) == 130
    assert _rows(tmp_path) == [(0, "random"), (1, "train"), (1, "test")]
    assert sorted(p.name for p in (tmp_path / "snapshots").glob("*.keras")) == ["pong_1.keras",
                                                                               "pong_2_interrupted.keras"]


def test_a_stop_while_the_last_epoch_is_saved_finishes_the_run(tmp_path, in_tmp, monkeypatch, capsys):
    """A stop while the run's last epoch was saved with its score said "interrupted … continue
    with --resume", whose resume then had nothing to train: the run is finished, and says so."""
    _stop_during_the_tested_save(monkeypatch)
    assert main(["train", "pong", "--epochs", "1", *TINY, *_dirs(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "finished epoch 1" in out and "interrupted" not in out


def test_an_epoch_one_interrupted_snapshot_resumes_into_its_own_runs_csv(tmp_path, monkeypatch, capsys):
    """A snapshot stopped in epoch 1's train phase matched any CSV with an epoch-0 row: resumed
    from a working directory whose reports/ held another run of that name, it took that CSV for
    its run's and went on as <run>-2 there. Its own folders come first now."""
    import shutil

    from tests.conftest import stop_in_phase

    elsewhere = tmp_path / "elsewhere"
    stop_in_phase(monkeypatch, "train")
    assert main(["train", "pong", "--epochs", "1", *TINY, *_dirs(elsewhere)]) == 130
    monkeypatch.undo()
    snapshot = elsewhere / "snapshots" / "pong_1_interrupted.keras"
    assert snapshot.exists()
    work = tmp_path / "work"
    (work / "reports").mkdir(parents=True)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shutil.copy(os.path.join(root, "reports", "pong.csv"), work / "reports" / "pong.csv")  # another run, 26 epochs
    monkeypatch.chdir(work)
    capsys.readouterr()
    assert main(["train", "--resume", str(snapshot), "--epochs", "1", *TINY]) == 0
    assert "new run" not in capsys.readouterr().out
    assert (1, "test") in _rows(elsewhere)
    assert sorted(p.name for p in (work / "reports").iterdir()) == ["pong.csv"]
