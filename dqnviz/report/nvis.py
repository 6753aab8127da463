"""Data and figures for ``dqnviz nvis`` and :func:`nvis_report`: what each conv filter responds to.

:func:`analyse` finds for every selected filter the state and position of its largest activation,
and computes (batched: one call per layer) the guided-backprop image of that unit, the layers'
effective receptive fields and saliency maps of a few telling states. :func:`gather` feeds it the
states of games a snapshot plays; :func:`nvis_report` the states a user gives for any Keras image
model. :func:`build_context` (a snapshot) and :func:`model_context` (any model) turn the result
into the template context of ``templates/nvis.html.j2`` (deduplicated PNG data URIs and plotly
figure JSON), and :func:`write_report` renders it.

The analyses themselves live in :mod:`dqnviz.analysis`; this module only chooses the states and
units, batches the calls, and turns the results into images and figures.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

import numpy as np

from dqnviz import analysis
from dqnviz.errors import UserError
from dqnviz.report.render import MODEBAR_ROOM, script_json
from dqnviz.snapshot import starting_point

ERF_STATES = 32  # states (evenly spaced over the games) averaged for the effective receptive field


@dataclass
class Card:
    """One filter's strongest unit: where it fired most, and its guided-backprop gradient."""

    layer: str
    filter: int
    state_index: int
    position: tuple  # (y, x) in the layer's output
    value: float
    box: tuple  # (x0, y0, width, height) of the theoretical receptive field, input pixels
    gradient: np.ndarray = field(repr=False, default=None)


@dataclass
class NvisData:
    """What :func:`analyse` found; ``snapshot`` and ``record`` only for the games a snapshot played."""

    model: object
    states: np.ndarray  # (N, H, W, C) as the model takes them
    scores: np.ndarray  # (N, A): Q-values, or a classifier's scores before its softmax
    view: "StateView"
    layers: list
    cards: dict  # layer -> [Card]
    fields: dict  # layer -> {"size", "theoretical", "stride", "map", "centre"}
    saliency: list  # [{"index", "labels", "max_q", "gap", "q", "action", "gradient", "perturbation"}]
    timings: dict
    silent: dict = field(default_factory=dict)  # layer -> filters of a rectified layer at ≤ 0 on every state
    channels: dict = field(default_factory=dict)  # layer -> number of filters in the layer (shown or not)
    snapshot: object = None
    record: object = None  # agent.GameRecord


@dataclass(frozen=True)
class StateView:
    """How the report draws a model's states ``(N, H, W, C)`` as images.

    A stack of frames (``frame_stack``, C ≥ 3, oldest first) is shown as
    :func:`dqnviz.analysis.encode_rgb` shows it: its last three frames as R, G, B = t-2, t-1, t.
    An image shows its 3 channels as R, G, B, or its one channel as grey. State values
    ``low..high`` are drawn as 0..255 (uint8 states as they are).
    """

    frame_stack: bool
    height: int
    width: int
    channels: int
    low: float = 0.0
    high: float = 255.0

    @property
    def scaled(self) -> bool:
        return (self.low, self.high) != (0.0, 255.0)

    def rgb(self, states) -> np.ndarray:
        """uint8 ``(..., H, W, 3)`` images of states."""
        states = np.asarray(states)
        if self.scaled or states.dtype.kind == "f":
            scale = 255.0 / (self.high - self.low)
            states = np.clip(np.rint((states.astype(np.float64) - self.low) * scale), 0, 255).astype(np.uint8)
        return analysis.encode_rgb(self._three(states))

    def gradient_rgb(self, gradients) -> np.ndarray:
        """uint8 ``(..., H, W, 3)`` images of gradients over states: grey 128 = 0."""
        return np.asarray(analysis.encode_gradient_rgb(self._three(gradients)))

    def strip(self, gradient):
        """One image of the gradient of each frame or channel side by side; None for one channel."""
        return None if self.channels == 1 else _strip(analysis.frames_strip(gradient))

    @property
    def labels(self) -> list:
        """The strip's labels: t-(C-1) … t for a frame stack, R, G, B for a colour image."""
        if self.frame_stack:
            return [f"t-{back}" if back else "t" for back in range(self.channels - 1, -1, -1)]
        return ["R", "G", "B"] if self.channels == 3 else []

    def _three(self, array):
        return np.repeat(array, 3, axis=-1) if self.channels == 1 else array


def state_view(states, frame_stack=None) -> StateView:
    """How to show ``states`` ``(N, H, W, C)``: C = 1 a grey image, C = 3 an RGB image unless
    ``frame_stack`` (or, when None, consecutive states share frames as a game's stacks do), C ≥ 4
    a stack of frames, oldest first.

    Raises:
        UserError: 2 channels, ``frame_stack=True`` with 1 channel, or ``frame_stack=False``
            with more than 3.
    """
    states = np.asarray(states)
    channels = int(states.shape[-1])
    if channels == 2:
        raise UserError("states have 2 channels; nvis_report shows 1 channel as grey, 3 as an RGB image, "
                        "or a stack of 3 or more frames (the last three as red, green, blue)")
    if frame_stack is None:
        frame_stack = channels >= 4 or (channels == 3 and shares_frames(states))
    elif frame_stack and channels < 3:
        raise UserError(f"frame_stack=True needs states of 3 or more stacked frames, these have {channels} channel")
    elif not frame_stack and channels > 3:
        raise UserError(f"states of {channels} channels are shown as a stack of frames (the last three as red, "
                        "green, blue); frame_stack=False is for grey (1) or RGB (3) images")
    return StateView(bool(frame_stack), int(states.shape[1]), int(states.shape[2]), channels, *display_range(states))


