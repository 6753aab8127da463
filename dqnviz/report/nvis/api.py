"""The Python API: :func:`nvis_report` checks a model, its states and the options before any work,
then analyses the states and writes the page."""

from __future__ import annotations

import numpy as np

from dqnviz.errors import UserError
from dqnviz.report.nvis.findings import SCORE_PICKS, analyse
from dqnviz.report.nvis.model_input import _layer_channels, at_states_size, check_outputs
from dqnviz.report.nvis.options import _as_text, default_filters, describe_filters, parse_filters, parse_layers
from dqnviz.report.nvis.page import model_context, write_report
from dqnviz.report.nvis.page_size import check_page_size
from dqnviz.report.nvis.states import state_view


def nvis_report(model, states, path, layers=None, filters=None, action_names=None, title=None, *,
                frame_stack=None, progress=False):
    """Write the ``dqnviz nvis`` report for any Keras image model and states you give.

    The self-contained, interactive HTML page shows per conv layer a card per filter (the state
    where its strongest unit fires most, the unit's receptive field and its guided-backprop
    image), effective versus theoretical receptive fields, and gradient and perturbation
    saliency of the top output for three telling states (highest and lowest top score, biggest
    margin) next to the outputs as a dot plot. The outputs are read as scores: Q-values for a DQN, the
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
        path: the HTML file to write (atomically: a file is there whole or not at all), with
            any missing folders made, as ``dqnviz nvis --out`` does.
        layers: layer names (a list or ``"conv1,conv3"``); None: all conv layers, as
            :func:`dqnviz.analysis.conv_layers` lists them. Any layer with an image output after
            the first conv may be named too (:func:`dqnviz.analysis.image_layers`), e.g. the ReLU
            after a ``Conv2D(activation=None)`` and its BatchNormalization: the page then shows
            the conv's filters after them, where the conv alone shows them before (and says so).
        filters: per layer, what ``dqnviz nvis --filters`` takes: N (the first N), ``"all"``,
            ``"topN"`` (the N that fire most on these states) or indices (``"0,5,17"`` or a list);
            None: ``"top8"``, each layer's 8 strongest, strongest first (all of a layer with fewer,
            also where no layer has 8), as ``--filters``'s default: the first 8 of a trained layer
            often include filters that never fire. A choice whose card images may pass 50 MB warns in one line
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

    from dqnviz.analysis._model import as_batch, compiled_runner, predict
    from dqnviz.outputs import check_output

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
    text = _as_text(filters, "filters") if filters is not None else default_filters(channels)
    chosen = parse_filters(text, channels, name="filters")
    check_page_size(chosen, batch.shape[1:], text)
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name such as {path / (model.name + '.html')}")
    check_output(path, "path", suffixes=(".html", ".htm"), makes="an HTML report")

    # The scores the saliency explains: a softmax classifier's logits, not its probabilities.
    scores = predict(compiled_runner(model, logits=True), batch.astype(np.float32))
    data = analyse(model, batch, scores, names, chosen, view, progress=progress, labels=SCORE_PICKS)
    return write_report(path, model_context(data, action_names, title=title, filters=describe_filters(text)))
