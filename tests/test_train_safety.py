"""`dqnviz train` never overwrites or corrupts results: a run's name is claimed atomically, the
statistics CSV only ever holds whole rows, outputs are checked before any work, and a resume on
another task or over a damaged CSV is refused or explained in one line."""

import errno
import os
import resource

import pytest

from dqnviz.cli import main
from dqnviz.errors import UserError
from tests.helpers import TINY
from tests.test_cli_train import _contents, _resumable_run_t, _tiny_config, rows


def _one_line_error(capsys, *wanted):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for text in wanted:
        assert text in err, err
    return err


def _no_training(monkeypatch):
    """Make any attempt to build a Trainer fail the test: a refusal must come before any work."""
    from dqnviz import trainer

    def refuse(*args, **kwargs):
        raise AssertionError("a Trainer was built")

    monkeypatch.setattr(trainer.Trainer, "__init__", refuse)


# -- finding 1: two runs choosing the same name at the same moment ---------------------------------

def _race(monkeypatch, tmp_path, name):
    """Let another run claim ``name`` (create and hold its CSV, as StatisticsCSV does) after this
    run has found the name free and checked its outputs, just before it claims the name itself:
    the race of two runs started at the same moment, made deterministic."""
    from dqnviz.commands import train
    from dqnviz.statistics import StatisticsCSV

    original, other = train._check_outputs, {}

    def check_then_lose_the_race(run_name, snapshot_dir, report_dir, *first_epoch):
        original(run_name, snapshot_dir, report_dir, *first_epoch)
        if not other:
            other["csv"] = StatisticsCSV(report_dir / f"{name}.csv", new=True, lock=True)
            other["csv"].append({"epoch": 0, "phase": "random"})
            other["bytes"] = other["csv"].path.read_bytes()

    monkeypatch.setattr(train, "_check_outputs", check_then_lose_the_race)
    return other


def test_a_run_that_loses_its_name_to_another_takes_the_next_free_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    other = _race(monkeypatch, tmp_path, "pong")
    monkeypatch.setattr("dqnviz.trainer.Trainer.train", lambda self: None)
    assert main(["train", "pong", "--epochs", "1", *TINY]) == 0
    out = capsys.readouterr().out
    assert "files of an earlier pong run exist; this run is pong-2" in out
    assert "training pong as run pong-2:" in out
    assert (tmp_path / "reports" / "pong.csv").read_bytes() == other["bytes"]  # the other run's, untouched
    assert (tmp_path / "reports" / "pong-2.csv").exists()
    other["csv"].close()


def test_a_named_run_that_loses_its_name_to_another_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    other = _race(monkeypatch, tmp_path, "same")
    _no_training(monkeypatch)
    assert main(["train", "pong", "--name", "same", "--epochs", "1", *TINY]) == 2
    _one_line_error(capsys, "run 'same' already has files in snapshots/ or reports/")
    assert (tmp_path / "reports" / "same.csv").read_bytes() == other["bytes"]
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["same.csv"]
    other["csv"].close()


def test_a_new_run_claims_its_csv_exclusively(tmp_path):
    from dqnviz.statistics import CSV_COLUMNS, RunTaken, StatisticsCSV

    path = tmp_path / "reports" / "x.csv"
    first = StatisticsCSV(path, new=True, lock=True)
    assert path.read_text().splitlines() == [",".join(CSV_COLUMNS)]
    with pytest.raises(RunTaken) as taken:
        StatisticsCSV(path, new=True)
    assert not taken.value.busy
    with pytest.raises(RunTaken) as taken:  # a resume of the same run while it trains
        StatisticsCSV(path, lock=True)
    assert taken.value.busy
    first.close()  # the lock goes with the file's closing (or the process's end, however it ends)
    StatisticsCSV(path, lock=True).close()


def test_a_resume_of_a_run_being_trained_now_is_refused(tmp_path, monkeypatch, capsys):
    from dqnviz.statistics import StatisticsCSV

    _resumable_run_t(tmp_path, config=_tiny_config())
    monkeypatch.chdir(tmp_path)
    before = _contents(tmp_path)
    held = StatisticsCSV(tmp_path / "reports" / "t.csv", lock=True)  # another `train --resume` writing it now
    _no_training(monkeypatch)
    assert main(["train", "--resume", "snapshots/t_1.keras", "--epochs", "2", "--quiet"]) == 2
    _one_line_error(capsys, "run 't' is being trained by another dqnviz train now")
    held.close()
    assert _contents(tmp_path) == before


