"""The train and test commands end to end on a tiny config, resume, Ctrl-C, and bad input."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from dqnviz.cli import main
from dqnviz.snapshot import load_snapshot
from tests.helpers import TINY


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_then_test_then_resume(tmp_path, capsys):
    dirs = ["--snapshot-dir", str(tmp_path / "snap"), "--report-dir", str(tmp_path / "rep")]
    assert main(["train", "breakout", "--epochs", "2", *TINY, *dirs]) == 0
    table = rows(tmp_path / "rep" / "breakout.csv")
    # the last line names the epoch whose test phase scored best, and how to rank them properly
    tests = {int(r["epoch"]): float(r["average_reward"]) for r in table if r["phase"] == "test"}
    top = max(tests.values())
    best = max(epoch for epoch, average in tests.items() if average == top)  # of ties, the latest
    last = capsys.readouterr().out.strip().splitlines()[-1]
    named = (f"epoch {best}, average {top:.1f} over " if list(tests.values()).count(top) == 1 else
             f"epochs 1 and 2 tied, average {top:.1f} (epoch 2: ")
    assert last.startswith(f"finished epochs 1–2; best test phase: {named}")
    assert str(tmp_path / "snap" / f"breakout_{best}.keras") in last and "dqnviz test " in last
    assert [(r["epoch"], r["phase"]) for r in table] == [("0", "random"), ("1", "train"), ("1", "test"), ("2", "train"), ("2", "test")]
    assert list(table[0]) == ["epoch", "phase", "steps", "nr_games", "average_reward", "min_game_reward",
                              "max_game_reward", "last_exploration_rate", "total_train_steps", "replay_memory_count",
                              "meanq", "meancost", "weight_updates", "total_time", "epoch_time", "steps_per_second"]
    assert int(table[3]["weight_updates"]) == 2 * 48 // 4
    assert float(table[1]["last_exploration_rate"]) < 1.0
    snapshot = load_snapshot(tmp_path / "snap" / "breakout_2.keras")
    meta = snapshot.meta
    assert meta["game"] == "breakout" and meta["epoch"] == 2 and meta["action_names"][:2] == ["NOOP", "FIRE"]
    assert meta["test_score"]["average"] == pytest.approx(float(table[4]["average_reward"]))
    assert meta["config"]["train_steps"] == 48 and meta["total_steps"] == 64 + 2 * 48
    assert meta["backend"] in ("tensorflow", "jax") and len(meta["rom_md5"]) == 32

    capsys.readouterr()
    assert main(["test", str(tmp_path / "snap" / "breakout_2.keras"), "--episodes", "2", "--max-frames", "400",
                 "--csv", str(tmp_path / "episodes.csv"), "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("average ") and last.endswith(")") and "over 2 episodes (min" in last
    assert len(rows(tmp_path / "episodes.csv")) == 2

    # --epochs is the run's last epoch: one that is already done is refused before anything runs.
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "snap" / "breakout_2.keras"), "--epochs", "2", *dirs]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--epochs 2 would train nothing" in error and "epoch 3" in error
    assert main(["train", "--resume", str(tmp_path / "snap" / "breakout_2.keras"), *dirs]) == 2  # its own --epochs
    error = capsys.readouterr().err.strip()
    assert error == ("dqnviz train: error: the run has trained all its epochs: breakout_2.keras continues at epoch 3, "
                     "past its --epochs 2; give --epochs to go on (--epochs 12 trains epochs 3–12)")
    assert len(rows(tmp_path / "rep" / "breakout.csv")) == 5

    # Resume: numbering continues, the CSV is appended, nothing is overwritten.
    before = (tmp_path / "snap" / "breakout_2.keras").read_bytes()
    assert main(["train", "--resume", str(tmp_path / "snap" / "breakout_2.keras"), "--epochs", "3", *dirs]) == 0
    table = rows(tmp_path / "rep" / "breakout.csv")
    # the refill of the replay memory has a row of its own: the statistics say where the run resumed
    assert [(r["epoch"], r["phase"]) for r in table][5:] == [("3", "refill"), ("3", "train"), ("3", "test")]
    refill = table[5]
    assert int(refill["steps"]) == 64 and refill["total_train_steps"] == table[4]["total_train_steps"]
    assert refill["weight_updates"] == table[4]["weight_updates"] and float(refill["meancost"]) == 0
    assert int(refill["replay_memory_count"]) == 64
    assert (tmp_path / "snap" / "breakout_2.keras").read_bytes() == before
    assert load_snapshot(tmp_path / "snap" / "breakout_3.keras").meta["total_steps"] > meta["total_steps"]

    # meanq goes on over epoch 0's validation states, kept beside the snapshots, not over states
    # drawn afresh from the refilled replay memory (which made the curve step at every resume)
    assert "validation states restored from" in capsys.readouterr().out
    with np.load(tmp_path / "snap" / "breakout.validation.npz", allow_pickle=False) as stored:
        validation = stored["states"]
    assert validation.shape == (16, 84, 84, 4) and validation.dtype == np.uint8
    q = load_snapshot(tmp_path / "snap" / "breakout_3.keras").model.predict(validation, verbose=0)
    assert float(table[6]["meanq"]) == pytest.approx(float(q.max(axis=1).mean()), rel=1e-4, abs=1e-5)

    # A second fresh run of the same game gets its own name instead of overwriting.
    assert main(["train", "breakout", "--epochs", "1", *TINY, *dirs]) == 0
    assert (tmp_path / "rep" / "breakout-2.csv").exists() and (tmp_path / "snap" / "breakout-2_1.keras").exists()
    assert len(rows(tmp_path / "rep" / "breakout.csv")) == 8


def test_ctrl_c_saves_a_snapshot_that_resumes(tmp_path, monkeypatch, capsys):
    from dqnviz import trainer

    calls = {"n": 0}
    original = trainer.Trainer._start_updates

    def interrupt_on_fifth(self, stats, transitions):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, stats, transitions)

    monkeypatch.setattr(trainer.Trainer, "_start_updates", interrupt_on_fifth)
    dirs = ["--snapshot-dir", str(tmp_path / "snap"), "--report-dir", str(tmp_path / "rep")]
    assert main(["train", "pong", "--epochs", "1", *TINY, *dirs]) == 130
    out = capsys.readouterr().out
    saved = tmp_path / "snap" / "pong_1_interrupted.keras"
    assert saved.exists() and f"--resume {saved}" in out
    meta = load_snapshot(saved).meta
    interrupted = meta["interrupted"]
    assert (interrupted["phase"], interrupted["steps_done"]) == ("train", 20)  # the 5th update comes after step 20
    # what the phase measured so far is kept for its row: 4 updates, the first one's loss read
    assert interrupted["updates"] == 4 and interrupted["cost_count"] == 1 and interrupted["seconds"] > 0
    assert interrupted["game_scores"] == [] and np.isfinite(interrupted["cost_sum"])
    assert [r["phase"] for r in rows(tmp_path / "rep" / "pong.csv")] == ["random"]
    monkeypatch.setattr(trainer.Trainer, "_start_updates", original)
    assert (tmp_path / "snap" / "pong.optimizer.npz").exists()
    assert main(["train", "--resume", str(saved), *dirs]) == 0
    out = capsys.readouterr().out
    assert f"optimizer state restored from {tmp_path / 'snap' / 'pong.optimizer.npz'}" in out
    table = rows(tmp_path / "rep" / "pong.csv")
    assert [(r["epoch"], r["phase"]) for r in table] == [("0", "random"), ("1", "refill"), ("1", "train"), ("1", "test")]
    # the epoch's one train row counts the whole phase, both sittings: 20 + 28 steps, and its rate
    # spreads them over both sittings' seconds
    assert int(table[2]["steps"]) == 48 and "epoch 1 train: 48 steps (20 of them before the interruption)" in out
    assert float(table[2]["steps_per_second"]) < 48 / interrupted["seconds"]
    # and its epoch time counts both sittings' seconds too, as its rate does (not the second alone)
    assert float(table[2]["epoch_time"]) == pytest.approx(48 / float(table[2]["steps_per_second"]), rel=0.05, abs=0.05)
    assert float(table[2]["epoch_time"]) >= interrupted["seconds"]
    # the update count goes on from the 4 made before Ctrl-C stopped the 5th (at step 20): the
    # resumed 28 steps make one per 4, 7 more; the refill before them made none
    assert meta["weight_updates"] == 4 and int(table[1]["weight_updates"]) == 4 and int(table[2]["weight_updates"]) == 4 + 7
    assert (tmp_path / "snap" / "pong_1.keras").exists()
    # the stopping point is spent once the whole epoch is saved: `test snap/pong_*.keras` tests epochs only
    assert not saved.exists() and f"removed {saved}: pong_1.keras, the whole epoch, supersedes it" in out


def test_ctrl_c_while_a_resumed_run_refills_its_replay_memory_says_how_to_go_on(tmp_path, monkeypatch, capsys):
    from dqnviz import trainer

    dirs = ["--snapshot-dir", str(tmp_path / "snap"), "--report-dir", str(tmp_path / "rep")]
    assert main(["train", "pong", "--epochs", "1", *TINY, *dirs]) == 0
    original = trainer.Trainer.run_phase

    def stop_in_refill(self, epoch, phase, *args, **kwargs):
        if phase == "refill":
            raise KeyboardInterrupt
        return original(self, epoch, phase, *args, **kwargs)

    monkeypatch.setattr(trainer.Trainer, "run_phase", stop_in_refill)
    snapshot = tmp_path / "snap" / "pong_1.keras"
    before = (tmp_path / "rep" / "pong.csv").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(snapshot), "--epochs", "2", *dirs]) == 130
    out = capsys.readouterr().out
    assert (f"interrupted: nothing new to save; continue with: dqnviz train --resume {snapshot} "
            f"(it stopped while refilling the replay memory)") in out
    assert (tmp_path / "rep" / "pong.csv").read_bytes() == before


def _with_meta_fields(path, **fields):
    """Rewrite the snapshot at ``path`` with ``fields`` set in its metadata (as an older dqnviz wrote them)."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["dqnviz.json"] = json.dumps({**json.loads(members["dqnviz.json"]), **fields}).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_an_older_interrupted_snapshot_that_says_only_true_resumes_its_epoch_from_the_start(tmp_path, monkeypatch, capsys):
    """Older dqnvizes marked an ``_interrupted`` snapshot ``"interrupted": true``, without the steps it
    had played: the resume trains that epoch whole, and its CSV is recognised as the run's."""
    from dqnviz import trainer

    from tests.helpers import interrupt_on_update

    original = interrupt_on_update(monkeypatch, 2)
    dirs = ["--snapshot-dir", str(tmp_path / "snap"), "--report-dir", str(tmp_path / "rep")]
    assert main(["train", "pong", "--epochs", "1", *TINY, *dirs]) == 130
    monkeypatch.setattr(trainer.Trainer, "_start_updates", original)
    saved = tmp_path / "snap" / "pong_1_interrupted.keras"
    _with_meta_fields(saved, interrupted=True)
    capsys.readouterr()
    assert main(["train", "--resume", str(saved), *dirs]) == 0, capsys.readouterr().err
    table = rows(tmp_path / "rep" / "pong.csv")
    assert [(r["epoch"], r["phase"]) for r in table] == [("0", "random"), ("1", "refill"), ("1", "train"), ("1", "test")]
    assert int(table[2]["steps"]) == 48  # the whole epoch: how far the first sitting went is unknown
    assert (tmp_path / "snap" / "pong_1.keras").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "no_such_game"], "unknown game"),
    (["train", "breakuot"], "did you mean breakout"),
    (["train", "combat"], "ships this ROM"),  # an ale-py ROM its emulator cannot load (it would exit(1) from C++)
    (["train", "/nonexistent/rom.bin"], "ROM file not found"),
    (["train", "pong", "--train-steps", "0"], "--train-steps must be at least 1, got 0"),
    (["train", "pong", "--replay-size", "-5"], "--replay-size must be at least 1, got -5"),
    (["train", "pong", "--replay-size", "100000000"], "use --replay-size"),
    (["train", "pong", "--epsilon-start", "0.1", "--epsilon-end", "0.5"], "--epsilon-end 0.5 is above --epsilon-start 0.1"),
    (["train", "pong", "--replay-size", "35"], "--replay-size 35 is too small to draw a batch of 32 with 1 env(s): give at least 36"),
    (["train", "pong", "--replay-size", "3000", "--n-step", "100000"],
     "--replay-size 3,000 is too small to draw a batch of 32 with 1 env(s), --history 4 and --n-step 100000 (each "
     "environment's last 100,003 slots cannot be drawn): give at least 100,035"),
    (["train", "pong", "--replay-size", "100", "--num-envs", "64"], "give at least 320"),
    (["train", "pong", "--max-frames-per-episode", "3"], "--max-frames-per-episode 3 is shorter than one agent step"),
    (["train", "pong", "--name", "n" * 300], "--name is 300 characters long: give at most 100"),
    (["train", "pong", "--name", ""], "--name must not be empty"),
    (["train", "pong", "--name", ".hidden"], "must not start with '.'"),
    (["train", "--resume", "/nonexistent/x.keras", "--name", ".."], "must not start with '.'"),
    (["train", "pong", "--name", "nul"], "--name 'nul' is a device name on Windows"),
    (["train", "pong", "--name", "Com3.run"], "--name 'Com3.run' is a device name on Windows"),
    (["test", "/nonexistent/x.keras"], "snapshot not found"),
    (["train", "--resume", "/nonexistent/x.keras"], "snapshot not found"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "snapshots").exists() and not (tmp_path / "reports").exists()


