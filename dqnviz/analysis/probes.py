"""Finding layers and the inputs that excite their filters most."""

import keras
import numpy as np

from dqnviz.analysis._model import (
    all_layers,
    as_batch,
    check_batch_size,
    check_filters,
    compiled_runner,
    conv_layer_objects,
    layer_names,
    layer_output,
    nesting,
    predict,
    resolve_layer,
)
from dqnviz.analysis.relu import is_relu_output
from dqnviz.errors import UserError


def conv_layers(model) -> list:
    """Names of the model's 2-D convolution layers (Conv2D, DepthwiseConv2D, SeparableConv2D),
    input to output, those of nested models in place of the nested model.

    Returns:
        A list of layer names, e.g. ``["conv1", "conv2", "conv3"]`` for the Nature DQN; a name
        that two nested models' layers share is given as each one's path, ``"first/c1"``,
        ``"second/c1"``, which every analysis takes.

    Raises:
        UserError: not a built image model, or no Conv2D layers.
    """
    return layer_names(model, conv_layer_objects(model))


def image_layers(model) -> list:
    """Names of the layers whose output is an image ``(N, H, W, C)`` from the first conv layer on:
    every conv layer and what follows one while the spatial axes last (BatchNormalization, ReLU, Activation, pooling, Add),
    input to output, those of nested models in place of the nested model. Any of them can be
    analysed as a conv layer is: channel ``f`` of the ReLU after a conv is that conv's filter ``f``
    after the ReLU.

    Raises:
        UserError: not a built image model, or no Conv2D layers.
    """
    convs = conv_layer_objects(model)  # the same checks and message as conv_layers
    names, seen_conv = [], False
    for layer in all_layers(model):
        seen_conv = seen_conv or any(layer is conv for conv in convs)
        if not seen_conv:  # the input, Rescaling: pixels, not features
            continue
        try:
            shape = layer_output(model, layer).shape
        except UserError:  # shared: no single output to analyse
            continue
        if len(shape) == 4:
            names.append(layer)
    return layer_names(model, names)


# Layers that act on each channel of each unit on its own: after a conv they keep its filters' meaning.
_PER_UNIT = (keras.layers.BatchNormalization, keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU,
             keras.layers.ELU, keras.layers.PReLU, keras.layers.Rescaling, keras.layers.Dropout)


def rectified_by(model, layer) -> list:
    """For a conv layer without an activation of its own, the layers after it up to its rectifier:
    ``["bn_a", "relu_a"]`` for Conv2D(activation=None) → BatchNormalization → ReLU, each the one
    consumer of the one before and acting per unit. ``[]`` for a conv with its own activation, or
    where no rectifier follows that way. Its units are then read *before* those layers; the last
    name reads them after (:func:`image_layers`).
    """
    layer = resolve_layer(model, layer)
    if getattr(layer, "activation", None) is not keras.activations.linear:
        return []
    chain, current = [], layer
    while True:
        consumers = [node.operation for node in getattr(current, "_outbound_nodes", [])]
        if len(consumers) != 1 or not isinstance(consumers[0], _PER_UNIT):
            return []
        current = consumers[0]
        chain.append(current.name)
        if is_relu_output(current):
            return chain


def silent_filters(model, layer, strongest) -> list:
    """The filters of ``layer`` that never fire, from each filter's strongest unit ``strongest``
    (:func:`top_activations`' ``(state, (y, x), value)`` per filter): those at ≤ 0 everywhere,
    where the layer's output is rectified (a dead ReLU). A linear convolution, with a
    BatchNormalization and ReLU after it, may peak below 0 and still fire: none is silent there."""
    if not is_relu_output(resolve_layer(model, layer)):
        return []
    return [f for f, (_, _, value) in enumerate(strongest) if value <= 0]


def full_history(states) -> np.ndarray:
    """``(N,)`` mask of the states whose every stacked frame (channel) has a lit pixel: not one of
    a game's first steps, whose stacks start with blank frames from before the start.

    ``full_n = ∀c ∃(y, x): states[n, y, x, c] ≠ 0``. Pass it as ``prefer`` to :func:`top_activations`.

    Args:
        states: ``(N, H, W, C)`` states, any dtype; N may be 0.

    Raises:
        UserError: states of another rank (one state needs its batch axis: ``states[None]``).
    """
    states = np.asarray(states)
    if states.ndim != 4:
        raise UserError(f"full_history takes states (N, H, W, C), got shape {states.shape}")
    return (states != 0).any(axis=(1, 2)).all(axis=1)


def top_activations(model, states, layer, filters=None, batch_size=256, prefer=None) -> list:
    """For each filter, the state and position where it fires most.

    ``value_f = max_{n, y, x} A_layer(states[n])[y, x, f]``; ties go to the first state, then the
    first position in row-major order. The activations come from batched forward passes
    through the model's graph up to ``layer`` (inference mode, float input).

    With ``prefer`` (a boolean mask over the states) the maximum is taken over the preferred
    states, and over all of them only for a filter that fires (value > 0) on none of the
    preferred ones: e.g. the states of a game's first steps, whose stacks hold blank frames from
    before the start, read as sudden motion and would otherwise win for many filters.

    Args:
        model: a built Keras image model.
        states: ``(N, H, W, C)`` states (or one state).
        layer: layer name or Layer object.
        filters: filter indices (int or sequence); None for all filters of the layer.
        batch_size: states per forward pass, a positive integer.
        prefer: None, or an ``(N,)`` boolean mask of the states to search first (one bool
            stands for all states).

    Returns:
        A list with one ``(state_index, (y, x), value)`` per requested filter, in the order
        of ``filters``. For a layer without spatial axes (Dense) the position is ``(0, 0)``.

    Raises:
        UserError: no Conv2D layers, non-image input, unknown or channels_first layer, states
            with NaN / infinite values, no filter or one out of range, ``prefer`` not a boolean
            mask over the states, ``batch_size`` not a positive integer.
    """
    return top_activations_by_layer(model, states, [layer], None if filters is None else [filters],
                                    batch_size, prefer)[0]


