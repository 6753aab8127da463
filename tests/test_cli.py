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