def test_device_replay_frames_count_in_host_memory_where_there_is_no_accelerator(tmp_path, capsys, monkeypatch):
    """With no GPU the "device" memory of --device-replay is the host's: its frames count too, and
    a replay memory that cannot fit is refused in one line rather than allocated."""
    from dqnviz import backend

    monkeypatch.setattr(backend, "has_accelerator", lambda: False)  # as on this CPU, also where CI has a GPU
    test_bad_input_is_one_line_and_writes_nothing(
        tmp_path, capsys, ["train", "pong", "--replay-size", "100000000", "--device-replay"], "use --replay-size", monkeypatch)


@pytest.mark.parametrize("command", ["train-snapshots", "train-reports", "nvis", "compare", "record", "test", "plot"])
def test_an_unwritable_output_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, command):
    """An output under a regular file fails at once, in one line, leaving the folder as it was."""
    from pathlib import Path

    from tests.conftest import make_snapshot

    monkeypatch.chdir(tmp_path)
    snapshot = str(make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1))
    (tmp_path / "file").write_text("not a folder")
    blocked = str(tmp_path / "file" / "sub" / "out")
    statistics = str(Path(__file__).resolve().parent.parent / "reports" / "pong-h100.csv")
    argv = {
        "train-snapshots": ["train", "breakout", *TINY, "--snapshot-dir", blocked],
        "train-reports": ["train", "breakout", *TINY, "--report-dir", blocked],
        "nvis": ["nvis", snapshot, "--out", blocked + ".html", "--quiet"],
        "compare": ["compare", snapshot, snapshot.replace("_1", "_1"), "--out", blocked + ".html", "--quiet"],
        "record": ["record", snapshot, "--out", blocked + ".mp4", "--quiet"],
        "test": ["test", snapshot, "--csv", blocked + ".csv", "--quiet"],
        "plot": ["plot", statistics, "--out", blocked + ".html"],
    }[command]
    if command == "compare":
        argv[2] = str(make_snapshot(tmp_path / "pong_1.keras", "pong", 1, seed=1))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot write {blocked}" in err and "is not a folder" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (tmp_path / "file").is_file()