def shares_frames(states) -> bool:
    """Whether consecutive states overlap as stacks of frames: ``s[i][..., :-1] = s[i−1][..., 1:]``
    (the frames t-1, t of one are t-2, t-1 of the next) for at least half of the pairs, counting
    only pairs whose shared frames are not blank."""
    states = np.asarray(states)
    if len(states) < 2 or states.shape[-1] < 2:
        return False
    newer, older = states[1:, ..., :-1], states[:-1, ..., 1:]
    same = (newer == older).reshape(len(newer), -1).all(axis=1)
    lit = np.ptp(newer.reshape(len(newer), -1), axis=1) > 0
    return int((same & lit).sum()) * 2 >= len(newer)


def display_range(states) -> tuple:
    """The state values drawn as 0..255: uint8 and values within 0..255 as they are, values within
    0..1 scaled by 255, others stretched from their minimum to their maximum."""
    states = np.asarray(states)
    if states.dtype == np.uint8:
        return 0.0, 255.0
    low, high = float(np.min(states)), float(np.max(states))
    if low >= 0 and high <= 1:
        return 0.0, 1.0
    if low >= 0 and high <= 255:
        return 0.0, 255.0
    return low, high if high > low else low + 1.0


def _pair(value) -> tuple:
    """``receptive_field`` gives an int, or a (y, x) tuple when the axes differ."""
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value), int(value))


def parse_layers(text, model, name="--layers") -> list:
    """``"conv1,conv3"`` (or None: all) → conv layer names; UserError for unknown names.
    ``name`` is how the messages call the option (``layers`` from Python)."""
    convs = list(analysis.conv_layers(model))
    if text is None or str(text).strip() == "":
        return convs
    names = [layer.strip() for layer in str(text).split(",") if layer.strip()]
    if not names:
        raise UserError(f"{name} names no layer; the conv layers of this network are: {', '.join(convs)}")
    for layer in names:
        if layer not in convs:
            raise UserError(f"unknown layer {layer!r}; the conv layers of this network are: {', '.join(convs)}")
    if len(set(names)) != len(names):
        raise UserError(f"{name} names a layer twice: {text}")
    return names


@dataclass(frozen=True)
class StrongestFilters:
    """``--filters top N``: each layer's N filters whose strongest unit fires most, strongest first
    (chosen in :func:`analyse`, once every filter's strongest unit is known)."""

    count: int

    def choose(self, units: list) -> list:
        """The filters of ``units`` (filter → (state, position, value)) with the N largest values;
        ties go to the lower filter index."""
        order = sorted(range(len(units)), key=lambda f: (-units[f][2], f))
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
        check_filter_range(count, layer_channels, also="'all'", name=name)
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
        return "filters " + (", ".join(indices[:-1]) + " and " + indices[-1] if len(indices) > 1 else indices[0])
    return f"the first {int(text)}"


def check_filter_range(count: int, layer_channels: dict, also: str = "", name="--filters") -> None:
    """``--filters N`` must lie in 1..(the largest layer's filters); ``also`` names another accepted
    value, ``name`` the option.

    Raises:
        UserError: the count is out of range.
    """
    largest = max(layer_channels.values())
    if not 1 <= count <= largest:
        sizes = ", ".join(f"{layer} {n}" for layer, n in layer_channels.items())
        raise UserError(f"{name} {count} is out of range: the layers have {sizes} filters "
                        f"(give 1..{largest}{' or ' + also if also else ''})")


