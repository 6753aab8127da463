"""argparse types for command-line numbers: a bad value becomes a one-line usage error.

``parser.add_argument("--games", type=whole_number(minimum=1))`` rejects ``--games 0`` with
``dqnviz nvis: error: --games must be at least 1, got 0`` and exit status 2, before anything is
loaded or written (see :class:`dqnviz.cli.OneLineErrorParser`).
"""

from __future__ import annotations

import argparse

from dqnviz.config import MAX_ENVS, MAX_SEED  # the commands' bounds, in one place

__all__ = ["MAX_ENVS", "MAX_GAMES", "MAX_SEED", "MAX_WHOLE", "add_playing_arguments", "add_viewing_arguments",
           "nonempty", "playing_options", "positive_number", "probability", "sticky_probability", "whole_number"]

# Past these a number is a typo, and a huge count would only fail later with a traceback (a list
# of a quintillion results): counts of games go to a hundred thousand, any other whole number to
# a billion (seeds to config.MAX_SEED, environments to config.MAX_ENVS).
MAX_GAMES = 100_000
MAX_WHOLE = 10**9


def whole_number(minimum: int | None = None, maximum: int | None = None):
    """An argparse type: ``int(text)`` within ``[minimum, maximum]``; ``minimum`` may be open, and
    without a ``maximum`` the value is capped at :data:`MAX_WHOLE`."""
    ceiling = MAX_WHOLE if maximum is None else maximum

    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        low = minimum is not None and value < minimum
        if maximum is not None and minimum is not None and (low or value > maximum):
            raise argparse.ArgumentTypeError(f"must be between {minimum:,} and {maximum:,}, got {value:,}")
        if low:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:,}, got {value:,}")
        if value > ceiling:
            raise argparse.ArgumentTypeError(f"must be at most {ceiling:,}, got {value:,}")
        return value

    return parse


def positive_number(text: str) -> float:
    """An argparse type: a float greater than 0 (a learning rate, say)."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {str(text).strip()}")
    return value


def probability(text: str) -> float:
    """An argparse type: a float in [0, 1] (an ε, a sticky-action probability)."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {str(text).strip()}")  # as typed: 1.0000001 is not 1
    return value


def nonempty(text: str) -> str:
    """An argparse type: a path or list that is not empty (``--out ''`` is a slip, not the default)."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("must not be empty (leave the option out for its default)")
    return text


def sticky_probability(text: str) -> float:
    """An argparse type: a probability below 1 (sticky actions: at 1 the first action repeats for ever)."""
    value = probability(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be less than 1 (at {str(text).strip()} the first action repeats "
                                         "for ever and the agent's choices never reach the game)")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def add_alias(parser, option: str, dest: str, type_) -> None:
    """``option`` as a second name of the option stored in ``dest``, kept out of the help's layout:
    test, play and record count ``--episodes`` where nvis and compare count ``--games``, and a
    user of one may type the other's word. An error names the option as typed."""
    parser.add_argument(option, dest=dest, type=type_, default=argparse.SUPPRESS, metavar="N", help=argparse.SUPPRESS)


def add_playing_arguments(parser, games_help: str,
                          max_steps_help: str = "stop playing after N agent steps in all (default: whole games)") -> None:
    """``--games``, ``--epsilon``, ``--seed`` and ``--max-steps`` of the commands that play games for states."""
    parser.add_argument("--games", type=whole_number(1, MAX_GAMES), default=1, metavar="N",
                        help=f"{games_help} (default: 1; also --episodes N)")
    add_alias(parser, "--episodes", "games", whole_number(1, MAX_GAMES))
    parser.add_argument("--epsilon", type=probability, default=0.05, metavar="E", help="ε of the ε-greedy policy (default: 0.05)")
    parser.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0, metavar="S", help="seed of the games and ε (default: 0)")
    parser.add_argument("--max-steps", type=whole_number(minimum=1), default=None, metavar="N", help=max_steps_help)


def playing_options(args) -> dict:
    """The options that :func:`add_playing_arguments` added, as keyword arguments."""
    return {"games": args.games, "seed": args.seed, "max_steps": args.max_steps, "epsilon": args.epsilon}


MAX_SCALE = 6
"""The largest ``--scale`` of play and record: 160·6 × 210·6 = 960 × 1260 pixels of game."""


def add_viewing_arguments(parser, default_scale: int, episodes_help: str, scale_note: str = "") -> None:
    """``--episodes``, ``--epsilon``, ``--scale`` and ``--seed`` of the commands that show a game (play, record).

    Both take the same ``--scale`` range, 1 to :data:`MAX_SCALE`; only their defaults differ.
    """
    parser.add_argument("--episodes", type=whole_number(1, MAX_GAMES), default=1, metavar="N",
                        help=f"{episodes_help} (default: 1; also --games N)")
    add_alias(parser, "--games", "episodes", whole_number(1, MAX_GAMES))
    parser.add_argument("--epsilon", type=probability, default=0.05, metavar="E", help="ε of the agent's ε-greedy policy (default: 0.05)")
    parser.add_argument("--scale", type=whole_number(1, MAX_SCALE), default=default_scale, metavar="N",
                        help=f"screen magnification, 1-{MAX_SCALE}: N·160 × N·210 pixels (default: {default_scale}{scale_note})")
    parser.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0, metavar="S",
                        help="seeds the emulator and the ε choices (default: 0)")