@pytest.mark.parametrize("argv, message", [
    (["train", "pong", "--train-steps", "abc"], "--train-steps must be a whole number, got 'abc'"),
    (["train", "pong", "--learning-rate", "0"], "--learning-rate must be greater than 0, got 0"),
    (["train", "pong", "--gamma", "1.5"], "--gamma must be between 0 and 1, got 1.5"),
    (["train", "pong", "--epsilon-end", "nan"], "--epsilon-end must be a finite number"),
    (["train", "pong", "--optimizer", "sgd"], "--optimizer: invalid choice: 'sgd'"),
    (["test", "x.keras", "--episodes", "0"], "--episodes must be between 1 and 100,000, got 0"),
    (["test", "x.keras", "--seed", "-1"], "--seed must be between 0 and 4,294,967,295, got -1"),
    (["compare", "a.keras", "b.keras", "--filters", "0"], "--filters must be at least 1, got 0"),
    (["play", "x.keras", "--scale", "7"], "--scale must be between 1 and 6, got 7"),
    (["record", "x.keras", "--scale", "7"], "--scale must be between 1 and 6, got 7"),  # the same range as play's
    (["bogus"], "COMMAND: invalid choice: 'bogus'"),
    # numbers past what anything can use: a one-line error, not a traceback later
    (["train", "pong", "--seed", str(2**32)], "--seed must be between 0 and 4,294,967,295, got 4,294,967,296"),
    (["train", "pong", "--test-envs", "100000"], "--test-envs must be between 0 and 4,096, got 100,000"),
    (["train", "pong", "--num-envs", "5000"], "--num-envs must be between 1 and 4,096"),
    (["train", "pong", "--frame-skip", "100000"], "--frame-skip must be between 1 and 64"),
    (["test", "x.keras", "--episodes", "9" * 21], "--episodes must be between 1 and 100,000"),
    (["test", "x.keras", "--parallel", "9" * 21], "--parallel must be between 1 and 4,096"),
    (["nvis", "x.keras", "--games", "9" * 21], "--games must be between 1 and 100,000"),
    (["record", "x.keras", "--seed", str(2**40)], "--seed must be between 0 and 4,294,967,295"),
    (["train", "pong", "--train-steps", str(10**12)], "--train-steps must be at most 1,000,000,000, got 1,000,000,000,000"),
])
def test_bad_numbers_are_one_line_from_the_parser(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert err.endswith("--help)") and "usage:" not in err
    assert list(tmp_path.iterdir()) == []


def test_pickle_passed_to_test_is_refused(tmp_path, capsys):
    import pickle

    path = tmp_path / "agent.pkl"
    path.write_bytes(pickle.dumps({"weights": np.zeros(3)}))
    assert main(["test", str(path)]) == 2
    assert "pickle" in capsys.readouterr().err


def _stop_a_background_run(tmp_path, name, stop_signal):
    """Start ``dqnviz train`` with SIGINT ignored (as a background job of a script inherits it),
    wait until its train phase runs, send ``stop_signal``; return (exit code, stdout + stderr)."""
    import signal
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "dqnviz", "train", "pong", "--name", name, "--quiet", "--epochs", "1",
               "--random-steps", "64", "--train-steps", "1000000", "--replay-size", "2000", "--batch-size", "8",
               "--validation-states", "8", "--snapshot-dir", str(tmp_path), "--report-dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    rows = tmp_path / f"{name}.csv"
    deadline = time.monotonic() + 120
    # epoch 0's row is written as the random phase ends: with --train-steps 1000000 the run is then in
    # its train phase, and stays there
    while not (rows.exists() and len(rows.read_text().splitlines()) >= 2):
        assert process.poll() is None and time.monotonic() < deadline, "the run never reached its train phase"
        time.sleep(0.2)
    process.send_signal(stop_signal)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"signal {stop_signal} did not stop the run") from None
    return process.returncode, output