def test_a_run_that_fails_before_its_first_row_leaves_no_csv(tmp_path, monkeypatch, capsys):
    """The claimed CSV (a header only) does not outlive a run that stopped before writing a row."""
    from dqnviz import trainer

    def fail(self, *args, **kwargs):
        raise UserError("the test's failure")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trainer.Trainer, "train", fail)
    assert main(["train", "pong", "--name", "f", "--epochs", "1", *TINY]) == 2
    _one_line_error(capsys, "the test's failure")
    assert not (tmp_path / "reports" / "f.csv").exists()


# -- finding 2: whole rows only --------------------------------------------------------------------

ROW = {"epoch": 1, "phase": "train", "steps": 48}


class FailingOS:
    """``os`` as dqnviz/statistics.py (the statistics CSV) sees it, whose ``write`` writes ``allow`` bytes and then fails."""

    def __init__(self, allow, error=errno.ENOSPC):
        self.allow, self.error = allow, error

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        if self.allow <= 0:
            raise OSError(self.error, os.strerror(self.error))
        written = os.write(fd, bytes(data[: self.allow]))
        self.allow -= written
        return written


@pytest.mark.parametrize("allow", [0, 5])
def test_a_failed_append_leaves_the_file_as_it_was(tmp_path, monkeypatch, allow):
    from dqnviz import statistics

    csv_file = statistics.StatisticsCSV(tmp_path / "s.csv")
    csv_file.append(ROW)
    before = csv_file.path.read_bytes()
    monkeypatch.setattr(statistics, "os", FailingOS(allow))
    with pytest.raises(UserError, match=r"^cannot write .*s\.csv: No space left on device$"):
        csv_file.append(ROW)
    monkeypatch.undo()
    assert csv_file.path.read_bytes() == before and csv_file.rows_appended == 1
    csv_file.append(ROW)  # once there is room again, rows go on after the whole ones
    assert [r["phase"] for r in rows(csv_file.path)] == ["train", "train"]


def test_a_file_size_limit_mid_row_leaves_the_file_as_it_was(tmp_path):
    """A real short write: the kernel writes what fits under RLIMIT_FSIZE, then refuses (EFBIG;
    Python ignores SIGXFSZ)."""
    from dqnviz.statistics import StatisticsCSV

    statistics = StatisticsCSV(tmp_path / "s.csv")
    statistics.append(ROW)
    before = statistics.path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 10, hard))
    try:
        with pytest.raises(UserError, match="cannot write .*: File too large"):
            statistics.append(ROW)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert statistics.path.read_bytes() == before


def test_a_run_whose_row_cannot_be_written_stops_in_one_line(tmp_path, monkeypatch, capsys):
    """A full disk at the first train row: one line, exit 2, the CSV holds whole rows only (as when
    a snapshot cannot be written, the run stops there: no snapshot of the epoch)."""
    from dqnviz import statistics

    original = statistics.StatisticsCSV.append

    def full_at_train(self, row):
        if row["phase"] == "train":
            monkeypatch.setattr(statistics, "os", FailingOS(20))
        try:
            return original(self, row)
        finally:
            monkeypatch.setattr(statistics, "os", os)

    monkeypatch.setattr(statistics.StatisticsCSV, "append", full_at_train)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "pong", "--name", "full", "--epochs", "1", *TINY]) == 2
    _one_line_error(capsys, "cannot write reports/full.csv: No space left on device")
    text = (tmp_path / "reports" / "full.csv").read_bytes()
    assert text.endswith(b"\r\n") and [r["phase"] for r in rows(tmp_path / "reports" / "full.csv")] == ["random"]
    assert not list((tmp_path / "snapshots").glob("*.keras"))


