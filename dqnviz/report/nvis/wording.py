"""How the page words things: a card's note on a state with blank frames, small numbers as
words, and the saliency section's names for the outputs (Q-values or scores)."""

from __future__ import annotations

from dqnviz.report.nvis.findings import SCORE_PICKS


def _blank_frames(state) -> int:
    """How many of a state's oldest frames are all zero: at a game's start the frames before it
    are blank (see :mod:`dqnviz.replay`), which colours the input image blue or cyan."""
    blank = 0
    while blank < state.shape[-1] and not state[..., blank].any():
        blank += 1
    return blank


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _number_word(n: int) -> str:
    """4 → "four"; above ten, digits."""
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def _ordinal(n: int) -> str:
    """4 → "4th", 21 → "21st", 12 → "12th"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def blank_note(blank: int, history: int) -> str:
    """The card's note on a state from a game's first ``history - 1`` steps, whose ``blank`` oldest
    frames are from before the start; "" for any other state.

    Of the RGB image's frames t-2, t-1, t the oldest ``blank - (history - 3)`` are blank: one leaves
    green + blue (cyan), two leave blue.
    """
    if not 0 < blank < history:
        return ""
    step = history - blank  # 1 for the game's first state
    ordinal = _ORDINALS[step - 1] if step <= len(_ORDINALS) else _ordinal(step)
    note = f"its game's {ordinal} state: {blank} blank {'frame' if blank == 1 else 'frames'} from before the start"
    blank_in_colour = blank - (history - 3)
    if blank_in_colour >= 1:
        note += ", hence the " + ("blue" if blank_in_colour >= 2 else "cyan")
    return note


# How the saliency section names the outputs: a snapshot's are Q-values of ALE actions; any other
# model's outputs are scores (Q-values, a policy's or a classifier's logits, ...).
Q_WORDS = {"value": "Q", "top": "max Q", "gap": "action gap", "choice": "a*", "axis": "Q(s, a)",
           "hover": "Q(s, %{y})", "picks": ("highest max Q", "lowest max Q", "biggest action gap")}
SCORE_WORDS = {"value": "score", "top": "top score", "gap": "margin", "choice": "k*", "axis": "score y(s, k)",
               "hover": "y(s, %{y})", "picks": SCORE_PICKS}