def test_a_background_run_stopped_by_a_signal_saves_its_snapshot(tmp_path):
    """SIGINT to a run that inherited it ignored, in a process of its own as a background job is. (SIGTERM
    is the same path in-process: test_stopping.py's test_a_signal_during_an_update_finishes_the_step_before_saving.)"""
    import signal

    code, output = _stop_a_background_run(tmp_path, "bg", signal.SIGINT)
    assert code == 128 + signal.SIGINT == 130, output  # as the shell gives
    assert "interrupted: saved" in output and "--resume" in output
    assert load_snapshot(tmp_path / "bg_1_interrupted.keras").meta["interrupted"]["phase"] == "train"


def test_profile_prints_where_each_train_phase_waited(tmp_path, capsys):
    import re

    dirs = ["--snapshot-dir", str(tmp_path), "--report-dir", str(tmp_path)]
    assert main(["train", "pong", "--num-envs", "2", "--epochs", "2", "--profile", *TINY, *dirs]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "where the loop waited" in line]
    assert len(lines) == 2  # one per train phase, none for the random and test phases
    for line in lines:
        assert line.strip().startswith("where the loop waited per iteration of 2 agent steps: ")
        parts = dict((name, float(ms)) for name, ms in re.findall(r"(\w+) (\d+\.\d+)(?= ms|,)", line.split(": ", 1)[1]))
        assert set(parts) == {"act", "emulate", "sample", "learn", "replay", "other"}
        per_iteration = float(re.search(r"; (\d+\.\d+) ms per iteration", line).group(1))
        # the parts are the phase's time, split: they add up to it, and learning is not free
        assert sum(parts.values()) == pytest.approx(per_iteration, abs=0.01 * len(parts))
        assert parts["learn"] > 0 and parts["emulate"] > 0