def test_a_resume_drops_a_row_cut_short_and_says_so(tmp_path, monkeypatch, capsys):
    _resumable_run_t(tmp_path, config=_tiny_config())
    statistics = tmp_path / "reports" / "t.csv"
    whole = statistics.read_bytes()
    with open(statistics, "ab") as f:
        f.write(b"2,train,48,0,0.0")  # a row half written when an earlier sitting stopped
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "snapshots/t_1.keras", "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "reports/t.csv: dropped its last line, a row cut short when an earlier sitting stopped ('2,train,48,0,0.0'" in out
    assert "training pong as run t:" in out  # the same run goes on: the cut row is no epoch 2 of its own
    assert statistics.read_bytes().startswith(whole)
    assert [(r["epoch"], r["phase"]) for r in rows(statistics)][3:] == [("2", "refill"), ("2", "train"), ("2", "test")]
    assert all(None not in r and len(r) == 16 for r in rows(statistics))


def test_reading_statistics_leaves_out_a_cut_last_line(tmp_path):
    from dqnviz.statistics import read_statistics
    from dqnviz.statistics import CSV_COLUMNS

    path = tmp_path / "s.csv"
    path.write_text(",".join(CSV_COLUMNS) + "\r\n0,random\r\n3,tra")
    table = read_statistics(path)
    assert [r["epoch"] for r in table] == ["0"] and table.cut and table.columns == CSV_COLUMNS


# -- finding 6: the files beside the snapshots are checked first -----------------------------------

@pytest.mark.parametrize("kind", ["optimizer", "validation"])
def test_an_unwritable_sidecar_is_refused_before_a_resume_trains(tmp_path, monkeypatch, capsys, kind):
    _resumable_run_t(tmp_path, config=_tiny_config())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "snapshots" / f"t.{kind}.npz").mkdir()
    before = _contents(tmp_path)
    _no_training(monkeypatch)
    assert main(["train", "--resume", "snapshots/t_1.keras", "--epochs", "2", "--quiet"]) == 2
    _one_line_error(capsys, f"cannot write snapshots/t.{kind}.npz: it is a folder")
    assert _contents(tmp_path) == before


def test_an_unwritable_sidecar_is_refused_before_a_new_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "snapshots" / "n.validation.npz").mkdir(parents=True)
    _no_training(monkeypatch)
    assert main(["train", "pong", "--name", "n", "--epochs", "1", *TINY]) == 2
    _one_line_error(capsys, "cannot write snapshots/n.validation.npz: it is a folder")
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


# -- finding 9: a resumed run keeps its task ------------------------------------------------------

@pytest.mark.parametrize("flag, value, trained", [
    ("--frame-skip", "2", "4"),
    ("--noop-max", "5", "30"),
    ("--repeat-action-probability", "0.25", "0"),
    ("--max-frames-per-episode", "5000", "400"),  # TINY cuts games at 400 frames
])
def test_a_resume_on_another_task_is_refused(tmp_path, monkeypatch, capsys, flag, value, trained):
    _resumable_run_t(tmp_path, config=_tiny_config())
    monkeypatch.chdir(tmp_path)
    before = _contents(tmp_path)
    _no_training(monkeypatch)
    assert main(["train", "--resume", "snapshots/t_1.keras", "--epochs", "2", "--quiet", flag, value]) == 2
    _one_line_error(capsys, f"{flag} {value} cannot change on --resume: the run was trained with {flag} {trained}",
                    "start a new run with --name")
    assert _contents(tmp_path) == before


def test_a_resume_as_a_new_run_may_change_the_task(tmp_path, monkeypatch, capsys):
    _resumable_run_t(tmp_path, config=_tiny_config())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("dqnviz.trainer.Trainer.train", lambda self: None)
    assert main(["train", "--resume", "snapshots/t_1.keras", "--epochs", "2", "--quiet", "--frame-skip", "2",
                 "--name", "t-fs2"]) == 0
    assert "training pong as run t-fs2:" in capsys.readouterr().out
    # and the same task (the flag given, unchanged) goes on as the same run
    assert main(["train", "--resume", "snapshots/t_1.keras", "--epochs", "2", "--quiet", "--frame-skip", "4"]) == 0
    assert "training pong as run t:" in capsys.readouterr().out


# -- finding 11: a damaged CSV is said to be damaged, not another run's ----------------------------

