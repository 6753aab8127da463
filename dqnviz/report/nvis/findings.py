"""What each filter responds to: :func:`analyse` finds every selected filter's strongest unit and
computes its guided-backprop image, the layers' effective receptive fields and the saliency of a
few telling states (:func:`pick_saliency_states`), as :class:`NvisData`."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from dqnviz import analysis
from dqnviz.report.nvis.options import StrongestFilters
from dqnviz.report.nvis.states import StateView

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


def _pair(value) -> tuple:
    """``receptive_field`` gives an int, or a (y, x) tuple when the axes differ."""
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value), int(value))


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
    from dqnviz.analysis.probes import silent_filters
    from dqnviz.progress import Progress, plural

    timings = {}
    cards, fields, silent, channels = {}, {}, {}, {}
    # A game's first states stack blank frames from before its start, which read as sudden motion:
    # a filter's strongest unit is sought in them only if it fires on no other state.
    in_play = analysis.full_history(states) if view.frame_stack else None
    erf_states = states[np.unique(np.linspace(0, len(states) - 1, min(len(states), ERF_STATES)).astype(int))]
    with Progress(f"analyse {len(layers)} {plural('layer', len(layers))}, then saliency", total=len(layers) + 1,
                  unit="parts", enabled=progress) as bar:
        # Every filter costs the same forward passes as a few, and every layer is read from the same
        # passes: it also tells which filters never fire (ReLU output 0 everywhere: "dead" units).
        t0 = time.perf_counter()
        strongest = analysis.top_activations_by_layer(model, states, layers, prefer=in_play)
        timings["top"] = time.perf_counter() - t0
        for i, (layer, every_unit) in enumerate(zip(layers, strongest)):
            choice = filters[layer]
            chosen = np.asarray(choice.choose(every_unit, in_play) if isinstance(choice, StrongestFilters) else choice,
                                np.int64)
            silent[layer] = silent_filters(model, layer, every_unit)
            channels[layer] = len(every_unit)
            units = [every_unit[f] for f in chosen]
            t0 = time.perf_counter()
            size, stride = (_pair(v) for v in analysis.receptive_field(model, layer))
            erf = analysis.effective_receptive_field(model, erf_states, layer)
            erf_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            best_states = states[[s for s, _, _ in units]]
            # One batched call for the whole layer: each filter's best state with its own filter.
            with warnings.catch_warnings():  # a filter that never fires is flagged on its card instead
                warnings.simplefilter("ignore", analysis.ZeroGradientWarning)
                gradients = np.asarray(analysis.guided_backprop(model, best_states, layer, chosen,
                                                                position=[(y, x) for _, (y, x), _ in units]))
            cards[layer] = [
                Card(layer, int(f), int(s), (int(y), int(x)), float(value),
                     field_box(erf, size, stride, (y, x), (view.height, view.width)), gradient)
                for f, (s, (y, x), value), gradient in zip(chosen, units, gradients)
            ]
            timings[f"{layer} guided"] = time.perf_counter() - t0
            fields[layer] = {"size": float(erf["size"]), "core": int(erf["core"]), "theoretical": size[0], "stride": stride[0],
                             "map": np.asarray(erf["map"], np.float32), "centre": erf.get("centre")}
            timings[f"{layer} erf"] = erf_seconds
            bar.update(i + 1)
        t0 = time.perf_counter()
        salient = []
        picks = pick_saliency_states(scores, *([labels] if labels else []), prefer=in_play)[:saliency_states]
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
                         labels=("highest max Q", "lowest max Q", "biggest action gap"), prefer=None) -> list:
    """Highest max Q, lowest max Q, biggest action gap (named by ``labels``); a state picked twice
    is shown once. With ``prefer`` (a boolean mask, as :func:`~dqnviz.analysis.full_history`
    gives) the picks come from the preferred states where there are any: a game's first stacks,
    half blank, are extremes of the network's output for no reason a player would care about."""
    q = np.asarray(q_values, np.float64)
    if len(q) == 0:
        return []
    best = q.max(axis=1)
    ordered = np.sort(q, axis=1)
    gap = ordered[:, -1] - ordered[:, -2] if q.shape[1] > 1 else np.zeros(len(q))
    allowed = np.asarray(prefer, bool) if prefer is not None and np.any(prefer) else np.ones(len(q), bool)

    def first(values, pick):  # the first index of the allowed states' max (or min)
        return int(np.flatnonzero(allowed)[pick(values[allowed])])

    picks = [(labels[0], first(best, np.argmax)), (labels[1], first(best, np.argmin)), (labels[2], first(gap, np.argmax))]
    merged = {}
    for label, index in picks:
        merged.setdefault(index, []).append(label)
    return [{"index": i, "labels": labels, "max_q": float(best[i]), "gap": float(gap[i])}
            for i, labels in merged.items()]