def _two_runs_named_t(tmp_path):
    """Run t in folder a/, and an unrelated run also named t in folder b/ (different steps)."""
    for folder, steps in (("a", "48"), ("b", "40")):
        dirs = ["--snapshot-dir", str(tmp_path / folder / "snapshots"), "--report-dir", str(tmp_path / folder / "reports")]
        options = [o if o != "48" else steps for o in TINY]
        assert main(["train", "pong", "--name", "t", "--epochs", "1", *options, *dirs]) == 0
    return tmp_path / "a", tmp_path / "b"


def _contents(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_resume_with_a_taken_name_is_refused_and_writes_nothing(tmp_path, capsys, monkeypatch):
    a, b = _two_runs_named_t(tmp_path)
    monkeypatch.chdir(b)  # b/snapshots and b/reports are the defaults; run t there is not a's
    before = _contents(b)
    capsys.readouterr()
    assert main(["train", "--resume", str(a / "snapshots" / "t_1.keras"), "--name", "t", "--epochs", "2",
                 "--snapshot-dir", "snapshots"]) == 2
    err = capsys.readouterr().err.strip()
    assert "error: run 't' already has files in snapshots/" in err and "\n" not in err
    assert _contents(b) == before


def test_resume_into_folders_of_another_run_of_that_name_branches_off(tmp_path, capsys, monkeypatch):
    a, b = _two_runs_named_t(tmp_path)
    monkeypatch.chdir(b)
    before = _contents(b)
    capsys.readouterr()
    # b/reports/t.csv is another run t's: resuming a's t_1 must neither append to it nor write its sidecars
    assert main(["train", "--resume", str(a / "snapshots" / "t_1.keras"), "--epochs", "2", "--snapshot-dir", "snapshots",
                 "--report-dir", "reports"]) == 0
    out = capsys.readouterr().out
    assert "reports/t.csv holds another run's statistics; continuing as a new run, t-2" in out
    after = _contents(b)
    assert {path: after[path] for path in before} == before  # run t's files are untouched
    assert [(r["epoch"], r["phase"]) for r in rows(b / "reports" / "t-2.csv")] == [("2", "refill"), ("2", "train"), ("2", "test")]
    # a branch is a run of its own: compare does not read t_1 and t-2_2 as one run's epochs
    branched = load_snapshot(b / "snapshots" / "t-2_2.keras").meta
    assert branched["run"] == "t-2" and branched["run_id"] != load_snapshot(a / "snapshots" / "t_1.keras").meta.get("run_id")


def test_resume_from_an_older_epoch_whose_later_snapshots_are_gone_branches_off(tmp_path, capsys):
    """The CSV holds epochs 1 and 2 but only t_1.keras is left (the shipped pong_24 with pong.csv up
    to epoch 26 is such a case): resuming t_1 must not append a second epoch 2 to t.csv."""
    _resumable_run_t(tmp_path, epochs=2, config=_tiny_config())  # as `train pong --name t --epochs 2` leaves it, less t_2
    statistics = tmp_path / "reports" / "t.csv"
    before = statistics.read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "snapshots" / "t_1.keras"), "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{statistics} already holds epoch 2's statistics, past t_1.keras; continuing as a new run, t-2" in out
    assert statistics.read_bytes() == before
    assert [(r["epoch"], r["phase"]) for r in rows(tmp_path / "reports" / "t-2.csv")] == [("2", "refill"), ("2", "train"),
                                                                                          ("2", "test")]


def test_resume_from_elsewhere_goes_on_beside_the_snapshot_and_its_csv(tmp_path, capsys, monkeypatch):
    a, _ = _two_runs_named_t(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--resume", str(a / "snapshots" / "t_1.keras"), "--epochs", "2", "--quiet"]) == 0
    assert (a / "snapshots" / "t_2.keras").exists() and not any(elsewhere.iterdir())
    table = rows(a / "reports" / "t.csv")  # snapshots/ and reports/ are siblings: the CSV goes on
    assert [(r["epoch"], r["phase"]) for r in table] == [("0", "random"), ("1", "train"), ("1", "test"),
                                                         ("2", "refill"), ("2", "train"), ("2", "test")]


def test_ctrl_c_in_the_first_phase_leaves_no_csv_behind(tmp_path, monkeypatch, capsys):
    from dqnviz import trainer

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.Trainer, "_keep_validation_states", interrupt)  # at the random phase's end
    dirs = ["--snapshot-dir", str(tmp_path / "snap"), "--report-dir", str(tmp_path / "rep")]
    assert main(["train", "pong", "--name", "d", "--epochs", "1", *TINY, *dirs]) == 130
    assert "no snapshot to save" in capsys.readouterr().out
    assert not (tmp_path / "rep" / "d.csv").exists()
    monkeypatch.undo()
    assert main(["train", "pong", "--name", "d", "--epochs", "1", *TINY, *dirs]) == 0  # the name is free