@pytest.mark.parametrize("content, said", [
    (b"", "reports/t.csv is empty, not a statistics CSV"),
    (None, "reports/t.csv holds no rows"),  # the header alone
    (b"0,random,64,0\r\n1,train,48,0\r\n", "reports/t.csv is not a dqnviz statistics CSV (its first line is not the header)"),
    (bytes(range(256)) * 4, "reports/t.csv cannot be read as a statistics CSV"),
])
def test_a_damaged_csv_is_named_so_and_branches_off(tmp_path, monkeypatch, capsys, content, said):
    _resumable_run_t(tmp_path, config=_tiny_config())
    statistics = tmp_path / "reports" / "t.csv"
    if content is None:
        content = statistics.read_bytes().splitlines(keepends=True)[0]
    statistics.write_bytes(content)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("dqnviz.trainer.Trainer.train", lambda self: None)
    assert main(["train", "--resume", "snapshots/t_1.keras", "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{said}; continuing as a new run, t-2" in out and "another run" not in out
    assert statistics.read_bytes() == content


@pytest.mark.parametrize("garbage", [b"2,train,48\r\n", b"hello world\r\n", b"two,train" + b",0" * 14 + b"\r\n",
                                     b"2,warmup" + b",0" * 14 + b"\r\n"])
def test_a_resume_refuses_a_whole_row_no_run_wrote_and_names_its_line(tmp_path, monkeypatch, capsys, garbage):
    _resumable_run_t(tmp_path, config=_tiny_config())
    statistics = tmp_path / "reports" / "t.csv"
    with open(statistics, "ab") as f:
        f.write(garbage)  # a whole line, newline and all: not a crash's leftover, so not dropped silently
    before = statistics.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "snapshots/t_1.keras", "--epochs", "2", "--quiet"]) == 2
    line = len(before.splitlines())
    _one_line_error(capsys, f"reports/t.csv line {line} is not a statistics row ({garbage.decode().strip()!r})")
    assert statistics.read_bytes() == before
    assert not (tmp_path / "snapshots" / "t_2.keras").exists()


def test_malformed_rows_are_found_and_sound_files_pass():
    from dqnviz.statistics import CSV_COLUMNS, first_malformed_row

    header = ",".join(CSV_COLUMNS).encode() + b"\r\n"
    row = b"1,train" + b",0" * 14 + b"\r\n"
    assert first_malformed_row(header) is None
    assert first_malformed_row(header + row + b"\r\n" + row + b"2,tra") is None  # blank line and cut row aside
    assert first_malformed_row(header + row + b"1,train,0\r\n" + row) == (3, "1,train,0")
    assert first_malformed_row(header + row.replace(b"1,", b"-1,", 1)) == (2, "-1,train" + ",0" * 14)
    assert first_malformed_row(header + row.replace(b"1,", "²,".encode(), 1))[0] == 2  # int() refuses "²"
    # lines as the CSV reader counts them: a quoted field may hold a line break
    quoted = b'1,train,"a\r\nb"' + b",0" * 13 + b"\r\n"
    assert first_malformed_row(header + quoted + row + b"x,y\r\n") == (5, "x,y")
    # a file written in text mode on Windows (\r\r\n) reads as rows and blank lines: still sound
    assert first_malformed_row((header + row + row).replace(b"\r\n", b"\r\r\n")) is None


# -- long-run audit: a save that fails, and what a resume says ---------------------------------------

