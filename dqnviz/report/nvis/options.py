"""What the report shows, as ``dqnviz nvis``'s options or :func:`nvis_report`'s arguments give it:
``--layers`` and ``--filters`` parsed and checked, and how the page names the filter choice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dqnviz import analysis
from dqnviz.errors import UserError
from dqnviz.progress import join_words
from dqnviz.units import format_few


def parse_layers(text, model, name="--layers") -> list:
    """``"conv1,conv3"`` (or None: all conv layers) → layer names; UserError for unknown names.

    Besides the conv layers, any layer with an image output after them may be named
    (:func:`dqnviz.analysis.image_layers`), e.g. the ReLU after a conv and its BatchNormalization.
    ``name`` is how the messages call the option (``layers`` from Python)."""
    convs = list(analysis.conv_layers(model))
    if text is None or str(text).strip() == "":
        return convs
    names = [layer.strip() for layer in str(text).split(",") if layer.strip()]
    listed = f"the conv layers of this network are: {', '.join(convs)}"
    if not names:
        raise UserError(f"{name} names no layer; {listed}")
    images = None
    for layer in names:
        if layer in convs:
            continue
        images = analysis.image_layers(model) if images is None else images
        if layer not in images:
            others = [n for n in images if n not in convs]
            also = f" (also any layer with an image output after them: {format_few(others)})" if others else ""
            raise UserError(f"unknown layer {layer!r}; {listed}{also}")
    if len(set(names)) != len(names):
        raise UserError(f"{name} names a layer twice: {text}")
    return names


@dataclass(frozen=True)
class StrongestFilters:
    """``--filters top N``: each layer's N filters whose strongest unit fires most, strongest first
    (chosen in :func:`analyse`, once every filter's strongest unit is known)."""

    count: int

    def choose(self, units: list, in_play=None) -> list:
        """The filters of ``units`` (filter → (state, position, value)) with the N largest values;
        ties go to the lower filter index. With ``in_play`` (per state: whether it holds only
        frames of the game, :func:`dqnviz.analysis.full_history`), filters that fire only on a
        game's first states, whose blank frames from before the start read as sudden motion, come
        after every filter that fires in play, however strongly they fire."""
        def only_at_a_start(f):
            return in_play is not None and not in_play[units[f][0]]

        order = sorted(range(len(units)), key=lambda f: (only_at_a_start(f), -units[f][2], f))
        return order[: self.count]


def parse_filters(text, layer_channels: dict, name="--filters") -> dict:
    """``--filters`` → {layer: filter indices, or :class:`StrongestFilters`}; UserError for bad values.

    ``N``: each layer's first N filters (all of a layer that has fewer, within the largest layer's
    count); ``all``; ``top N``: the N that fire most strongly; ``3,17,40``: those filters of each
    layer (an index must exist in every layer shown; ``17,`` is filter 17 alone). ``name`` is how
    the messages call the option (``filters`` from Python).
    """
    text = str(text).strip().lower()
    largest = max(layer_channels.values())
    if text == "all":
        return {layer: list(range(n)) for layer, n in layer_channels.items()}
    words = "a number of filters (1..{0}), 'all', 'top N' or filter indices such as 0,5,17".format(largest)
    if text.startswith("top"):
        count = _filter_number(text[3:], words, text, name=name)
        check_filter_range(count, layer_channels, also="'all'", name=name, given=text)
        return {layer: StrongestFilters(min(count, n)) for layer, n in layer_channels.items()}
    if "," in text:
        parts = [part for part in text.split(",") if part.strip()] or [""]  # "17," is filter 17 alone
        indices = [_filter_number(part, words, text, index=True, name=name) for part in parts]
        if len(set(indices)) != len(indices):
            raise UserError(f"{name} {text}: a filter is named twice")
        smallest = min(layer_channels.values())
        if max(indices) >= smallest:
            layer = min(layer_channels, key=layer_channels.get)
            layers = "--layers" if name.startswith("--") else "the layers argument"
            raise UserError(f"{name} {text}: filter {max(indices)} does not exist in {layer}, which has "
                            f"{smallest} filters (0..{smallest - 1}); choose layers with {layers}")
        return {layer: list(indices) for layer in layer_channels}
    count = _filter_number(text, words, text, name=name)
    check_filter_range(count, layer_channels, also="'all'", name=name)
    return {layer: list(range(min(count, n))) for layer, n in layer_channels.items()}


DEFAULT_FILTERS = "top8"  # --filters' and nvis_report's default: each layer's 8 strongest filters


def default_filters(layer_channels: dict) -> str:
    """The filters shown when none are asked for: :data:`DEFAULT_FILTERS`, each layer's 8 strongest
    (``top N`` of a network whose largest layer has N < 8 filters: all of them). Strongest rather
    than the first 8, which in a trained layer may include filters that never fire (2 of the first
    8 conv1 filters of ``snapshots/pong-h100-10min_6.keras`` on a game of Pong)."""
    largest = max(layer_channels.values())
    return DEFAULT_FILTERS if largest >= 8 else f"top{largest}"


def _filter_number(part: str, words: str, text: str, index: bool = False, name="--filters") -> int:
    try:
        value = int(part.strip())
    except ValueError:
        raise UserError(f"{name} must be {words}, not {text!r}") from None
    if index and value < 0:
        raise UserError(f"{name} {text}: filter indices start at 0")
    return value


def describe_filters(text) -> str:
    """How the page names a ``--filters`` choice: "the first 8", "all", "the 8 strongest", "0, 5 and 17"."""
    text = str(text).strip().lower()
    if text == "all":
        return "all"
    if text.startswith("top"):
        return f"the {int(text[3:])} strongest"
    if "," in text:
        indices = [str(int(part)) for part in text.split(",") if part.strip()]
        return "filters " + join_words(indices)
    return f"the first {int(text)}"


def check_filter_range(count: int, layer_channels: dict, also: str = "", name="--filters", given=None) -> None:
    """``--filters N`` must lie in 1..(the largest layer's filters); ``also`` names another accepted
    value, ``name`` the option, ``given`` what was typed (``top0``; default: the count).

    Raises:
        UserError: the count is out of range.
    """
    largest = max(layer_channels.values())
    if not 1 <= count <= largest:
        sizes = ", ".join(f"{layer} {n}" for layer, n in layer_channels.items())
        top = str(given).startswith("top")
        raise UserError(f"{name} {count if given is None else given} is out of range: the layers have {sizes} filters "
                        f"(give {'top' if top else ''}1..{'top' if top else ''}{largest}{' or ' + also if also else ''})")


def _as_text(value, name):
    """``layers`` or ``filters`` given from Python as the text the CLI takes: a list of names or
    indices joins with commas (one index stays an index: ``[17]`` → ``"17,"``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise UserError(f"{name} must be a number, a string or a list, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        items = [str(item).strip() for item in value]
    except TypeError:
        raise UserError(f"{name} must be a number, a string or a list, got {value!r}") from None
    if not items:
        example = "[0, 5]" if name == "filters" else "['conv1']"
        raise UserError(f"{name} names nothing: give None for all, or a list such as {example}")
    return ",".join(items) + ("," if len(items) == 1 and name == "filters" else "")