def _tiny_config(epochs=2):
    """The TrainConfig of ``dqnviz train pong --epochs N`` with TINY's options."""
    from dqnviz.cli import build_parser
    from dqnviz.config import config_from_arguments

    return config_from_arguments(build_parser().parse_args(["train", "pong", "--epochs", str(epochs), *TINY]))


def _resumable_run_t(tmp_path, epochs=1, train_steps=48, config=None):
    """snapshots/t_1.keras of a pong run t (48 train steps in epoch 1) and reports/t.csv with the
    rows of ``epochs`` epochs of a run t that trained ``train_steps`` per epoch; made, not trained.
    ``config`` is the snapshot's (a resume trains on with it); by default one only to decide on."""
    from dqnviz.atari import AtariEnv, resolve_rom
    from dqnviz.config import TrainConfig
    from dqnviz.network import build_q_network
    from dqnviz.snapshot import save_snapshot
    from dqnviz.statistics import CSV_COLUMNS
    from dqnviz.resume import snapshot_meta

    rom = resolve_rom("pong")
    env = AtariEnv(rom, seed=0)
    # with a config, the snapshot of a whole epoch 1: its test played, as its CSV row says
    score = {"average": 0.0, "std": 0.0, "min": 0.0, "max": 0.0, "episodes": 1} if config else None
    config = config or TrainConfig(epochs=1, train_steps=48, replay_size=500)
    meta = snapshot_meta(rom, env, config, run="t", epoch=1, total_steps=112,  # 64 random + 48 train steps
                         train_steps_done=48, weight_updates=12, test_score=score)  # one update per 4 train steps
    save_snapshot(tmp_path / "snapshots" / "t_1.keras", build_q_network(env.num_actions, seed=0), meta)
    (tmp_path / "reports").mkdir()
    with open(tmp_path / "reports" / "t.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS, restval="0")
        writer.writeheader()
        writer.writerow({"epoch": 0, "phase": "random", "total_train_steps": 0})
        for epoch in range(1, epochs + 1):
            for phase in ("train", "test"):
                writer.writerow({"epoch": epoch, "phase": phase, "total_train_steps": epoch * train_steps})


@pytest.mark.parametrize("epochs, train_steps, options, said", [
    (1, 48, [], "training pong as run t:"),  # goes on: appends to reports/t.csv
    (2, 48, [], "reports/t.csv already holds epoch 2's statistics, past t_1.keras; continuing as a new run, t-2"),
    (1, 40, ["--report-dir", "reports"], "reports/t.csv holds another run's statistics; continuing as a new run, t-2"),
])
def test_resume_reads_the_run_statistics_once(tmp_path, capsys, monkeypatch, epochs, train_steps, options, said):
    """`train --resume` finds the run's CSV, and decides from its rows whether to go on or to
    branch off, having read the file once."""
    import builtins

    from dqnviz import statistics, trainer

    _resumable_run_t(tmp_path, epochs, train_steps)
    monkeypatch.chdir(tmp_path)
    opened = []

    def counting_open(file, *args, **kwargs):
        opened.append(Path(file).name)
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(statistics, "open", counting_open, raising=False)  # where the CSV is read
    monkeypatch.setattr(trainer.Trainer, "train", lambda self: None)  # what it decided, not the training
    before = (tmp_path / "reports" / "t.csv").read_bytes()
    assert main(["train", "--resume", "snapshots/t_1.keras", "--epochs", "2", "--quiet", *options]) == 0
    assert said in capsys.readouterr().out
    assert opened.count("t.csv") == 1, opened
    if "t-2" in said:
        assert (tmp_path / "reports" / "t.csv").read_bytes() == before and (tmp_path / "reports" / "t-2.csv").exists()


def test_ctrl_c_in_a_test_phase_is_played_again_on_resume(tmp_path, monkeypatch, capsys):
    """A run stopped in epoch 1's test phase leaves epoch 1's snapshot (saved before the test) without
    a test score and the CSV without its test row: the resume plays that test first, writes its row,
    saves the snapshot again with the score, and then goes on with epoch 2."""
    from tests.conftest import stop_in_phase
    from dqnviz import trainer

    original = trainer.Trainer.run_phase
    stop_in_phase(monkeypatch, "test")
    dirs = ["--snapshot-dir", str(tmp_path / "snap"), "--report-dir", str(tmp_path / "rep")]
    assert main(["train", "pong", "--epochs", "1", *TINY, *dirs]) == 130
    out = capsys.readouterr().out
    saved = tmp_path / "snap" / "pong_1.keras"
    assert f"interrupted: saved {saved}; continue with: dqnviz train --resume {saved}" in out
    assert "epoch 1's test phase was cut short: a resume plays it again first" in out
    assert load_snapshot(saved).meta["test_score"] is None
    assert [(r["epoch"], r["phase"]) for r in rows(tmp_path / "rep" / "pong.csv")] == [("0", "random"), ("1", "train")]

    # stopped again in that test: nothing new is saved, and the resume still owes it
    assert main(["train", "--resume", str(saved), "--epochs", "2", *dirs]) == 130
    out = capsys.readouterr().out
    assert f"interrupted: nothing new to save; continue with: dqnviz train --resume {saved}" in out
    assert "cut short again" in out

    monkeypatch.setattr(trainer.Trainer, "run_phase", original)
    # an earlier sitting's stopping point in epoch 1's train phase, spent once the epoch is whole
    import shutil

    spent = shutil.copy(saved, tmp_path / "snap" / "pong_1_interrupted.keras")
    assert main(["train", "--resume", str(saved), "--epochs", "2", *dirs]) == 0
    out = capsys.readouterr().out
    assert "epoch 1's test phase was cut short when the run stopped: playing it again" in out
    assert not os.path.exists(spent) and f"removed {spent}: pong_1.keras, the whole epoch, supersedes it" in out
    table = rows(tmp_path / "rep" / "pong.csv")
    assert [(r["epoch"], r["phase"]) for r in table] == [("0", "random"), ("1", "train"), ("1", "test"), ("2", "refill"),
                                                         ("2", "train"), ("2", "test")]
    score = load_snapshot(saved).meta["test_score"]
    assert score is not None and score["average"] == pytest.approx(float(table[2]["average_reward"]))
    # the test played again before the refill records the count of the train phase it tests, not 0
    assert table[2]["replay_memory_count"] == table[1]["replay_memory_count"] != "0"
    assert load_snapshot(saved).meta["replay_memory_count"] == int(table[1]["replay_memory_count"])
    assert load_snapshot(tmp_path / "snap" / "pong_2.keras").meta["epoch"] == 2

    # a snapshot whose test is in the CSV is not tested again
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "snap" / "pong_2.keras"), "--epochs", "3", *dirs]) == 0
    assert "playing it again" not in capsys.readouterr().out


