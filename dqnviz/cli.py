"""The ``dqnviz`` command: train, test, play, record, nvis, compare, plot, games.

Each subcommand lives in ``dqnviz/commands/<name>.py`` with ``HELP``, ``add_arguments(parser)``
and ``run(args) -> exit code``. A :class:`~dqnviz.errors.UserError` becomes one line on stderr
and a non-zero exit; Ctrl-C exits with 130 and SIGTERM with 143 (128 + the signal); a reader that closes stdout early (``dqnviz games |
head -2``) ends the command quietly with 141, as a pipe's SIGPIPE would.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import re
import sys

# keras-free: the backend is chosen, and KERAS_BACKEND set, before anything imports Keras
from dqnviz.backend.choice import choose_backend, quiet_backends

COMMANDS = ["train", "test", "play", "record", "nvis", "compare", "plot", "games"]

DESCRIPTION = """\
Train DeepMind-Nature-style DQN agents on Atari games and see what they learned.

  dqnviz train pong                      train on a ROM that ale-py ships (or a path to a .bin)
  dqnviz test snapshots/pong_24.keras    evaluate with the Nature protocol
  dqnviz nvis snapshots/pong_24.keras    guided backprop, saliency and receptive fields as HTML
  dqnviz compare A.keras B.keras         filters of two agents side by side, with numbers
  dqnviz plot reports/pong.csv           training statistics as interactive charts
  dqnviz play | record SNAPSHOT          watch (and take over) an agent, or record a video

The Keras backend is KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax when set, else the one in
~/.keras/keras.json if installed, else TensorFlow when it is installed and JAX when only JAX is.
"""


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other dqnviz error:

        dqnviz test: error: --episodes must be at least 1, got 0 (see dqnviz test --help)
    """

    def error(self, message: str):
        # "argument --games: must be …" reads "--games must be …"; other messages keep the colon
        message = re.sub(r"^argument ([^:]+):(?= must)", lambda m: m.group(1).split("/")[-1], message)
        message = re.sub(r"^argument ([^:]+):", lambda m: m.group(1).split("/")[-1] + ":", message)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _suggestion(parser: argparse.ArgumentParser, extra: list) -> str:
    """`` (did you mean --episodes?)`` for a misspelled option among ``extra``, or ``""``: the
    closest of ``parser``'s options to each unknown ``--option`` (difflib's ratio 0.75 or more)."""
    import difflib

    known = [option for action in parser._actions for option in action.option_strings if option.startswith("--")]
    guesses = []
    for token in extra:
        if token.startswith("--"):
            guesses += [guess for guess in difflib.get_close_matches(token.split("=")[0], known, n=1, cutoff=0.75)
                        if guess not in guesses]
    return f" (did you mean {' or '.join(guesses)}?)" if guesses else ""


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: `--max` for `--max-steps` would change meaning the day another --max… option comes
    parser = OneLineErrorParser(
        prog="dqnviz", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.commands = {}  # name -> its subparser, whose usage errors name the command
    parser.add_argument("--version", action="version", version=f"dqnviz {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"dqnviz.commands.{name}")
        except ModuleNotFoundError as error:  # an optional command whose module is absent
            if error.name != f"dqnviz.commands.{name}":
                raise
            continue
        command = sub.add_parser(
            name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        )
        parser.commands[name] = command
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("dqnviz")
    except Exception:
        return "0.1.0"


# Commands that never start a Keras backend: no need to pay for importing TensorFlow.
NO_BACKEND = {"games", "plot"}


def main(argv=None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not at exit where Python would print it
    except BrokenPipeError:
        # The reader went away: nothing more can be said on stdout, and Python's flush at exit
        # must not fail again on it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a file (a test's capture): nothing to flush
            pass
        os.close(devnull)
        return 128 + 13  # SIGPIPE, what `yes | head -1` reports for yes
    return code


PATH_ERRORS = {errno.ENAMETOOLONG, errno.EILSEQ, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
               errno.ENOENT, errno.ELOOP, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def _main(argv=None) -> int:
    from dqnviz.errors import UserError
    from dqnviz.stopping import (deferred_interrupts, exit_status, interrupted_by, raise_interrupt_on_stop_signals,
                                 restore_signals)

    from dqnviz.progress import output_back

    output_back()  # this command's output is tried afresh (an earlier command's in this process may have found it gone)
    previous, command = {}, None
    try:
        # First of all: a stop signal during start-up stops the command too (a background job's
        # SIGINT, inherited ignored, would otherwise be lost until the handlers were set).
        previous = raise_interrupt_on_stop_signals()
        # Start-up imports the backend's native code, where a KeyboardInterrupt can abort the
        # process: a stop signal is noted there and raised once the imports are done.
        with deferred_interrupts():
            parser = build_parser()
            try:
                args, extra = parser.parse_known_args(argv)
                if extra:  # named by the command they were given to: `dqnviz test: error: unrecognized arguments: --bogus`
                    named = parser.commands.get(getattr(args, "command", None), parser)
                    named.error(f"unrecognized arguments: {' '.join(extra)}{_suggestion(named, extra)}")
            except SystemExit as stop:  # --help, --version, or a usage error already printed in one line
                return stop.code if isinstance(stop.code, int) else 2
            if not getattr(args, "command", None):
                parser.print_help()
                return 2
            command = args.command
            if args.command not in NO_BACKEND:
                try:
                    choose_backend()
                except UserError as error:
                    print(f"dqnviz {args.command}: error: {error}", file=sys.stderr)
                    return error.exit_code
                quiet_backends()
        code = args._module.run(args)
    except UserError as error:
        print(f"{_who(command)}: error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        # a path the user gave that cannot be used (a 300-character --name, a file without read
        # permission, a folder where a file belongs, a full or read-only disk): the user's to
        # mend, wherever the command first touched it. An OSError naming no path is a bug.
        if error.errno not in PATH_ERRORS or (error.filename is None and error.errno not in (errno.ENAMETOOLONG, errno.EILSEQ)):
            raise
        name = str(error.filename or "a path")
        name = name if len(name) <= 80 else name[:40] + "…" + name[-39:]
        print(f"{_who(command)}: error: {name}: {os.strerror(error.errno).lower()}", file=sys.stderr)
        return 2
    except BaseException as error:
        if not interrupted_by(error):  # a Ctrl-C that numpy wrapped in a ValueError is still a Ctrl-C
            raise
        with contextlib.suppress(OSError, ValueError):  # stopped by a hang-up: the terminal may be gone
            print(f"{_who(command)}: interrupted", file=sys.stderr)
        return exit_status()
    finally:
        restore_signals(previous)
    return int(code or 0)


def _who(command) -> str:
    """How a message names its command: ``dqnviz test``, or ``dqnviz`` before one is known."""
    return f"dqnviz {command}" if command else "dqnviz"


if __name__ == "__main__":
    sys.exit(main())
