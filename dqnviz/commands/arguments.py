"""The options that several commands share, and the argparse types for command-line numbers.

The types live in :mod:`dqnviz.validation` (which :mod:`dqnviz.config` uses too) and are
re-exported here: a bad value becomes a one-line usage error.
``parser.add_argument("--games", type=whole_number(minimum=1))`` rejects ``--games 0`` with
``dqnviz nvis: error: --games must be at least 1, got 0`` and exit status 2, before anything is
loaded or written (see :class:`dqnviz.cli.OneLineErrorParser`).
"""

from __future__ import annotations

import argparse

from dqnviz.config import MAX_ENVS, MAX_SEED  # the commands' bounds, in one place
from dqnviz.validation import MAX_WHOLE, nonempty, positive_number, probability, sticky_probability, whole_number

__all__ = ["MAX_ENVS", "MAX_GAMES", "MAX_SEED", "MAX_WHOLE", "add_alias", "add_count_and_epsilon", "add_playing_arguments",
           "add_seed", "add_viewing_arguments", "nonempty", "playing_options", "positive_number", "probability",
           "sticky_probability", "whole_number"]

# Past this a count of games is a typo, and a huge count would only fail later with a traceback (a
# list of a quintillion results): counts of games go to a hundred thousand (any other whole number
# to validation.MAX_WHOLE, a billion; seeds to config.MAX_SEED, environments to config.MAX_ENVS).
MAX_GAMES = 100_000


def add_alias(parser, option: str, dest: str, type_) -> None:
    """``option`` as a second name of the option stored in ``dest``, kept out of the help's layout:
    test, play and record count ``--episodes`` where nvis and compare count ``--games``, and a
    user of one may type the other's word. An error names the option as typed."""
    parser.add_argument(option, dest=dest, type=type_, default=argparse.SUPPRESS, metavar="N", help=argparse.SUPPRESS)


def add_count_and_epsilon(parser, option: str, count_help: str, default: int = 1,
                          epsilon_help: str = "ε of the ε-greedy policy") -> None:
    """The count of games to play, ``option`` (``--games`` or ``--episodes``, with the other as its
    alias), 1 to :data:`MAX_GAMES`, and then ``--epsilon``: as test, play, record, nvis and compare
    all take them."""
    alias = "--episodes" if option == "--games" else "--games"
    parser.add_argument(option, type=whole_number(1, MAX_GAMES), default=default, metavar="N",
                        help=f"{count_help} (default: {default}; also {alias} N)")
    add_alias(parser, alias, option[2:], whole_number(1, MAX_GAMES))
    parser.add_argument("--epsilon", type=probability, default=0.05, metavar="E", help=f"{epsilon_help} (default: 0.05)")


def add_seed(parser, seed_help: str) -> None:
    """``--seed S``, 0 to :data:`MAX_SEED`, default 0."""
    parser.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0, metavar="S", help=f"{seed_help} (default: 0)")


def add_playing_arguments(parser, games_help: str,
                          max_steps_help: str = "stop playing after N agent steps in all (default: whole games; a game is cut "
                                                 "at 4,500 agent steps = 18,000 frames, as in the Nature test, and "
                                                 "the progress bar counts up to that)") -> None:
    """``--games``, ``--epsilon``, ``--seed`` and ``--max-steps`` of the commands that play games for states."""
    add_count_and_epsilon(parser, "--games", games_help)
    add_seed(parser, "seed of the games and ε")
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
    add_count_and_epsilon(parser, "--episodes", episodes_help, epsilon_help="ε of the agent's ε-greedy policy")
    parser.add_argument("--scale", type=whole_number(1, MAX_SCALE), default=default_scale, metavar="N",
                        help=f"screen magnification, 1-{MAX_SCALE}: N·160 × N·210 pixels (default: {default_scale}{scale_note})")
    add_seed(parser, "seeds the emulator and the ε choices")