def test_a_run_that_does_not_start_announces_no_name(tmp_path, capsys, monkeypatch):
    """With an earlier run's files present, a bad option is the one line: no 'this run is pong-2' first."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "pong.csv").write_text("epoch,phase\n")
    assert main(["train", "pong", "--epsilon-start", "0", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "this run is" not in captured.out and "--epsilon-end 0.1 is above --epsilon-start 0" in captured.err


@pytest.mark.parametrize("argv, said", [
    (["--repeat-action-probability", "1"], "--repeat-action-probability 1 repeats the first action for ever"),
    (["--noop-max", "200", "--max-frames-per-episode", "100"], "--noop-max 200 no-op frames at a game's start are more"),
    # within the training cap (108,000) but past the test games' 18,000: every test game would be no-ops
    (["--noop-max", "20000"], "--noop-max 20,000 no-op frames at a game's start are more than a whole test game (18,000"),
])
def test_settings_that_leave_the_agent_no_game_are_refused(tmp_path, capsys, monkeypatch, argv, said):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "pong", *argv, "--quiet"]) == 2
    assert said in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_a_run_name_differing_only_in_case_is_taken(tmp_path):
    """On a case-insensitive disk (macOS's, Windows') run Pong's pong_3.keras is run pong's: the
    name is taken, on any disk, so that the files of one are never written over the other's."""
    from dqnviz.commands.train import _taken, free_run_name

    (tmp_path / "snapshots").mkdir()
    (tmp_path / "snapshots" / "pong_3.keras").write_bytes(b"")
    assert _taken("Pong", tmp_path / "snapshots", tmp_path / "reports")
    assert free_run_name("PONG", tmp_path / "snapshots", tmp_path / "reports") == "PONG-2"
    assert not _taken("pongo", tmp_path / "snapshots", tmp_path / "reports")


def test_the_last_line_names_every_epoch_tied_for_the_best_test_phase_and_points_to_the_latest():
    """Pong agents often tie (two epochs averaging 21.0): naming only the first of them sent the
    reader to the less-trained snapshot, and hid that another scored as well."""
    from types import SimpleNamespace

    from dqnviz.commands.train import finished_line

    def run(averages):
        scores = {epoch: {"average": average, "episodes": 8 + epoch} for epoch, average in averages.items()}
        return SimpleNamespace(test_scores=scores, config=SimpleNamespace(epochs=9), snapshot_dir="snapshots",
                               run="pong", snapshot_path=lambda epoch: f"snapshots/pong_{epoch}.keras")

    line = finished_line(run({3: 20.5, 4: 21.0, 5: 19.0, 6: 21.0, 7: 21.0}))
    assert line.startswith("finished epochs 3–7; best test phase: epochs 4, 6 and 7 tied, average 21.0 "
                           "(epoch 7: 15 games, snapshots/pong_7.keras). ")
    line = finished_line(run({3: 20.5, 4: 21.0, 5: 19.0}))
    assert line.startswith("finished epochs 3–5; best test phase: epoch 4, average 21.0 over 12 games "
                           "(snapshots/pong_4.keras). To rank epochs")


