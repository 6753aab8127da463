"""Data and figures for ``dqnviz nvis``: what each conv filter of a DQN responds to.

:func:`gather` plays games with a snapshot, finds for every selected filter the state and position
of its largest activation, and computes (batched: one call per layer) the guided-backprop image of
that unit, the layers' effective receptive fields and saliency maps of a few telling states.
:func:`build_context` turns that into the template context of ``templates/nvis.html.j2``
(deduplicated PNG data URIs and plotly figure JSON), and :func:`write_report` renders it.

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
from dqnviz.report.render import script_json
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
    snapshot: object
    record: object  # agent.GameRecord
    layers: list
    cards: dict  # layer -> [Card]
    fields: dict  # layer -> {"size", "theoretical", "stride", "map", "centre"}
    saliency: list  # [{"index", "labels", "max_q", "gap", "q", "action", "gradient", "perturbation"}]
    timings: dict
    silent: dict = field(default_factory=dict)  # layer -> filters whose activation is ≤ 0 on every state
    channels: dict = field(default_factory=dict)  # layer -> number of filters in the layer (shown or not)


def _pair(value) -> tuple:
    """``receptive_field`` gives an int, or a (y, x) tuple when the axes differ."""
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value), int(value))


def parse_layers(text, model) -> list:
    """``"conv1,conv3"`` (or None: all) → conv layer names; UserError for unknown names."""
    convs = list(analysis.conv_layers(model))
    if text is None or str(text).strip() == "":
        return convs
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if not names:
        raise UserError(f"--layers names no layer; the conv layers of this network are: {', '.join(convs)}")
    for name in names:
        if name not in convs:
            raise UserError(f"unknown layer {name!r}; the conv layers of this network are: {', '.join(convs)}")
    if len(set(names)) != len(names):
        raise UserError(f"--layers names a layer twice: {text}")
    return names


@dataclass(frozen=True)
class StrongestFilters:
    """``--filters top N``: each layer's N filters whose strongest unit fires most, strongest first
    (chosen in :func:`gather`, once every filter's strongest unit is known)."""

    count: int

    def choose(self, units: list) -> list:
        """The filters of ``units`` (filter → (state, position, value)) with the N largest values;
        ties go to the lower filter index."""
        order = sorted(range(len(units)), key=lambda f: (-units[f][2], f))
        return order[: self.count]


def parse_filters(text, layer_channels: dict) -> dict:
    """``--filters`` → {layer: filter indices, or :class:`StrongestFilters`}; UserError for bad values.

    ``N``: each layer's first N filters (all of a layer that has fewer, within the largest layer's
    count); ``all``; ``top N``: the N that fire most strongly; ``3,17,40``: those filters of each
    layer (an index must exist in every layer shown; ``17,`` is filter 17 alone).
    """
    text = str(text).strip().lower()
    largest = max(layer_channels.values())
    if text == "all":
        return {layer: list(range(n)) for layer, n in layer_channels.items()}
    words = "a number of filters (1..{0}), 'all', 'top N' or filter indices such as 0,5,17".format(largest)
    if text.startswith("top"):
        count = _filter_number(text[3:], words, text)
        check_filter_range(count, layer_channels, also="'all'")
        return {layer: StrongestFilters(min(count, n)) for layer, n in layer_channels.items()}
    if "," in text:
        parts = [part for part in text.split(",") if part.strip()] or [""]  # "17," is filter 17 alone
        indices = [_filter_number(part, words, text, index=True) for part in parts]
        if len(set(indices)) != len(indices):
            raise UserError(f"--filters {text}: a filter is named twice")
        smallest = min(layer_channels.values())
        if max(indices) >= smallest:
            layer = min(layer_channels, key=layer_channels.get)
            raise UserError(f"--filters {text}: filter {max(indices)} does not exist in {layer}, which has "
                            f"{smallest} filters (0..{smallest - 1}); choose layers with --layers")
        return {layer: list(indices) for layer in layer_channels}
    count = _filter_number(text, words, text)
    check_filter_range(count, layer_channels, also="'all'")
    return {layer: list(range(min(count, n))) for layer, n in layer_channels.items()}


def _filter_number(part: str, words: str, text: str, index: bool = False) -> int:
    try:
        value = int(part.strip())
    except ValueError:
        raise UserError(f"--filters must be {words}, not {text!r}") from None
    if index and value < 0:
        raise UserError(f"--filters {text}: filter indices start at 0")
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


def check_filter_range(count: int, layer_channels: dict, also: str = "") -> None:
    """``--filters N`` must lie in 1..(the largest layer's filters); ``also`` names another accepted value.

    Raises:
        UserError: the count is out of range.
    """
    largest = max(layer_channels.values())
    if not 1 <= count <= largest:
        sizes = ", ".join(f"{layer} {n}" for layer, n in layer_channels.items())
        raise UserError(f"--filters {count} is out of range: the layers have {sizes} filters "
                        f"(give 1..{largest}{' or ' + also if also else ''})")


def gather(snapshot, layers, filters: dict, games=1, epsilon=0.05, seed=0, max_steps=None,
           progress=True, saliency_states=3) -> NvisData:
    """Play, find the top unit of every selected filter, and compute all images of the report."""
    from dqnviz.agent import checked_env_for_snapshot, play_games
    from dqnviz.progress import Progress, plural

    model = snapshot.model
    timings = {}
    t0 = time.perf_counter()
    env = checked_env_for_snapshot(snapshot, seed=seed)
    frame_skip = max(int(snapshot.meta.get("preprocessing", {}).get("frame_skip", 4)), 1)
    total = max_steps or games * (18_000 // frame_skip)
    with Progress(f"play {games} {plural('game', games)}", total=total, enabled=progress) as bar:
        record = play_games(model, env, games=games, epsilon=epsilon, seed=seed, max_steps=max_steps,
                            on_step=lambda step, score: bar.update(step, score=float(score)))
    timings["play"] = time.perf_counter() - t0
    states = record.states
    if len(states) < 1:
        raise UserError(f"collected {len(states)} game states: nothing to analyse "
                        "(play more games or raise --max-steps)")

    cards, fields, silent, channels = {}, {}, {}, {}
    # A game's first states stack blank frames from before its start, which read as sudden motion:
    # a filter's strongest unit is sought in them only if it fires on no other state.
    in_play = analysis.full_history(states)
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
            silent[layer] = [f for f, (_, _, value) in enumerate(every_unit) if value <= 0]
            channels[layer] = len(every_unit)
            units = [every_unit[f] for f in chosen]
            timings[f"{layer} top"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            size, stride = (_pair(v) for v in analysis.receptive_field(model, layer))
            best_states = states[[s for s, _, _ in units]]
            # One batched call for the whole layer: each filter's best state with its own filter.
            gradients = np.asarray(analysis.guided_backprop(model, best_states, layer, chosen,
                                                            position=[(y, x) for _, (y, x), _ in units]))
            cards[layer] = [
                Card(layer, int(f), int(s), (int(y), int(x)), float(value),
                     (int(x) * stride[1], int(y) * stride[0], size[1], size[0]), gradient)
                for f, (s, (y, x), value), gradient in zip(chosen, units, gradients)
            ]
            timings[f"{layer} guided"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            erf = analysis.effective_receptive_field(model, erf_states, layer)
            fields[layer] = {"size": float(erf["size"]), "theoretical": size[0], "stride": stride[0],
                             "map": np.asarray(erf["map"], np.float32), "centre": erf.get("centre")}
            timings[f"{layer} erf"] = time.perf_counter() - t0
            bar.update(i + 1)
        t0 = time.perf_counter()
        salient = []
        picks = pick_saliency_states(record.q_values)[:saliency_states]
        if picks:
            index = [p["index"] for p in picks]
            actions = np.argmax(record.q_values[index], axis=-1)
            grad = np.asarray(analysis.saliency(model, states[index], action=actions, method="gradient"))
            pert = np.asarray(analysis.saliency(model, states[index], action=actions, method="perturbation"))
            for pick, a, g, p in zip(picks, actions, grad, pert):
                salient.append({**pick, "action": int(a), "q": record.q_values[pick["index"]].astype(float),
                                "gradient": g, "perturbation": p})
        timings["saliency"] = time.perf_counter() - t0
        bar.update(len(layers) + 1)
    return NvisData(snapshot, record, layers, cards, fields, salient, timings, silent, channels)


def pick_saliency_states(q_values: np.ndarray) -> list:
    """Highest max Q, lowest max Q, biggest action gap; a state picked twice is shown once."""
    q = np.asarray(q_values, np.float64)
    if len(q) == 0:
        return []
    best = q.max(axis=1)
    ordered = np.sort(q, axis=1)
    gap = ordered[:, -1] - ordered[:, -2] if q.shape[1] > 1 else np.zeros(len(q))
    picks = [("highest max Q", int(best.argmax())), ("lowest max Q", int(best.argmin())),
             ("biggest action gap", int(gap.argmax()))]
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
            row["detail"] = f"{config['filters']} filters {config['kernel_size'][0]}×{config['kernel_size'][1]} stride {config['strides'][0]}"
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


def build_context(data: NvisData, options: dict | None = None) -> dict:
    """The template context for ``nvis.html.j2``."""
    import plotly.graph_objects as go

    snapshot, record = data.snapshot, data.record
    meta = snapshot.meta
    images = ImageStore()
    states_rgb = {}

    def state_image(index):
        if index not in states_rgb:
            states_rgb[index] = images.add(analysis.encode_rgb(record.states[index]))
        return states_rgb[index]

    history = int(record.states.shape[-1])
    layers = []
    for layer in data.layers:
        cards = data.cards[layer]
        gradients = np.stack([c.gradient for c in cards])
        guided_rgb = np.asarray(analysis.encode_gradient_rgb(gradients))
        card_rows = []
        for card, rgb in zip(cards, guided_rgb):
            strip = _strip(analysis.frames_strip(card.gradient))
            card_rows.append({
                "layer": layer, "filter": card.filter, "state": card.state_index,
                "step": int(card.state_index), "game": int(record.game_index[card.state_index]),
                "y": card.position[0], "x": card.position[1], "value": card.value,
                "input": state_image(card.state_index), "guided": images.add(rgb), "strip": images.add(strip),
                "box": list(card.box), "scale": float(np.max(np.abs(card.gradient))),
                "silent": card.value <= 0,
                "blank": blank_note(_blank_frames(record.states[card.state_index]), history),
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
            "index": i, "labels": item["labels"], "action": snapshot.action_names[item["action"]]
            if item["action"] < len(snapshot.action_names) else str(item["action"]),
            "max_q": item["max_q"], "gap": item["gap"], "input": state_image(i),
            "gradient": images.add(_saliency_rgb(item["gradient"])),
            "perturbation": images.add(_saliency_rgb(item["perturbation"])),
            "q_figure": _q_figure(go, item["q"], snapshot.action_names, item["action"]),
        })

    start = starting_point(snapshot)
    network = network_rows(snapshot.model)
    for row in network:
        row["moved"] = start.movement.get(row["name"])

    score = meta.get("test_score")
    return {
        "title": f"nvis · {snapshot.name}",
        "history": history,  # frames per state: the strip's and the text's t-(history-1)..t
        "history_words": _number_word(history), "early_words": _number_word(history - 1),
        "snapshot": snapshot.name,
        "meta": meta,
        "game": meta.get("game", "?"),
        "epoch": meta.get("epoch", "?"),
        "total_steps": meta.get("total_steps"),  # with the random phase and any refill
        "train_steps": meta.get("train_steps_done"),
        "backend": meta.get("backend"),
        "test_score": score,
        "interrupted": meta.get("interrupted"),  # stopped inside the epoch: {"phase", "steps_done"}
        "network": network,
        "start": {"seed": start.seed, "backend": start.backend, "reason": start.reason,
                  "measured": bool(start.movement), "source": start.source},
        "layers": layers,
        "erf_chart": erf_chart,
        "saliency": saliency_rows,
        "images_json": script_json(images.uris),
        "play": {"states": int(len(record.states)), "games": len(record.scores),
                 "scores": [float(s) for s in record.scores], **(options or {})},
    }


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
                                height=300, shapes=shapes))
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
    fig.update_layout(**_layout(barmode="group", height=300, yaxis_title="side of the square (input pixels)",
                                legend=dict(orientation="h", y=1.12)))
    return script_json(fig)


def q_axis_range(q) -> list:
    """The Q axis of the bar chart: the values' span with padding, not from 0, so that a gap of
    0.01 between actions near Q = 1.7 is visible; room on the right for the value labels."""
    low, high = float(np.min(q)), float(np.max(q))
    span = high - low or max(abs(high), 1.0) * 0.01  # all actions equal: still a readable axis
    return [low - 0.25 * span, high + 0.45 * span]


def _q_figure(go, q, action_names, action) -> str:
    q = np.asarray(q, np.float64)
    names = [action_names[i] if i < len(action_names) else str(i) for i in range(len(q))]
    colours = ["#e15759" if i == action else "#4e79a7" for i in range(len(q))]
    axis = q_axis_range(q)
    # Each bar grows from the axis's left end, so that a longer bar is a larger Q also when all
    # are negative (a bar from 0 would grow leftwards from outside the axis).
    fig = go.Figure(go.Bar(x=(q - axis[0]).round(6).tolist(), base=axis[0], y=names, orientation="h", marker_color=colours,
                           text=[f"{v:.4f}" for v in q], textposition="outside", cliponaxis=False,
                           customdata=q.round(6).tolist(), hovertemplate="Q(s, %{y}) = %{customdata:.4f}<extra></extra>"))
    fig.update_layout(**_layout(height=max(160, 26 * len(q) + 60), xaxis_title="Q(s, a)",
                                xaxis=dict(range=axis),
                                yaxis=dict(autorange="reversed", automargin=True)))  # whole action names
    return script_json(fig)


def write_report(path, context: dict):
    from dqnviz.report.render import render, write_html

    return write_html(path, render("nvis.html.j2", **context))