@pytest.mark.parametrize("failing", ["optimizer", "snapshot"])
def test_a_save_that_fails_takes_back_its_epochs_row_so_the_run_resumes_as_itself(tmp_path, monkeypatch, capsys,
                                                                                  failing):
    """A full disk when epoch 2 is saved (the optimizer state after the snapshot, or the snapshot
    itself): the epoch's train row is taken back and its snapshot removed, so that the CSV ends with
    epoch 1; the message says what to resume; the resume goes on as run `full`, not `full-2`."""
    from dqnviz import trainer

    monkeypatch.chdir(tmp_path)
    original = trainer.save_optimizer_state if failing == "optimizer" else trainer.save_snapshot

    def full_at_epoch_2(path, *args):
        if "_2" in str(path) or (failing == "optimizer" and trainer_epoch[0] == 2):
            raise UserError(f"cannot write {path}: No space left on device")
        return original(path, *args)

    trainer_epoch = [0]
    original_train_phase = trainer.Trainer.run_phase

    def run_phase(self, epoch, phase, *args, **kwargs):
        trainer_epoch[0] = epoch
        return original_train_phase(self, epoch, phase, *args, **kwargs)

    monkeypatch.setattr(trainer.Trainer, "run_phase", run_phase)
    monkeypatch.setattr(trainer, "save_optimizer_state" if failing == "optimizer" else "save_snapshot", full_at_epoch_2)
    assert main(["train", "pong", "--name", "full", "--epochs", "2", *TINY]) == 2
    _one_line_error(capsys, "No space left on device; epoch 2's training is not kept (its row is taken back from "
                            "full.csv): make room, then continue with: dqnviz train --resume snapshots/full_1.keras")
    assert [(r["epoch"], r["phase"]) for r in rows(tmp_path / "reports" / "full.csv")] == [
        ("0", "random"), ("1", "train"), ("1", "test")]
    assert sorted(p.name for p in (tmp_path / "snapshots").glob("*.keras")) == ["full_1.keras"]
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "snapshots/full_1.keras", "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "training pong as run full:" in out and "optimizer state restored" in out
    assert [(r["epoch"], r["phase"]) for r in rows(tmp_path / "reports" / "full.csv")][3:] == [
        ("2", "refill"), ("2", "train"), ("2", "test")]


def test_a_second_save_that_fails_says_the_first_is_kept(tmp_path, monkeypatch, capsys):
    from dqnviz import trainer

    monkeypatch.chdir(tmp_path)
    original = trainer.save_snapshot

    def full_once_tested(path, model, meta):
        if meta.get("test_score") is not None:
            raise UserError(f"cannot write {path}: No space left on device")
        return original(path, model, meta)

    monkeypatch.setattr(trainer, "save_snapshot", full_once_tested)
    assert main(["train", "pong", "--name", "s", "--epochs", "1", *TINY]) == 2
    _one_line_error(capsys, "s_1.keras, saved before the test phase, is kept without its test score (the test's "
                            "row is in s.csv): a resume goes on from it")
    assert (tmp_path / "snapshots" / "s_1.keras").exists()


def test_a_resume_checks_the_snapshot_it_will_write_first_and_names_it(tmp_path, monkeypatch, capsys):
    _resumable_run_t(tmp_path, config=_tiny_config())
    monkeypatch.chdir(tmp_path)
    from dqnviz import outputs

    checked = []
    monkeypatch.setattr(outputs, "check_writable", lambda path: checked.append(str(path)))
    _no_training(monkeypatch)
    with pytest.raises(AssertionError, match="a Trainer was built"):
        main(["train", "--resume", "snapshots/t_1.keras", "--epochs", "3", "--quiet"])
    assert "snapshots/t_2.keras" in checked and "snapshots/t_1.keras" not in checked


def test_a_resume_says_which_options_changed_and_an_optimizer_state_of_another_optimizer(tmp_path, monkeypatch,
                                                                                         capsys):
    _resumable_run_t(tmp_path, config=_tiny_config())
    monkeypatch.chdir(tmp_path)
    from dqnviz.config import TrainConfig
    from dqnviz.learner import Learner
    from dqnviz.snapshot import save_optimizer_state

    learner = Learner(6, TrainConfig(batch_size=8, optimizer="rmsprop"))
    save_optimizer_state(tmp_path / "snapshots" / "t.optimizer.npz", learner.optimizer_state(), 48)
    assert main(["train", "--resume", "snapshots/t_1.keras", "--epochs", "2", "--batch-size", "16",
                 "--optimizer", "adam"]) == 0
    out = capsys.readouterr().out
    assert "changed from the run's options: --batch-size 8 → 16, --optimizer rmsprop → adam" in out
    assert "does not fit this run's optimizer (saved by --optimizer rmsprop): --optimizer adam starts afresh" in out


def test_a_resumed_sitting_plays_other_games_than_the_first():
    from dqnviz.trainer import sitting_seed

    assert sitting_seed(7, 0) == 7  # a fresh run: --seed itself, as ever
    seeds = {sitting_seed(7, steps) for steps in (64, 112, 160)}
    assert len(seeds) == 3 and 7 not in seeds and seeds == {sitting_seed(7, s) for s in (64, 112, 160)}
    assert all(0 <= s < 2**31 - 10_000 for s in seeds) and sitting_seed(8, 64) != sitting_seed(7, 64)