def test_a_time_budget_ends_the_run_after_the_epoch_it_cut_and_a_resume_goes_on(tmp_path, capsys, monkeypatch):
    """--minutes: once spent, the train phase under way stops at its next step; its epoch still
    writes its row, saves its snapshot and plays its test phase, and no new epoch begins. The
    clock is replaced by the trained steps (spent from 20, then from 30), so the cut is exact."""
    from dqnviz import trainer as trainer_module

    made, limit = [], [20]
    original = trainer_module.Trainer.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(trainer_module.Trainer, "__init__", recording_init)
    monkeypatch.setattr(trainer_module.TimeBudget, "spent", lambda self: made[-1].train_steps_done >= limit[0])
    dirs = ["--snapshot-dir", str(tmp_path / "snap"), "--report-dir", str(tmp_path / "rep")]
    assert main(["train", "breakout", "--epochs", "3", *TINY, *dirs, "--minutes", "5"]) == 0
    out = capsys.readouterr().out
    assert ("the time budget (--minutes 5) is spent: epoch 1's train phase stopped after 20 of its 48 steps; "
            "epoch 2 is not begun") in out
    assert out.strip().splitlines()[-1].startswith("finished epoch 1; best test phase: epoch 1")
    table = rows(tmp_path / "rep" / "breakout.csv")
    assert [(r["epoch"], r["phase"], r["steps"]) for r in table][:2] == [("0", "random", "64"), ("1", "train", "20")]
    assert [(r["epoch"], r["phase"]) for r in table[2:]] == [("1", "test")] and int(table[2]["nr_games"]) >= 1
    assert int(table[1]["weight_updates"]) == 20 // 4
    assert sorted(p.name for p in (tmp_path / "snap").glob("*.keras")) == ["breakout_1.keras"]
    meta = load_snapshot(tmp_path / "snap" / "breakout_1.keras").meta
    assert meta["epoch"] == 1 and meta["train_steps_done"] == 20 and meta["test_score"]["episodes"] >= 1
    assert "minutes" not in meta["config"]  # a budget is the command's, not the recipe's

    limit[0] = 30  # the resume goes on with epoch 2, which the budget cuts after 10 more steps
    assert main(["train", "--resume", str(tmp_path / "snap" / "breakout_1.keras"), *dirs, "--minutes", "5"]) == 0
    assert "epoch 2's train phase stopped after 10 of its 48 steps; epoch 3 is not begun" in capsys.readouterr().out
    table = rows(tmp_path / "rep" / "breakout.csv")
    assert [(r["epoch"], r["phase"]) for r in table[3:]] == [("2", "refill"), ("2", "train"), ("2", "test")]
    assert table[4]["steps"] == "10" and table[4]["total_train_steps"] == "30"
    resumed = load_snapshot(tmp_path / "snap" / "breakout_2.keras").meta
    assert resumed["train_steps_done"] == 30
    assert resumed["run_id"] == meta["run_id"] and len(meta["run_id"]) == 32  # one run, through its resume


def test_a_time_budget_spent_before_training_leaves_no_file_and_a_bad_one_is_refused(tmp_path, capsys):
    """A budget spent before the first train phase (6 ms: building the network takes longer) ends a
    fresh run with no file, as a Ctrl-C there does, and a resumed one as its snapshot left it."""
    dirs = ["--snapshot-dir", str(tmp_path / "snap"), "--report-dir", str(tmp_path / "rep")]
    assert main(["train", "pong", *TINY, *dirs, "--minutes", "0.0001"]) == 1  # nothing made: a failure
    out = capsys.readouterr().out
    assert "the random phase stopped after 0 of its 64 steps, before training began" in out
    assert out.strip().splitlines()[-1] == ("finished: the time budget (--minutes 0.0001) was spent before any epoch "
                                            "was trained: no file is left")
    assert not (tmp_path / "rep").exists() and not (tmp_path / "snap").exists()

    assert main(["train", "pong", "--epochs", "1", *TINY, *dirs]) == 0
    before = (tmp_path / "rep" / "pong.csv").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "snap" / "pong_1.keras"), *dirs, "--epochs", "2",
                 "--minutes", "0.0001"]) == 1
    assert capsys.readouterr().out.strip().endswith("was spent before any epoch was trained: the run is as its snapshot left it")
    assert (tmp_path / "rep" / "pong.csv").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "snap").glob("*.keras")) == ["pong_1.keras"]

    for wrong in ("0", "-1", "soon"):
        assert main(["train", "pong", *TINY, *dirs, "--minutes", wrong]) == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and "--minutes must be" in error


@pytest.mark.parametrize("case", ["after the random phase", "in the last epoch"])
def test_a_time_budget_spent_at_a_phase_end_or_in_the_last_epoch_is_said(tmp_path, capsys, monkeypatch, case):
    """Spent just as the random phase ends: no epoch follows and no file is left (its row and
    validation states would only take the run's name). Spent in the last epoch's train phase:
    the cut is said though no epoch was left to begin."""
    from dqnviz import trainer as trainer_module

    made = []
    original = trainer_module.Trainer.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(trainer_module.Trainer, "__init__", recording_init)
    spent = (lambda t: t.total_steps >= 64) if case == "after the random phase" else (lambda t: t.train_steps_done >= 20)
    monkeypatch.setattr(trainer_module.TimeBudget, "spent", lambda self: spent(made[-1]))
    dirs = ["--snapshot-dir", str(tmp_path / "snap"), "--report-dir", str(tmp_path / "rep")]
    assert main(["train", "pong", "--epochs", "1", *TINY, *dirs, "--minutes", "3"]) == (
        1 if case == "after the random phase" else 0)  # no epoch trained: nothing made
    out = capsys.readouterr().out
    if case == "after the random phase":
        assert "the time budget (--minutes 3) is spent: it ran out with the random phase, before training began" in out
        assert out.strip().endswith("no file is left")
        assert not (tmp_path / "rep").exists() and not (tmp_path / "snap").exists()
    else:
        assert "the time budget (--minutes 3) is spent: epoch 1's train phase stopped after 20 of its 48 steps\n" in out
        assert [(r["phase"], r["steps"]) for r in rows(tmp_path / "rep" / "pong.csv")][1] == ("train", "20")