def gather(snapshot, layers, filters: dict, games=1, epsilon=0.05, seed=0, max_steps=None,
           progress=True, saliency_states=3) -> NvisData:
    """Play games with a snapshot, then :func:`analyse` the states it acted on."""
    from dqnviz.agent import checked_env_for_snapshot, play_games
    from dqnviz.progress import Progress, plural

    model = snapshot.model
    t0 = time.perf_counter()
    env = checked_env_for_snapshot(snapshot, seed=seed)
    frame_skip = max(int(snapshot.meta.get("preprocessing", {}).get("frame_skip", 4)), 1)
    total = max_steps or games * (18_000 // frame_skip)
    with Progress(f"play {games} {plural('game', games)}", total=total, enabled=progress) as bar:
        record = play_games(model, env, games=games, epsilon=epsilon, seed=seed, max_steps=max_steps,
                            on_step=lambda step, score: bar.update(step, score=float(score)))
    played = time.perf_counter() - t0
    states = record.states
    if len(states) < 1:
        raise UserError(f"collected {len(states)} game states: nothing to analyse "
                        "(play more games or raise --max-steps)")
    data = analyse(model, states, record.q_values, layers, filters, state_view(states, frame_stack=True),
                   progress=progress, saliency_states=saliency_states)
    data.snapshot, data.record = snapshot, record
    data.timings = {"play": played, **data.timings}
    return data


def analyse(model, states, scores, layers, filters: dict, view: StateView, progress=False,
            saliency_states=3, labels=None) -> NvisData:
    """Find the top unit of every selected filter and compute all images of the report.

    Args:
        model: a built Keras image model.
        states: ``(N, H, W, C)`` states the model takes, N ≥ 1.
        scores: ``(N, A)`` the model's outputs for them (Q-values, or a classifier's logits):
            they choose the saliency states and the output each map explains.
        layers: conv layer names (:func:`parse_layers`).
        filters: {layer: indices or :class:`StrongestFilters`} (:func:`parse_filters`).
        view: how the states are shown (:func:`state_view`); for a frame stack a filter's
            strongest unit is sought first outside states with blank frames.
        labels: the three saliency picks' labels (see :func:`pick_saliency_states`).
    """
    from dqnviz.analysis._model import resolve_layer
    from dqnviz.analysis.relu import is_relu_output
    from dqnviz.progress import Progress, plural

    timings = {}
    cards, fields, silent, channels = {}, {}, {}, {}
    # A game's first states stack blank frames from before its start, which read as sudden motion:
    # a filter's strongest unit is sought in them only if it fires on no other state.
    in_play = analysis.full_history(states) if view.frame_stack else None
    erf_states = states[np.unique(np.linspace(0, len(states) - 1, min(len(states), ERF_STATES)).astype(int))]
    with Progress(f"analyse {len(layers)} {plural('layer', len(layers))}, then saliency", total=len(layers) + 1,
                  unit="steps", enabled=progress) as bar:
        for i, layer in enumerate(layers):
            t0 = time.perf_counter()
            # Every filter of the layer costs the same forward passes as a few: it also tells which
            # filters never fire (ReLU output 0 at every position of every state: "dead" units).
            every_unit = analysis.top_activations(model, states, layer, prefer=in_play)
            choice = filters[layer]
            chosen = np.asarray(choice.choose(every_unit) if isinstance(choice, StrongestFilters) else choice, np.int64)
            # Only a rectified output at ≤ 0 everywhere is a unit that never fires; a linear
            # convolution (a BatchNormalization and ReLU after it) may peak below 0.
            rectified = is_relu_output(resolve_layer(model, layer))
            silent[layer] = [f for f, (_, _, value) in enumerate(every_unit) if value <= 0] if rectified else []
            channels[layer] = len(every_unit)
            units = [every_unit[f] for f in chosen]
            timings[f"{layer} top"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            size, stride = (_pair(v) for v in analysis.receptive_field(model, layer))
            erf = analysis.effective_receptive_field(model, erf_states, layer)
            erf_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            best_states = states[[s for s, _, _ in units]]
            # One batched call for the whole layer: each filter's best state with its own filter.
            gradients = np.asarray(analysis.guided_backprop(model, best_states, layer, chosen,
                                                            position=[(y, x) for _, (y, x), _ in units]))
            cards[layer] = [
                Card(layer, int(f), int(s), (int(y), int(x)), float(value),
                     field_box(erf, size, stride, (y, x), (view.height, view.width)), gradient)
                for f, (s, (y, x), value), gradient in zip(chosen, units, gradients)
            ]
            timings[f"{layer} guided"] = time.perf_counter() - t0
            fields[layer] = {"size": float(erf["size"]), "theoretical": size[0], "stride": stride[0],
                             "map": np.asarray(erf["map"], np.float32), "centre": erf.get("centre")}
            timings[f"{layer} erf"] = erf_seconds
            bar.update(i + 1)
        t0 = time.perf_counter()
        salient = []
        picks = pick_saliency_states(scores, *([labels] if labels else []))[:saliency_states]
        if picks:
            index = [p["index"] for p in picks]
            actions = np.argmax(scores[index], axis=-1)
            grad = np.asarray(analysis.saliency(model, states[index], action=actions, method="gradient"))
            pert = np.asarray(analysis.saliency(model, states[index], action=actions, method="perturbation",
                                                **perturbation_settings(view.height, view.width)))
            for pick, a, g, p in zip(picks, actions, grad, pert):
                salient.append({**pick, "action": int(a), "q": scores[pick["index"]].astype(float),
                                "gradient": g, "perturbation": p})
        timings["saliency"] = time.perf_counter() - t0
        bar.update(len(layers) + 1)
    return NvisData(model, states, scores, view, layers, cards, fields, salient, timings, silent, channels)


def perturbation_settings(height: int, width: int) -> dict:
    """The patch perturbation saliency blurs, for states of ``height`` × ``width``: the defaults of
    :func:`dqnviz.analysis.saliency` (a Gaussian mask of radius 5 px every 5 px, blur σ 3) at
    Atari's 84 px, grown with a larger image, so that a 224-pixel one is probed at 18 × 18
    positions of the same relative size rather than at 45 × 45 specks (and 6 times faster)."""
    scale = max(1.0, max(int(height), int(width)) / 84)
    return {"stride": max(1, round(5 * scale)), "radius": round(5.0 * scale, 2), "blur": round(3.0 * scale, 2)}


def field_box(erf: dict, size: tuple, stride: tuple, position: tuple, image: tuple) -> tuple:
    """``(x0, y0, width, height)``: the theoretical receptive field of unit ``position`` (y, x), in
    input pixels, cut to the ``image`` (H, W).

    Unit (y, x)'s field is centred on ``origin + (y, x) · stride`` with the origin from the
    effective receptive field's centre unit; with ``padding="valid"`` it starts at
    ``(y, x) · stride``, with ``"same"`` it reaches over the image's edges.
    """
    start = []
    for axis in range(2):
        origin = float(erf["centre"][axis]) - int(erf["unit"][axis]) * stride[axis]
        start.append(math.floor(origin + position[axis] * stride[axis] - (size[axis] - 1) / 2))
    y0, x0 = max(start[0], 0), max(start[1], 0)
    y1, x1 = min(start[0] + size[0], image[0]), min(start[1] + size[1], image[1])
    return (int(x0), int(y0), int(max(x1 - x0, 0)), int(max(y1 - y0, 0)))


SCORE_PICKS = ("highest top score", "lowest top score", "biggest margin")


def pick_saliency_states(q_values: np.ndarray,
                         labels=("highest max Q", "lowest max Q", "biggest action gap")) -> list:
    """Highest max Q, lowest max Q, biggest action gap (named by ``labels``); a state picked twice
    is shown once."""
    q = np.asarray(q_values, np.float64)
    if len(q) == 0:
        return []
    best = q.max(axis=1)
    ordered = np.sort(q, axis=1)
    gap = ordered[:, -1] - ordered[:, -2] if q.shape[1] > 1 else np.zeros(len(q))
    picks = [(labels[0], int(best.argmax())), (labels[1], int(best.argmin())), (labels[2], int(gap.argmax()))]
    merged = {}
    for label, index in picks:
        merged.setdefault(index, []).append(label)
    return [{"index": i, "labels": labels, "max_q": float(best[i]), "gap": float(gap[i])}
            for i, labels in merged.items()]


# --------------------------------------------------------------------------------------------
# Figures and template context
# --------------------------------------------------------------------------------------------


class ImageStore:
    """PNG data URIs, deduplicated by content; the page keeps each once in a JSON map."""

    def __init__(self):
        self.uris: dict[str, str] = {}

    def add(self, image: np.ndarray) -> str:
        from dqnviz.report.render import png_data_uri

        image = np.ascontiguousarray(image, dtype=np.uint8)
        key = "i" + hashlib.blake2b(image.tobytes() + str(image.shape).encode(), digest_size=8).hexdigest()
        if key not in self.uris:
            self.uris[key] = png_data_uri(image)
        return key


def _strip(frames: np.ndarray, gap: int = 2) -> np.ndarray:
    """(F, H, W) grey frames t-F+1..t → one (H, F·W + (F-1)·gap) image with white gaps."""
    frames = np.asarray(frames, np.uint8)
    spacer = np.full((frames.shape[1], gap), 255, np.uint8)
    parts = []
    for i, frame in enumerate(frames):
        parts.extend([spacer, frame] if i else [frame])
    return np.concatenate(parts, axis=1)


def _saliency_rgb(saliency: np.ndarray) -> np.ndarray:
    """Saliency (84, 84, C) → an RGB heat image: |s| summed over frames, white → red."""
    magnitude = np.abs(np.asarray(saliency, np.float32)).sum(axis=-1)
    top = float(np.percentile(magnitude, 99.5)) or float(magnitude.max()) or 1.0
    v = np.clip(magnitude / top, 0, 1)
    rgb = np.stack([255 - 40 * v, 255 * (1 - v), 255 * (1 - v)], axis=-1)
    return rgb.astype(np.uint8)


def network_rows(model) -> list:
    """One row per top-level layer: name, type, output shape, parameters, and for a conv layer its
    filters, kernel and stride and its theoretical receptive field."""
    convs = set(analysis.conv_layers(model))
    rows = []
    for layer in model.layers:
        try:
            shape = tuple(layer.output.shape[1:])
        except (AttributeError, ValueError):
            shape = ()
        row = {"name": layer.name, "kind": type(layer).__name__, "shape": " × ".join(str(d) for d in shape),
               "params": int(layer.count_params()) if layer.built else 0, "rf": ""}
        if layer.name in convs:
            size, stride = (_pair(v) for v in analysis.receptive_field(model, layer.name))
            config = layer.get_config()
            filters = f"{config['filters']} filters" if config.get("filters") else "depthwise"
            row["detail"] = f"{filters} {config['kernel_size'][0]}×{config['kernel_size'][1]} stride {config['strides'][0]}"
            row["rf"] = f"{size[0]}×{size[1]} px, stride {stride[0]}"
        rows.append(row)
    return rows


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


def _report_context(data: NvisData, action_names: list, words: dict, game_index=None) -> dict:
    """The part of the template context that any model's report shares: cards, receptive
    fields, saliency, the layer table and the images."""
    import plotly.graph_objects as go

    view, states = data.view, data.states
    images = ImageStore()
    states_rgb = {}

    def state_image(index):
        if index not in states_rgb:
            states_rgb[index] = images.add(view.rgb(states[index]))
        return states_rgb[index]

    history = int(states.shape[-1])
    layers = []
    for layer in data.layers:
        cards = data.cards[layer]
        guided_rgb = view.gradient_rgb(np.stack([c.gradient for c in cards]))
        silent = set(data.silent.get(layer, []))
        card_rows = []
        for card, rgb in zip(cards, guided_rgb):
            strip = view.strip(card.gradient)
            card_rows.append({
                "layer": layer, "filter": card.filter, "state": card.state_index,
                "step": int(card.state_index),
                "game": None if game_index is None else int(game_index[card.state_index]),
                "y": card.position[0], "x": card.position[1], "value": card.value,
                "input": state_image(card.state_index), "guided": images.add(rgb),
                "strip": None if strip is None else images.add(strip),
                "box": list(card.box), "scale": float(np.max(np.abs(card.gradient))),
                "silent": card.filter in silent,
                "blank": blank_note(_blank_frames(states[card.state_index]), history) if view.frame_stack else "",
            })
        field_ = data.fields[layer]
        layers.append({"name": layer, "cards": card_rows, "field": field_,
                       "erf_figure": _erf_figure(go, layer, field_), "count": len(card_rows),
                       "channels": data.channels.get(layer, len(card_rows)),
                       "silent": list(data.silent.get(layer, []))})

    erf_chart = _erf_chart(go, data)
    saliency_rows = []
    for item in data.saliency:
        i = item["index"]
        saliency_rows.append({
            "index": i, "labels": item["labels"], "action": action_names[item["action"]]
            if item["action"] < len(action_names) else str(item["action"]),
            "max_q": item["max_q"], "gap": item["gap"], "input": state_image(i),
            "gradient": images.add(_saliency_rgb(item["gradient"])),
            "perturbation": images.add(_saliency_rgb(item["perturbation"])),
            "q_figure": _q_figure(go, item["q"], action_names, item["action"], axis=words["axis"],
                                  hover=words["hover"]),
        })
    return {
        "history": history,  # frames (or channels) per state: the strip's and the text's t-(history-1)..t
        "history_words": _number_word(history), "early_words": _number_word(history - 1),
        "view": {"frame_stack": view.frame_stack, "channels": view.channels, "height": view.height,
                 "width": view.width, "size": [view.width, view.height], "labels": view.labels,
                 "scaled": view.scaled, "low": view.low, "high": view.high, "dtype": str(states.dtype)},
        "words": words,
        "noun": "state" if view.frame_stack else "image",  # what the page calls one of the states
        # what the image figures' hover text says (_zoom.js.j2 knows "state", "gradient" and "saliency"
        # as frame stacks and Q; anything else shows the pixel's coordinates)
        "hover": {"state": "state", "gradient": "gradient", "saliency": "saliency"} if view.frame_stack and words is Q_WORDS
        else {"state": "state" if view.frame_stack else "image", "gradient": "gradient" if view.frame_stack else "image-gradient",
              "saliency": "score-saliency"},
        "captions": {"state": "input state t-2/t-1/t", "saliency": "input (t-2/t-1/t)",
                     "strip": f"frames t-{history - 1} to t"} if view.frame_stack
        else {"state": "input image", "saliency": "input", "strip": "channels R, G, B"},
        "perturbation": perturbation_settings(view.height, view.width),
        "network": network_rows(data.model),
        "layers": layers,
        "erf_chart": erf_chart,
        "saliency": saliency_rows,
        "images_json": script_json(images.uris),
    }


def build_context(data: NvisData, options: dict | None = None) -> dict:
    """The template context of ``nvis.html.j2`` for the games a snapshot played (:func:`gather`)."""
    snapshot, record = data.snapshot, data.record
    meta = snapshot.meta
    context = _report_context(data, snapshot.action_names, Q_WORDS, game_index=record.game_index)
    start = starting_point(snapshot)
    for row in context["network"]:
        row["moved"] = start.movement.get(row["name"])

    score = meta.get("test_score")
    return {
        **context,
        "source": "snapshot",
        "seen": "played",
        "title": f"nvis · {snapshot.name}",
        "snapshot": snapshot.name,
        "meta": meta,
        "game": meta.get("game", "?"),
        "epoch": meta.get("epoch", "?"),
        "total_steps": meta.get("total_steps"),  # with the random phase and any refill
        "train_steps": meta.get("train_steps_done"),
        "backend": meta.get("backend"),
        "test_score": score,
        "interrupted": meta.get("interrupted"),  # stopped inside the epoch: {"phase", "steps_done"}
        "start": {"seed": start.seed, "backend": start.backend, "reason": start.reason,
                  "measured": bool(start.movement), "source": start.source},
        "play": {"states": int(len(record.states)), "games": len(record.scores),
                 "scores": [float(s) for s in record.scores], **(options or {})},
    }


def model_context(data: NvisData, action_names: list | None = None, title: str | None = None, filters: str = "") -> dict:
    """The template context of ``nvis.html.j2`` for any model and the states given from Python
    (:func:`nvis_report`): no game, epoch or training facts, which only a snapshot has."""
    import keras

    from dqnviz.analysis._model import softmax_output

    model = data.model
    names_given = action_names is not None
    if action_names is None:
        action_names = [f"output {i}" for i in range(data.scores.shape[1])]
    context = _report_context(data, action_names, SCORE_WORDS)
    for row in context["network"]:
        row["moved"] = None
    shape = " × ".join(str(d) for d in data.states.shape[1:])
    return {
        **context,
        "source": "python",
        "seen": "given",
        "title": title or f"nvis · {model.name}",
        "heading": title or model.name,
        "snapshot": None,
        "model_name": model.name,
        "input": f"{shape} {data.states.dtype}",
        "outputs": {"count": int(data.scores.shape[1]), "softmax": softmax_output(model) is not None,
                    "named": action_names[:8], "more": max(len(action_names) - 8, 0), "given": names_given},
        "backend": keras.config.backend(),
        "start": {"measured": False},
        "play": {"states": int(len(data.states)), "filters": filters},
    }


def nvis_report(model, states, path, layers=None, filters=None, action_names=None, title=None, *,
                frame_stack=None, progress=False):
    """Write the ``dqnviz nvis`` report for any Keras image model and states you give.

    The self-contained, interactive HTML page shows per conv layer a card per filter (the state
    where its strongest unit fires most, the unit's receptive field and its guided-backprop
    image), effective versus theoretical receptive fields, and gradient and perturbation
    saliency of the top output for three telling states (highest and lowest top score, biggest
    margin) next to the outputs as bars. The outputs are read as scores: Q-values for a DQN, the
    logits before the softmax for a classifier ending in one (as :func:`dqnviz.saliency` explains
    them). A model that takes images of any size (``keras.Input((None, None, 3))``) is analysed
    as a copy built at the states' size (:func:`at_states_size`). Perturbation saliency's patch
    grows with images larger than 84 px (:func:`perturbation_settings`). Example::

        record = dqnviz.play_games(model, dqnviz.env_for_snapshot(meta), max_steps=300)
        dqnviz.nvis_report(model, record.states, "my_agent.html", filters="top8")

    Args:
        model: a built Keras 3 image model with 2-D convolutions and one ``(N, outputs)`` output
            (for a model with several, such as a policy and a value head, pass
            ``keras.Model(model.input, the_output)``).
        states: ``(N, H, W, C)`` array as the model takes it, uint8 or float. How it is drawn:
            C ≥ 4 is a stack of frames, oldest first, its last three shown as red, green, blue
            (t-2, t-1, t); C = 3 an RGB image, or such a stack when consecutive states share
            frames (as those from :func:`dqnviz.play_games`) or ``frame_stack=True``; C = 1 a
            grey image; C = 2 is refused. Values all within 0..1 are drawn × 255, within 0..255
            as they are, any others stretched from their minimum to their maximum.
        path: the HTML file to write (atomically: a file is there whole or not at all).
        layers: conv layer names (a list or ``"conv1,conv3"``); None: all, as
            :func:`dqnviz.analysis.conv_layers` lists them.
        filters: per layer, what ``dqnviz nvis --filters`` takes: N (the first N), ``"all"``,
            ``"topN"`` (the N that fire most on these states) or indices (``"0,5,17"`` or a list);
            None: the first 8 (all of a layer with fewer, as ``--filters``'s default 8 does, also
            where no layer has 8). A choice whose card images may pass 50 MB warns in one line
            (MobileNetV2's 1,280-filter ``Conv_1`` at 96 px, ``"all"``: 81 MB, minutes); past
            400 MB it is refused.
        action_names: one name per output (default ``"output 0"``, ``"output 1"``, ...).
        title: the page's title and heading (default: the model's name).
        frame_stack: whether 3-channel states are stacks of frames (None: guessed, as above).
        progress: show progress bars on stderr.

    Returns:
        The ``pathlib.Path`` written.

    Raises:
        UserError: (one line, before any work, and no file is written) a model without conv
            layers or with another output than ``(N, outputs)`` (several outputs are named, with
            the line that keeps one), states that do not fit it or have 2 channels, a model of any
            image size that cannot be rebuilt at theirs, an unknown layer, a bad ``filters`` or
            one that makes too large a page, names that do not match the outputs, a path that
            cannot be written.
    """
    from pathlib import Path

    from dqnviz.analysis._model import as_batch, graph_runner, predict
    from dqnviz.snapshot import check_writable

    names = parse_layers(_as_text(layers, "layers"), model, name="layers")  # an image model with conv layers
    batch, _ = as_batch(model, states)
    view = state_view(batch, frame_stack)
    check_outputs(model)
    model = at_states_size(model, batch.shape[1:])
    count = int(model.outputs[0].shape[-1])
    if action_names is not None:
        try:
            given = None if isinstance(action_names, str) else [str(name) for name in action_names]
        except TypeError:
            given = None
        if given is None or len(given) != count:
            raise UserError(f"action_names must be a list naming each of the model's {count} outputs, got {action_names!r}")
        action_names = given
    channels = _layer_channels(model, names)
    text = _as_text(filters, "filters") if filters is not None else ("8" if max(channels.values()) >= 8 else "all")
    chosen = parse_filters(text, channels, name="filters")
    check_page_size(chosen, channels, batch.shape[1:], text)
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name such as {path / (model.name + '.html')}")
    check_writable(path)

    # The scores the saliency explains: a softmax classifier's logits, not its probabilities.
    scores = predict(graph_runner(model, logits=True), batch.astype(np.float32))
    data = analyse(model, batch, scores, names, chosen, view, progress=progress, labels=SCORE_PICKS)
    return write_report(path, model_context(data, action_names, title=title, filters=describe_filters(text)))


PAGE_WARN_MB, PAGE_LIMIT_MB = 50, 400  # estimated images of the filter cards: warn, refuse


def card_megabytes(count: int, shape) -> float:
    """Upper bound of the page's images for ``count`` filter cards of states ``shape`` (H, W, C):
    per card the guided-backprop RGB image and, for C > 1, its strip of C grey images, as base64
    PNG of incompressible pixels. A trained network's gradients compress several times better."""
    height, width, channels = (int(d) for d in shape)
    return count * height * width * (3 + (channels if channels > 1 else 0)) * 4 / 3 / 1e6


def check_page_size(chosen: dict, channels: dict, shape, text: str) -> None:
    """Warn (one line) about a page of more than ``PAGE_WARN_MB`` of card images; refuse one of more
    than ``PAGE_LIMIT_MB``, which a browser cannot open (``filters="all"`` on a large network).

    Raises:
        UserError: the estimate is over ``PAGE_LIMIT_MB``.
    """
    import warnings

    counts = {layer: choice.count if isinstance(choice, StrongestFilters) else len(choice)
              for layer, choice in chosen.items()}
    cards = sum(counts.values())
    size = card_megabytes(cards, shape)
    if size <= PAGE_WARN_MB:
        return
    largest = max(counts, key=counts.get)
    where = (f"{len(counts)} layers, up to {counts[largest]:,} in {largest}" if len(counts) > 1
             else f"{largest}: {counts[largest]:,}")
    fewer = ("'top16' (each layer's 16 strongest) or fewer layers" if counts[largest] > 16
             else "fewer layers (layers=[...])")
    if size > PAGE_LIMIT_MB:
        raise UserError(f"filters={text!r} would draw {cards:,} filter cards ({where}), a page of up to "
                        f"{size:,.0f} MB that no browser opens well; give {fewer}")
    warnings.warn(f"filters={text!r} draws {cards:,} filter cards ({where}): a page of up to {size:,.0f} MB "
                  f"that takes minutes to compute and to open; for less, give {fewer}", UserWarning, stacklevel=3)


def check_outputs(model) -> None:
    """The page reads one ``(N, outputs)`` output as scores.

    Raises:
        UserError: several outputs (naming each, with the line that keeps one), or one of
            another rank.
    """
    outputs = model.outputs
    if len(outputs) == 1 and len(outputs[0].shape) == 2 and outputs[0].shape[-1] is not None:
        return
    if len(outputs) == 1:
        raise UserError(f"nvis_report reads the model's output as one score per output unit, (N, outputs); "
                        f"{model.name!r} outputs {tuple(outputs[0].shape)}")
    named = ", ".join(f"{i}: {o._keras_history[0].name} {tuple(o.shape)}" for i, o in enumerate(outputs))
    raise UserError(f"nvis_report reads one (N, outputs) output as scores; {model.name!r} has {len(outputs)} "
                    f"({named}): pass keras.Model(model.input, model.outputs[0]) or another of them")


def at_states_size(model, shape):
    """``model`` itself when its conv layers' outputs have a fixed height and width; else a copy
    built for states of ``shape`` (H, W, C), with the same layer names and weights.

    A fully convolutional model (``keras.Input((None, None, 3))``, or a ``keras.applications``
    backbone built without ``input_shape``) has no fixed positions for the analyses to index:
    they run on a copy sized to the states, nested models included.

    Raises:
        UserError: the model cannot be rebuilt (a layer without ``get_config``, a subclassed model).
    """
    import keras

    from dqnviz.analysis._model import layer_output, resolve_layer

    def unsized(name):
        return None in tuple(layer_output(model, resolve_layer(model, name)).shape[1:3])

    if not any(unsized(name) for name in analysis.conv_layers(model)):
        return model

    def clone(layer):
        return layer if isinstance(layer, keras.Model) else layer.__class__.from_config(layer.get_config())

    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.Model):  # sized to what it is given in the outer graph
            layer = sized(layer, tuple(args[0].shape[1:]))
        return layer(*args, **kwargs)

    def sized(inner, size):
        tensor = inner.inputs[0]
        inputs = keras.Input(size, dtype=tensor.dtype, name=tensor._keras_history[0].name)
        if isinstance(inner, keras.Sequential):  # rebuilt as a functional graph: Sequential takes no call_function
            x = inputs
            for layer in inner.layers:
                x = call(clone(layer), x)
            return keras.Model(inputs, x, name=inner.name)
        return keras.models.clone_model(inner, input_tensors=inputs, clone_function=clone, call_function=call)

    size = tuple(int(d) for d in shape)
    try:
        copy = sized(model, size)
        copy.set_weights([variable.value for variable in model.weights])
    except Exception as error:  # noqa: BLE001 - any failure to rebuild says the same to the user
        reason = " ".join(str(error).split())[:200]
        raise UserError(f"model {model.name!r} takes images of any size and could not be rebuilt at the states' "
                        f"size {size} ({type(error).__name__}: {reason}); build it with keras.Input({size})") from None
    return copy


def _layer_channels(model, names) -> dict:
    from dqnviz.analysis._model import num_channels, resolve_layer

    return {name: num_channels(model, resolve_layer(model, name)) for name in names}


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


def _layout(**extra):
    base = dict(margin=dict(l=40, r=10, t=30, b=35), paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="white",
                font=dict(size=11))
    base.update(extra)
    return base


def _erf_figure(go, layer, field_) -> str:
    grid = np.asarray(field_["map"], np.float32)
    if grid.ndim == 3:
        grid = grid.sum(axis=-1)
    grid = grid / (float(np.abs(grid).max()) or 1.0)
    h, w = grid.shape
    fig = go.Figure(go.Heatmap(z=np.round(grid, 3), colorscale="Viridis", showscale=True, zmin=0, zmax=1,
                               hovertemplate="x %{x}<br>y %{y}<br>gradient mass %{z:.3f}<extra></extra>"))
    theoretical = field_["theoretical"]
    shapes = []
    centre = field_.get("centre")
    cy, cx = (float(centre[0]), float(centre[1])) if centre is not None else _mass_center(grid)
    for size, colour, dash in ((theoretical, "white", "dash"), (field_["size"], "orange", "solid")):
        if size and math.isfinite(size):
            shapes.append(dict(type="rect", x0=cx - size / 2, x1=cx + size / 2, y0=cy - size / 2, y1=cy + size / 2,
                               line=dict(color=colour, dash=dash, width=2)))
    fig.update_layout(**_layout(title=dict(text=f"{layer}: input gradient of one central unit", x=0.02, font=dict(size=12)),
                                height=300 + MODEBAR_ROOM, shapes=shapes))
    fig.update_xaxes(range=[-0.5, w - 0.5], constrain="domain", showgrid=False)
    fig.update_yaxes(range=[h - 0.5, -0.5], scaleanchor="x", showgrid=False)
    return script_json(fig)


def _mass_center(grid):
    g = np.abs(grid)
    total = g.sum()
    if total <= 0:
        return (grid.shape[0] - 1) / 2, (grid.shape[1] - 1) / 2
    ys, xs = np.indices(g.shape)
    return float((ys * g).sum() / total), float((xs * g).sum() / total)


def _erf_chart(go, data: NvisData) -> str:
    names = list(data.layers)
    fig = go.Figure([
        go.Bar(name="theoretical", x=names, y=[data.fields[n]["theoretical"] for n in names], marker_color="#9aa5b1",
               hovertemplate="%{x}: theoretical %{y} px<extra></extra>"),
        go.Bar(name="effective (90% of gradient mass)", x=names, y=[round(data.fields[n]["size"], 1) for n in names],
               marker_color="#f28e2b", hovertemplate="%{x}: effective %{y} px<extra></extra>"),
    ])
    # Many layers' names stand upright under the bars: the axis makes room for them whole.
    fig.update_layout(**_layout(barmode="group", height=300 if len(names) <= 8 else 400,
                                yaxis_title="side of the square (input pixels)", xaxis=dict(automargin=True),
                                legend=dict(orientation="h", y=1.12)))
    return script_json(fig)


def q_axis_range(q) -> list:
    """The Q axis of the bar chart: the values' span with padding, not from 0, so that a gap of
    0.01 between actions near Q = 1.7 is visible; room on the right for the value labels."""
    low, high = float(np.min(q)), float(np.max(q))
    span = high - low or max(abs(high), 1.0) * 0.01  # all actions equal: still a readable axis
    return [low - 0.25 * span, high + 0.45 * span]


def value_format(values) -> str:
    """How the bars write the outputs: 4 decimals (``"1.6744"``), or 4 significant digits
    (``"5.186e-12"``) for values too small or too large for that."""
    largest = float(np.abs(np.asarray(values, np.float64)).max(initial=0.0))
    return ".4f" if 0.01 <= largest < 1e4 else ".4g"


def _q_figure(go, q, action_names, action, axis="Q(s, a)", hover="Q(s, %{y})") -> str:
    """Horizontal bars of the outputs ``q``, the chosen ``action`` red; ``axis`` titles the value
    axis and ``hover`` names a bar's value (``%{y}``: its name)."""
    q = np.asarray(q, np.float64)
    names = [action_names[i] if i < len(action_names) else str(i) for i in range(len(q))]
    colours = ["#e15759" if i == action else "#4e79a7" for i in range(len(q))]
    span = q_axis_range(q)
    fmt = value_format(q)
    # Rounded for a compact page, but to 6 decimals below the values' magnitude: scores of 1e-12
    # (an untrained classifier's) would otherwise all be 0, as would their bars.
    magnitude = max(float(np.abs(q).max()), span[1] - span[0])
    decimals = 6 - min(0, math.floor(math.log10(magnitude))) if magnitude > 0 else 6
    # Each bar grows from the axis's left end, so that a longer bar is a larger Q also when all
    # are negative (a bar from 0 would grow leftwards from outside the axis).
    fig = go.Figure(go.Bar(x=(q - span[0]).round(decimals).tolist(), base=span[0], y=names, orientation="h",
                           marker_color=colours, text=[format(v, fmt) for v in q], textposition="outside",
                           cliponaxis=False, customdata=q.round(decimals).tolist(),
                           hovertemplate=hover + " = %{customdata:" + fmt + "}<extra></extra>"))
    fig.update_layout(**_layout(height=max(160, 26 * len(q) + 60) + MODEBAR_ROOM, xaxis_title=axis,
                                xaxis=dict(range=span),
                                yaxis=dict(autorange="reversed", automargin=True)))  # whole action names
    return script_json(fig)


def write_report(path, context: dict):
    from dqnviz.report.render import render, write_html

    return write_html(path, render("nvis.html.j2", **context))