def test_a_save_that_fails_in_a_resumed_sitting_resumes_as_the_same_run(tmp_path, monkeypatch, capsys):
    """The sitting's refill row for the failed epoch stays in the CSV (it records no training): the
    advised resume still goes on as run `full`; a sitting resumed from the epoch's _interrupted
    snapshot is told to resume that one; and a resumed sitting's environments are seeded anew."""
    from dqnviz import trainer

    monkeypatch.chdir(tmp_path)
    assert main(["train", "pong", "--name", "full", "--epochs", "1", *TINY]) == 0
    original = trainer.save_optimizer_state

    def full(path, *args):
        raise UserError(f"cannot write {path}: No space left on device")

    seeds, make_envs = [], trainer.make_envs
    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: seeds.append(seed) or
                        make_envs(rom, config, training, seed))
    monkeypatch.setattr(trainer, "save_optimizer_state", full)
    capsys.readouterr()
    assert main(["train", "--resume", "snapshots/full_1.keras", "--epochs", "2", *TINY]) == 2
    _one_line_error(capsys, "epoch 2's training is not kept", "continue with: dqnviz train --resume snapshots/full_1.keras")
    assert seeds[0] == trainer.sitting_seed(0, 64 + 48) != 0  # from --seed 0 and the 112 agent steps played
    assert [(r["epoch"], r["phase"]) for r in rows(tmp_path / "reports" / "full.csv")][3:] == [("2", "refill")]
    monkeypatch.setattr(trainer, "save_optimizer_state", original)
    assert main(["train", "--resume", "snapshots/full_1.keras", "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "training pong as run full:" in out and not list((tmp_path / "reports").glob("full-2*"))
    assert [(r["epoch"], r["phase"]) for r in rows(tmp_path / "reports" / "full.csv")][3:] == [
        ("2", "refill"), ("2", "refill"), ("2", "train"), ("2", "test")]


def test_testing_goes_on_when_a_snapshot_vanishes_before_its_turn(tmp_path, monkeypatch, capsys):
    """Snapshots after the first are loaded again when their turn comes: one removed meanwhile is
    named in one line at the end, after the others' results and their CSV."""
    import shutil

    from dqnviz import agent
    from tests.conftest import make_snapshot

    first = make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1)
    second = tmp_path / "breakout_2.keras"
    shutil.copy(first, second)
    original = agent.evaluate

    def evaluate_then_remove(*args, **kwargs):
        results = original(*args, **kwargs)
        second.unlink(missing_ok=True)
        return results

    monkeypatch.setattr(agent, "evaluate", evaluate_then_remove)
    csv_path = tmp_path / "scores.csv"
    assert main(["test", str(first), str(second), "--episodes", "2", "--max-frames", "200", "--quiet",
                 "--csv", str(csv_path)]) == 2
    captured = capsys.readouterr()
    assert "breakout_2 was not tested" in captured.err and captured.err.strip().splitlines()[-1].endswith(
        "breakout_2 was not tested (removed or changed since the start); the others' results stand")
    assert {r["snapshot"] for r in rows(csv_path)} == {"breakout_1"} and "breakout_1" in captured.out


def test_a_save_that_fails_after_resuming_an_interrupted_epoch_names_its_interrupted_snapshot(tmp_path, monkeypatch,
                                                                                            capsys):
    from dqnviz import trainer

    monkeypatch.chdir(tmp_path)
    assert main(["train", "pong", "--name", "cut", "--epochs", "1", *TINY]) == 0
    from tests.helpers import interrupt_on_update

    original = interrupt_on_update(monkeypatch, 2)
    assert main(["train", "--resume", "snapshots/cut_1.keras", "--epochs", "2", *TINY]) == 130
    monkeypatch.setattr(trainer.Trainer, "_start_updates", original)

    def full(path, *args):
        raise UserError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(trainer, "save_optimizer_state", full)
    capsys.readouterr()
    assert main(["train", "--resume", "snapshots/cut_2_interrupted.keras", "--epochs", "2", *TINY]) == 2
    _one_line_error(capsys, "continue with: dqnviz train --resume snapshots/cut_2_interrupted.keras")
    assert not (tmp_path / "snapshots" / "cut_2.keras").exists()
