"""Checks of command-line numbers that turn a bad value into a one-line :class:`UserError`."""

from __future__ import annotations

from dqnviz.errors import UserError


def whole_number(name: str, text, minimum: int | None = None) -> int:
    """``int(text)``, or a UserError naming the option (``--games``) and what was wrong."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UserError(f"{name} must be a whole number, not {text!r}") from None
    if minimum is not None and value < minimum:
        raise UserError(f"{name} must be at least {minimum}, not {value}")
    return value


def probability(name: str, text) -> float:
    """``float(text)`` in [0, 1], or a UserError naming the option."""
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{name} must be a number between 0 and 1, not {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise UserError(f"{name} must be between 0 and 1, not {value}")
    return value


def check_viewing_options(args, max_scale: int) -> None:
    """``--episodes``, ``--epsilon``, ``--scale`` and ``--seed`` of the commands that show a game (play, record)."""
    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    if not 0.0 <= args.epsilon <= 1.0:
        raise UserError(f"--epsilon must be between 0 and 1, got {args.epsilon}")
    if not 1 <= args.scale <= max_scale:
        raise UserError(f"--scale must be between 1 and {max_scale}, got {args.scale}")
    if args.seed < 0:
        raise UserError(f"--seed must not be negative, got {args.seed}")


def playing_options(args) -> dict:
    """``--games``, ``--seed``, ``--max-steps`` and ``--epsilon`` of the commands that play games for states."""
    return {
        "games": whole_number("--games", args.games, minimum=1),
        "seed": whole_number("--seed", args.seed),
        "max_steps": None if args.max_steps is None else whole_number("--max-steps", args.max_steps, minimum=1),
        "epsilon": probability("--epsilon", args.epsilon),
    }
