"""The ``dqnviz`` command: train, test, play, record, nvis, compare, plot, games.

Each subcommand lives in ``dqnviz/commands/<name>.py`` with ``HELP``, ``add_arguments(parser)``
and ``run(args) -> exit code``. A :class:`~dqnviz.errors.UserError` becomes one line on stderr
and a non-zero exit; Ctrl-C exits with 130 and SIGTERM with 143 (128 + the signal); a reader that closes stdout early (``dqnviz games |
head -2``) ends the command quietly with 141, as a pipe's SIGPIPE would.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys

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


BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax"}


def choose_backend() -> str:
    """The Keras backend to run: ``KERAS_BACKEND`` when set, else the one in Keras's own config
    file (``$KERAS_HOME/keras.json``, default ``~/.keras/keras.json``) when it is installed, else
    TensorFlow when it is installed and JAX when only JAX is (a GPU machine with JAX but no
    TensorFlow). The choice is written to ``KERAS_BACKEND`` before Keras is imported.

    Raises:
        UserError: the chosen backend, or both, are not installed (one line saying what to install).
    """
    from importlib.util import find_spec

    from dqnviz.errors import UserError

    def installed(name):
        try:
            return find_spec(BACKEND_PACKAGES[name]) is not None
        except (ImportError, ValueError):
            return False

    name = os.environ.get("KERAS_BACKEND")
    if not name:
        # Keras writes keras.json on its first import, naming the backend of that moment (its
        # default, tensorflow): a backend it names that is not installed is no user's choice.
        configured = _configured_backend()
        name = configured if configured in BACKEND_PACKAGES and installed(configured) else None
    if not name:
        name = next((b for b in ("tensorflow", "jax") if installed(b)), None)
        if name is None:
            raise UserError("dqnviz needs TensorFlow or JAX as Keras's backend and neither is installed: "
                            "pip install 'dqnviz[tensorflow]' (or 'dqnviz[jax]')")
    if name not in BACKEND_PACKAGES:
        raise UserError(f"KERAS_BACKEND={name!r} is not one dqnviz supports: use tensorflow or jax")
    if not installed(name):
        other = next(b for b in BACKEND_PACKAGES if b != name)
        hint = f", or run with KERAS_BACKEND={other}" if installed(other) else ""
        raise UserError(f"the Keras backend {name!r} is not installed: pip install 'dqnviz[{name}]'{hint}")
    os.environ["KERAS_BACKEND"] = name
    return name


def _configured_backend() -> str | None:
    """The ``backend`` of Keras's config file, if there is one and it names one."""
    import json

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as file:
            backend = json.load(file).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return backend if isinstance(backend, str) and backend else None


def _quiet_backends() -> None:
    """Keep TensorFlow's start-up log lines (oneDNN, CPU features) off the user's terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ["KERAS_BACKEND"] == "jax":
        # Keras still imports TensorFlow (if installed) for file I/O; its oneDNN kernels are unused.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        return
    if "tensorflow" in sys.modules:
        return
    # The remaining lines come from C++ before logging is configured: silence fd 2 during import.
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                importlib.import_module("tensorflow")
            except Exception:
                pass  # keras reports a missing or broken TensorFlow itself, with the real message
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other dqnviz error:

        dqnviz test: error: --episodes must be at least 1, got 0 (see dqnviz test --help)
    """

    def error(self, message: str):
        # "argument --games: must be …" reads "--games must be …"; other messages keep the colon
        message = re.sub(r"^argument ([^:]+):(?= must)", lambda m: m.group(1).split("/")[-1], message)
        message = re.sub(r"^argument ([^:]+):", lambda m: m.group(1).split("/")[-1] + ":", message)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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

    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the command they were given to: `dqnviz test: error: unrecognized arguments: --bogus`
            parser.commands.get(getattr(args, "command", None), parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as stop:  # --help, --version, or a usage error already printed in one line
        return stop.code if isinstance(stop.code, int) else 2
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if args.command not in NO_BACKEND:
        try:
            choose_backend()
        except UserError as error:
            print(f"dqnviz {args.command}: error: {error}", file=sys.stderr)
            return error.exit_code
        _quiet_backends()
    from dqnviz.stopping import exit_status, interrupted_by, raise_interrupt_on_stop_signals, restore_signals

    previous = raise_interrupt_on_stop_signals()
    try:
        code = args._module.run(args)
    except UserError as error:
        print(f"dqnviz {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        # a path the user gave that cannot be used (a 300-character --name, a file without read
        # permission, a folder where a file belongs, a full or read-only disk): the user's to
        # mend, wherever the command first touched it. An OSError naming no path is a bug.
        if error.errno not in PATH_ERRORS or (error.filename is None and error.errno not in (errno.ENAMETOOLONG, errno.EILSEQ)):
            raise
        name = str(error.filename or "a path")
        name = name if len(name) <= 80 else name[:40] + "…" + name[-39:]
        print(f"dqnviz {args.command}: error: {name}: {os.strerror(error.errno).lower()}", file=sys.stderr)
        return 2
    except BaseException as error:
        if not interrupted_by(error):  # a Ctrl-C that numpy wrapped in a ValueError is still a Ctrl-C
            raise
        print(f"dqnviz {args.command}: interrupted", file=sys.stderr)
        return exit_status()
    finally:
        restore_signals(previous)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
