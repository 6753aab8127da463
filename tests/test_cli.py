"""The ``dqnviz`` entry point: what every command shares."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("argv", [["games"], ["--help"]])
def test_a_reader_that_closes_stdout_early_ends_the_command_quietly(argv):
    """``dqnviz games | head -2``: no BrokenPipeError traceback when the reader goes away."""
    process = subprocess.Popen([sys.executable, "-m", "dqnviz", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # before Python has started: every line printed meets a closed pipe
    err = process.stderr.read().decode()
    code = process.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err
    assert err == ""
    assert code in (0, 141)  # 141 = 128 + SIGPIPE; --help may have fitted in the pipe before it closed


@pytest.mark.parametrize("command, option, dest, typed", [
    ("nvis", "--episodes", "games", "3"), ("compare", "--episodes", "games", "2"),
    ("record", "--games", "episodes", "4"), ("play", "--games", "episodes", "5"),
    ("test", "--games", "episodes", "6"),
])
def test_games_and_episodes_name_the_same_count_in_every_command(command, option, dest, typed, capsys):
    """test, play and record count --episodes and nvis and compare --games: each also takes the
    other's word, checked the same way, without a second line in its help."""
    from dqnviz.cli import build_parser

    parser = build_parser()
    snapshots = ["a.keras", "b.keras"] if command == "compare" else ["a.keras"]
    default = 30 if command == "test" else 1  # test: the Nature protocol's 30 episodes
    assert getattr(parser.parse_args([command, *snapshots]), dest) == default  # the default still holds
    assert getattr(parser.parse_args([command, *snapshots, option, typed]), dest) == int(typed)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args([command, *snapshots, option, "0"])
    assert stop.value.code == 2
    assert f"{option} must be between 1 and 100,000, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert f"also {option} N" in help_text and f"[{option} N]" not in help_text


@pytest.mark.parametrize("error, shown", [
    (PermissionError(13, "Permission denied", "/data/run.csv"), "error: /data/run.csv: permission denied"),
    (IsADirectoryError(21, "Is a directory", "/data/x"), "error: /data/x: is a directory"),
    (OSError(28, "No space left on device", "/data/big.html"), "error: /data/big.html: no space left on device"),
])
def test_a_path_the_system_refuses_is_one_line(monkeypatch, capsys, error, shown):
    """Wherever a command first touches a path the user gave, the system's refusal is one line, exit 2."""
    from dqnviz import cli
    from dqnviz.commands import plot

    def refuse(args):
        raise error

    monkeypatch.setattr(plot, "run", refuse)
    assert cli.main(["plot", "reports/pong.csv"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"dqnviz plot: {shown}"


def test_an_os_error_naming_no_path_is_a_bug_and_shows_its_traceback(monkeypatch):
    from dqnviz import cli
    from dqnviz.commands import plot

    def fail(args):
        raise PermissionError(13, "Permission denied")  # no file name: not a path the user gave

    monkeypatch.setattr(plot, "run", fail)
    with pytest.raises(PermissionError):
        cli.main(["plot", "reports/pong.csv"])


@pytest.mark.parametrize("argv, said", [
    (["nvis", "x.keras", "--out", ""], "dqnviz nvis: error: --out must not be empty"),
    (["nvis", "x.keras", "--layers", " "], "dqnviz nvis: error: --layers must not be empty"),
    (["compare", "a.keras", "b.keras", "--out", ""], "dqnviz compare: error: --out must not be empty"),
    (["plot", "x.csv", "--out", ""], "dqnviz plot: error: --out must not be empty"),
    (["record", "x.keras", "--frames-dir", ""], "dqnviz record: error: --frames-dir must not be empty"),
    # an unknown option is named by the command it was given to, with that command's help
    (["test", "x.keras", "--bogus"], "dqnviz test: error: unrecognized arguments: --bogus (see dqnviz test --help)"),
    (["games", "extra"], "dqnviz games: error: unrecognized arguments: extra (see dqnviz games --help)"),
    # a misspelled option: the command's closest one is suggested
    (["test", "x.keras", "--episode", "1"],
     "dqnviz test: error: unrecognized arguments: --episode 1 (did you mean --episodes?) (see dqnviz test --help)"),
    (["train", "pong", "--train-step", "9", "--epsilon-en=0.1"],
     "unrecognized arguments: --train-step 9 --epsilon-en=0.1 (did you mean --train-steps or --epsilon-end?)"),
    # no abbreviations: `--max` would mean another option the day one more --max… is added
    (["nvis", "x.keras", "--max", "5"], "dqnviz nvis: error: unrecognized arguments: --max 5"),
    (["test", "x.keras", "--epsilon", "1.0000001"], "--epsilon must be between 0 and 1, got 1.0000001"),
    (["test", "x.keras", "--repeat-action-probability", "1"], "--repeat-action-probability must be less than 1"),
])
def test_slips_on_the_command_line_are_one_line_naming_the_command(argv, said, capsys):
    """An empty value is a slip, not the option's default; nothing is loaded before these are refused."""
    from dqnviz.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(said) or said in err, err
    assert "\n" not in err


def _another_value(field):
    """A valid value of a TrainConfig field other than its default, as typed and as parsed."""
    default = field.default
    if isinstance(default, bool):
        return [], True
    if "choices" in field.metadata:
        other = next(c for c in field.metadata["choices"] if c != default)
        return [other], other
    if isinstance(default, int):
        value = default + 1 if default else 2  # 2 environments still divide --train-frequency 4
        return [str(value)], value
    value = default / 2 if default else 0.25  # within (0, 1] for every probability
    return [repr(value)], value


def test_every_train_option_reaches_the_config_and_nothing_else():
    """Each of train's --flags sets its own TrainConfig field, and only that field."""
    import dataclasses

    from dqnviz.cli import build_parser
    from dqnviz.config import TrainConfig, config_from_arguments

    parser, defaults = build_parser(), TrainConfig()
    fields = dataclasses.fields(TrainConfig)
    assert len(fields) > 30
    for field in fields:
        typed, value = _another_value(field)
        flag = "--" + field.name.replace("_", "-")
        config = config_from_arguments(parser.parse_args(["train", "pong", flag, *typed]))
        assert getattr(config, field.name) == value != getattr(defaults, field.name), flag
        changed = [f.name for f in fields if getattr(config, f.name) != getattr(defaults, f.name)]
        assert changed == [field.name], flag


@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_a_stop_signal_during_start_up_stops_the_command(tmp_path, delay):
    """A background job's SIGINT (inherited ignored) sent while the command still starts (imports,
    backend) is not lost, and one arriving inside the backend's native imports does not abort it:
    the command stops with 130 and one line, whenever the signal comes."""
    import signal
    import time

    from tests.conftest import make_snapshot

    snapshot = make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1)
    process = subprocess.Popen([sys.executable, "-m", "dqnviz", "test", str(snapshot), "--episodes", "100", "--quiet"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert (process.returncode, err.decode().strip()) == (130, "dqnviz test: interrupted"), (out, err)
