"""Finding layers and the inputs that excite their filters most."""

import numpy as np

from dqnviz.analysis._model import (
    as_batch,
    check_batch_size,
    check_filters,
    compiled_runner,
    conv_layer_objects,
    layer_output,
    predict,
    resolve_layer,
)
from dqnviz.errors import UserError


def conv_layers(model) -> list:
    """Names of the model's 2-D convolution layers (Conv2D, DepthwiseConv2D, SeparableConv2D),
    input to output, those of nested models in place of the nested model.

    Raises:
        UserError: not a built image model, or no Conv2D layers.
    """
    return [layer.name for layer in conv_layer_objects(model)]


def full_history(states) -> np.ndarray:
    """``(N,)`` mask of the states whose every stacked frame (channel) has a lit pixel: not one of
    a game's first steps, whose stacks start with blank frames from before the start."""
    states = np.asarray(states)
    return states.reshape(len(states), -1, states.shape[-1]).any(axis=1).all(axis=1)


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
    batch_size = check_batch_size(batch_size)
    batch, _ = as_batch(model, states)
    layer = resolve_layer(model, layer)
    output = layer_output(model, layer)
    channels = int(output.shape[-1])
    filters = np.arange(channels) if filters is None else np.atleast_1d(check_filters(model, layer, filters))
    prefer = _check_prefer(prefer, len(batch))
    run = compiled_runner(model, output)

    # row 0: the best over all states; row 1: over the preferred ones
    best_value = np.full((2, len(filters)), -np.inf)
    best_state = np.zeros((2, len(filters)), dtype=np.int64)
    best_position = np.zeros((2, len(filters)), dtype=np.int64)
    spatial = (1, 1)
    for start in range(0, len(batch), batch_size):
        activations = predict(run, batch[start:start + batch_size].astype(np.float32), batch_size)
        if activations.ndim == 4:
            spatial = activations.shape[1:3]
        flat = activations.reshape(len(activations), -1, channels)[..., filters]  # (n, P, F)
        per_state = flat.max(axis=1)  # (n, F)
        searches = [(0, per_state)]
        if prefer is not None and prefer[start:start + len(flat)].any():
            searches.append((1, np.where(prefer[start:start + len(flat), None], per_state, -np.inf)))
        for row, candidates in searches:
            state = candidates.argmax(axis=0)
            value = candidates[state, np.arange(len(filters))]
            better = value > best_value[row]
            best_value[row, better] = value[better]
            best_state[row, better] = start + state[better]
            best_position[row, better] = flat[state, :, np.arange(len(filters))].argmax(axis=1)[better]
    chosen = (best_value[1] > 0).astype(int) if prefer is not None else np.zeros(len(filters), int)
    columns = np.arange(len(filters))
    return [
        (int(n), tuple(int(i) for i in np.unravel_index(p, spatial)), float(v))
        for n, p, v in zip(best_state[chosen, columns], best_position[chosen, columns], best_value[chosen, columns])
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
