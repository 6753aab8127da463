"""The page: :func:`build_context` (a snapshot's games) and :func:`model_context` (any model and
the states given) turn :class:`NvisData` into the template context of ``templates/nvis.html.j2``,
and :func:`write_report` renders and writes it."""

from __future__ import annotations

import numpy as np

from dqnviz import analysis
from dqnviz.analysis._model import layer_output
from dqnviz.errors import UserError
from dqnviz.report.nvis.figures import ZOOM_LEAST, _erf_chart, _erf_figure, _q_figure, value_format, zoom_window
from dqnviz.report.nvis.findings import NvisData, _pair, perturbation_settings
from dqnviz.report.nvis.images import ImageStore, _saliency_rgb
from dqnviz.report.nvis.wording import Q_WORDS, SCORE_WORDS, _blank_frames, _number_word, blank_note
from dqnviz.report.render import gradient_shares, script_json
from dqnviz.snapshot import starting_point


def network_rows(model) -> list:
    """One row per top-level layer: name, type, output shape, parameters, for a conv layer its
    filters, kernel and stride, and for it and every image layer after it (:func:`analysis.image_layers`)
    its theoretical receptive field."""
    convs = set(analysis.conv_layers(model))
    spatial = set(analysis.image_layers(model))  # a receptive field for these too
    rows = []
    for layer in model.layers:
        try:  # its call in this model (a layer taken from another model has calls elsewhere too)
            shape = tuple(layer_output(model, layer).shape[1:])
        except (AttributeError, ValueError, UserError):
            shape = ()
        row = {"name": layer.name, "kind": type(layer).__name__, "shape": " × ".join(str(d) for d in shape),
               "params": int(layer.count_params()) if layer.built else 0, "rf": ""}
        if layer.name in convs:
            size, stride = (_pair(v) for v in analysis.receptive_field(model, layer.name))
            # the layer's attributes, not get_config(): under JAX that imports TensorFlow (4 s)
            filters = f"{layer.filters} filters" if getattr(layer, "filters", None) else "depthwise"
            kernel, strides = _pair(layer.kernel_size), _pair(layer.strides)
            row["detail"] = f"{filters} {kernel[0]}×{kernel[1]} stride {strides[0]}"
            row["rf"] = f"{size[0]}×{size[1]} px, stride {stride[0]}"
        elif layer.name in spatial:
            try:
                size, stride = (_pair(v) for v in analysis.receptive_field(model, layer.name))
                row["rf"] = f"{size[0]}×{size[1]} px, stride {stride[0]}"
            except UserError:  # past a layer the walk cannot go through (UpSampling2D, Reshape)
                pass
        rows.append(row)
    return rows


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
            # the strip shows the square the card opens on (the receptive field and its surroundings),
            # each frame's pixels as large as the strip's width allows; the whole image without a zoom
            zoom = zoom_window(card.box, (view.width, view.height))
            strip = view.strip(card.gradient if zoom is None else card.gradient[zoom[1]:zoom[3], zoom[0]:zoom[2]])
            card_rows.append({
                "layer": layer, "filter": card.filter, "state": card.state_index,
                "step": int(card.state_index),
                "game": None if game_index is None else int(game_index[card.state_index]),
                "y": card.position[0], "x": card.position[1], "value": card.value,
                "input": state_image(card.state_index), "guided": images.add(rgb),
                "strip": None if strip is None else images.add(strip),
                "box": list(card.box), "zoom": zoom,
                "scale": float(np.max(np.abs(card.gradient))),
                "shares": gradient_shares(card.gradient, view.labels),  # the image's colours, in words
                "silent": card.filter in silent,
                "blank": blank_note(_blank_frames(states[card.state_index]), history) if view.frame_stack else "",
            })
        field_ = data.fields[layer]
        layers.append({"name": layer, "cards": card_rows, "field": field_,
                       "rectified_by": analysis.rectified_by(data.model, layer),
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
            # the dot plot's values as a table: (output name, value, chosen)
            "q_rows": [(action_names[k] if k < len(action_names) else str(k), format(float(v), value_format(item["q"])),
                        k == item["action"]) for k, v in enumerate(np.asarray(item["q"], np.float64).ravel())],
            "gradient": images.add(_saliency_rgb(item["gradient"])),
            "perturbation": images.add(_saliency_rgb(item["perturbation"])),
            "q_figure": _q_figure(go, item["q"], action_names, item["action"], axis=words["axis"],
                                  hover=words["hover"], choice=words["choice"]),
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
        # "named": the input image in an image's name for a screen reader, "part": what a gradient divides over
        "captions": {"state": "input state t-2/t-1/t", "saliency": "input (t-2/t-1/t)",
                     "strip": f"frames t-{history - 1} to t", "part": "frame",
                     "named": "input, frames t-2, t-1 and t as red, green and blue"} if view.frame_stack
        else {"state": "input image", "saliency": "input", "strip": "channels R, G, B", "part": "channel",
              "named": "input image"},
        "perturbation": perturbation_settings(view.height, view.width),
        "zoom": {"least": ZOOM_LEAST},  # a card opens on its receptive field: figures.zoom_window
        "network": network_rows(data.model),
        "unguided": unguided_layers(data.model),
        "layers": layers,
        "erf_chart": erf_chart,
        "saliency": saliency_rows,
        "images_json": script_json(images.uris),
    }


def unguided_layers(model) -> list:
    """``"name (Class)"`` of each layer whose own code guided backprop's rule cannot reach (see
    :class:`~dqnviz.analysis.UnguidedCodeWarning`): a rectifier inside keeps its plain derivative."""
    from dqnviz.analysis._model import all_layers
    from dqnviz.analysis.relu import is_relu_output, runs_own_code

    return [f"{layer.name} ({type(layer).__name__})" for layer in all_layers(model)
            if runs_own_code(layer) and not is_relu_output(layer)]


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
        "action_note": ACTION_NOTES.get(meta.get("game")),
        "epoch": meta.get("epoch", "?"),
        "total_steps": meta.get("total_steps"),  # with the random phase and any refill
        "train_steps": meta.get("train_steps_done"),
        "backend": meta.get("backend"),
        "test_score": score,
        "interrupted": meta.get("interrupted"),  # stopped inside the epoch: {"phase", "steps_done"} (True in old snapshots)
        "stopped": _stopped(meta.get("interrupted")),
        "start": {"seed": start.seed, "backend": start.backend, "reason": start.reason,
                  "measured": bool(start.movement), "source": start.source},
        "play": {"states": int(len(record.states)), "games": len(record.scores),
                 "scores": [float(s) for s in record.scores], **(options or {})},
    }


# Games whose ALE action names mislead: the joystick direction is not what moves on the screen.
ACTION_NOTES = {
    "pong": "In Pong the ALE reads a paddle controller: RIGHT moves the paddle up, LEFT down (as dqnviz play maps ↑ and ↓).",
}


def _stopped(interrupted) -> dict | None:
    """An ``_interrupted`` snapshot's ``{"phase", "steps_done"}`` (the agent steps its epoch's phase
    had played), or None where the snapshot does not say (not interrupted, or only ``True``)."""
    if not isinstance(interrupted, dict) or not isinstance(interrupted.get("steps_done"), (int, float)):
        return None
    return {"phase": str(interrupted.get("phase") or "train"), "steps_done": int(interrupted["steps_done"])}


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


def write_report(path, context: dict):
    from dqnviz.report.render import render, write_html

    return write_html(path, render("nvis.html.j2", **context))
