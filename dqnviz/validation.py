"""argparse types for command-line values: a bad value becomes a one-line usage error.

``parser.add_argument("--games", type=whole_number(minimum=1))`` rejects ``--games 0`` with
``dqnviz nvis: error: --games must be at least 1, got 0`` and exit status 2, before anything is
loaded or written (see :class:`dqnviz.cli.OneLineErrorParser`).

They sit below :mod:`dqnviz.config`, whose fields become ``dqnviz train``'s flags with these
types, and :mod:`dqnviz.commands.arguments`, which re-exports them for the commands.
"""

from __future__ import annotations

import argparse

__all__ = ["MAX_WHOLE", "nonempty", "positive_number", "probability", "sticky_probability", "whole_number"]

# Past this a number is a typo, and a huge count would only fail later with a traceback (a list
# of a quintillion results): a whole number without a bound of its own goes to a billion (counts
# of games to commands.arguments.MAX_GAMES, seeds to config.MAX_SEED, environments to
# config.MAX_ENVS).
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