def top_activations_by_layer(model, states, layers, filters=None, batch_size=256, prefer=None) -> list:
    """:func:`top_activations` of several layers from the same forward passes.

    Each batch of states runs through the model once, up to its deepest requested layer, and every
    requested layer's output is searched (for nvis's conv1..conv3 that computes conv1 once
    instead of three times). Layers inside a nested model are each run on their own pass.

    Args:
        model, states, batch_size, prefer: as for :func:`top_activations`.
        layers: layer names or Layer objects.
        filters: None for all filters of every layer, or one entry per layer (filter indices,
            or None for all of that layer's).

    Returns:
        One list per layer, in the order of ``layers``, as :func:`top_activations` returns it.

    Raises:
        UserError: as :func:`top_activations`; ``filters`` not one entry per layer.
    """
    batch_size = check_batch_size(batch_size)
    batch, _ = as_batch(model, states)
    if isinstance(layers, str) or not isinstance(layers, (list, tuple)):
        raise UserError(f"layers must be a list of layer names or Layer objects, got {layers!r} "
                        "(for one layer, top_activations)")
    layers = [resolve_layer(model, layer) for layer in layers]
    if filters is not None and (not isinstance(filters, (list, tuple)) or len(filters) != len(layers)):
        raise UserError(f"filters must be a list with one entry per layer ({len(layers)}: indices, or None "
                        f"for all of that layer's), got {filters!r}")
    prefer = _check_prefer(prefer, len(batch))
    searches = []
    for i, layer in enumerate(layers):
        output = layer_output(model, layer)
        chosen = None if filters is None else filters[i]
        channels = int(output.shape[-1])
        chosen = np.arange(channels) if chosen is None else np.atleast_1d(check_filters(model, layer, chosen))
        searches.append(_StrongestUnits(output, channels, chosen))
    for group in _passes(model, [search.output for search in searches]):
        run = compiled_runner(model, group if len(group) > 1 else group[0])
        index = {id(output): i for i, output in enumerate(group)}
        members = [(search, index[id(search.output)]) for search in searches if id(search.output) in index]
        for start in range(0, len(batch), batch_size):
            activations = predict(run, batch[start:start + batch_size].astype(np.float32), batch_size)
            activations = activations if len(group) > 1 else (activations,)
            for search, i in members:
                search.update(start, activations[i], prefer)
    return [search.result(prefer is not None) for search in searches]


def _passes(model, outputs) -> list:
    """Group symbolic ``outputs`` into forward passes: those of ``model``'s own graph share one
    (their distinct tensors, in order), each one inside a nested model has its own."""
    own, nested = [], []
    for output in outputs:
        if nesting(model, output._keras_history[0]):
            if not any(output is seen for seen in nested):
                nested.append(output)
        elif not any(output is seen for seen in own):
            own.append(output)
    return ([own] if own else []) + [[output] for output in nested]


class _StrongestUnits:
    """The running best (state, position, value) of each chosen filter of one layer's output.

    Row 0 holds the best over all states seen, row 1 over the preferred ones."""

    def __init__(self, output, channels: int, filters: np.ndarray):
        self.output, self.channels, self.filters = output, channels, filters
        self.value = np.full((2, len(filters)), -np.inf)
        self.state = np.zeros((2, len(filters)), dtype=np.int64)
        self.position = np.zeros((2, len(filters)), dtype=np.int64)
        self.spatial = (1, 1)

    def update(self, start: int, activations: np.ndarray, prefer) -> None:
        """Take in the activations ``(n, [H, W,] C)`` of the states ``start .. start + n``."""
        if activations.ndim == 4:
            self.spatial = activations.shape[1:3]
        columns = np.arange(len(self.filters))
        flat = activations.reshape(len(activations), -1, self.channels)[..., self.filters]  # (n, P, F)
        per_state = flat.max(axis=1)  # (n, F)
        candidates = [(0, per_state)]
        if prefer is not None and prefer[start:start + len(flat)].any():
            candidates.append((1, np.where(prefer[start:start + len(flat), None], per_state, -np.inf)))
        for row, values in candidates:
            state = values.argmax(axis=0)
            value = values[state, columns]
            better = value > self.value[row]
            self.value[row, better] = value[better]
            self.state[row, better] = start + state[better]
            self.position[row, better] = flat[state, :, columns].argmax(axis=1)[better]

    def result(self, preferring: bool) -> list:
        """``[(state, (y, x), value)]`` per filter: the preferred states' best where it fires."""
        row = (self.value[1] > 0).astype(int) if preferring else np.zeros(len(self.filters), int)
        columns = np.arange(len(self.filters))
        return [
            (int(n), tuple(int(i) for i in np.unravel_index(p, self.spatial)), float(v))
            for n, p, v in zip(self.state[row, columns], self.position[row, columns], self.value[row, columns])
        ]


def _check_prefer(prefer, count):
    """None, or ``prefer`` as an ``(N,)`` bool array: a mask with one entry per state (or one
    bool for all). Indices or a mask of another length would silently search the wrong states."""
    if prefer is None:
        return None
    array = np.asarray(prefer)
    if array.dtype.kind != "b" or array.shape not in ((), (count,)):
        raise UserError(
            f"prefer must be a boolean mask with one entry per state ({count}), "
            f"got {array.dtype} of shape {array.shape}"
        )
    return np.broadcast_to(array, (count,))
