"""Guided backpropagation (Springenberg et al., 2014, "Striving for Simplicity")."""

import warnings

import numpy as np
from keras import ops

from dqnviz.analysis._model import (
    as_batch,
    check_batch_size,
    check_filters,
    compiled_gradient,
    graph_runner,
    layer_output,
    resolve_layer,
)
from dqnviz.errors import UserError
from dqnviz.progress import plural
from dqnviz.units import format_few


class ZeroGradientWarning(UserWarning):
    """:func:`guided_backprop` made images that are all zero: their unit is 0 on those states, or
    fires but the guided rule cuts every path to the input. (The reports flag filters that never
    fire themselves, and silence this warning.)"""


def guided_backprop(model, states, layer, filter, *, position=None, batch_size=128) -> np.ndarray:
    """What in each state makes one filter fire: the guided gradient of its largest activation.

    For state ``s`` and filter ``f`` of ``layer`` the target is one unit, the filter's strongest:

        t(s) = A_layer(s)[y*, x*, f],    (y*, x*) = first argmax_{y,x} A_layer(s)[y, x, f]

    with ties going to the first position in row-major order, the rule of
    :func:`~dqnviz.analysis.top_activations`; or ``(y*, x*) = position`` when given. Where the
    activations tie (a blank region, ReLU outputs at 0) the gradient of ``max_{y,x}`` would be
    split over every tied unit and light up all their receptive fields; this one stays inside the
    receptive field of the unit a report names. (``A`` without spatial axes, e.g. a Dense layer,
    is used as is, after its activation: a ``Dense(..., activation="softmax")`` layer's unit is a
    probability, unlike :func:`~dqnviz.analysis.saliency`, which explains a softmax classifier's
    scores before the softmax.) The result is ``dt/ds`` computed with the guided-ReLU backward rule at every
    ReLU of the model: ``dL/dx = g · [x > 0] · [g > 0]``; capped and leaky rectifiers (ReLU6,
    LeakyReLU) get ``dL/dx = f'(x) · max(g, 0)`` and smooth activations their plain derivative
    (see :mod:`dqnviz.analysis.relu`), nested models included. BatchNormalization uses its moving
    statistics and Dropout is off. The gradient is taken with respect to the float value
    of the input pixels (``uint8`` states are cast to float32 and fed through the model's
    layers after the Input, without being cast back). The model is not modified.

    Args:
        model: a built Keras image model (one ``(H, W, C)`` input, channels last).
        states: ``(N, H, W, C)`` array (or one ``(H, W, C)`` state), any numeric dtype.
        layer: a layer name or Layer object of ``model`` or of a model nested in it (any
            layer with an output: Conv2D, DepthwiseConv2D, BatchNormalization, Add, Dense, ...).
        filter: an int (the same filter for every state) or an int array of length ``N``
            (one filter per state: all filters of a layer can be done in one batched pass).
        position: None (each state's strongest unit of the filter), or the unit to differentiate:
            one ``(y, x)`` for every state or an ``(N, 2)`` int array, e.g. the positions
            :func:`~dqnviz.analysis.top_activations` returned, so that the image is of the very
            unit a report labels.
        batch_size: states per forward+backward pass, a positive integer.

    Returns:
        float32 array shaped like ``states``. A filter whose strongest unit is 0 on a state (a dead
        ReLU; :func:`~dqnviz.analysis.top_activations` gives its value as 0) has no gradient
        there: its image is all zeros, as is a saturated softmax unit's. Such images are said in
        one :class:`ZeroGradientWarning`, which names their states, filters and cause.

    Raises:
        UserError: no Conv2D layers, non-image input, unknown or channels_first layer, states
            of the wrong shape or with NaN / infinite values, a filter index out of range, a
            position outside the layer's output (or given for a layer without spatial axes), a
            ``batch_size`` that is not a positive integer, or a layer inside a nested model that
            the outer model calls more than once.
    """
    batch_size = check_batch_size(batch_size)
    batch, single = as_batch(model, states)
    layer = resolve_layer(model, layer)
    filters = check_filters(model, layer, filter, count=len(batch))
    filters = np.broadcast_to(filters, (len(batch),))
    output = layer_output(model, layer)
    units = None if position is None else _flat_positions(model, layer, output, position, batch.shape[:3])
    target = compiled_gradient(model, ("guided", id(output), units is None),
                               lambda: _strongest_unit_target(model, output, units is None), output)

    gradients = np.empty(batch.shape, dtype=np.float32)
    values = np.empty(len(batch), dtype=np.float32)  # each target unit's activation
    for start in range(0, len(batch), batch_size):
        stop = start + batch_size
        chosen = () if units is None else (units[start:stop],)
        values[start:stop], gradients[start:stop] = target(batch[start:stop].astype(np.float32),
                                                           filters[start:stop].astype(np.int32), *chosen)
    _warn_of_zero_images(gradients, values, filters, layer.name, single, "filter" if len(output.shape) == 4 else "unit")
    return gradients[0] if single else gradients


def _warn_of_zero_images(gradients, values, filters, layer_name: str, single: bool, kind: str) -> None:
    """One :class:`ZeroGradientWarning` for the images of ``gradients`` that are all zero, with
    their cause: the unit differentiated is 0 on the state (its filter does not fire there, or
    not at the ``position`` given), or it fires but every path from the input to it is cut by a
    guided ReLU (each passes only positive gradients to positive inputs)."""
    zero = ~gradients.reshape(len(gradients), -1).any(axis=1)
    if not zero.any():
        return
    causes = []
    for off, because in ((values <= 0, "is 0 there (the filter does not fire at that unit)"),
                         (values > 0, "fires, but guided backprop's rule (positive gradients through active ReLUs "
                                      "only) stops every path to the input")):
        where = np.flatnonzero(zero & off)
        if len(where):
            which = sorted({int(filters[i]) for i in where})
            states = "" if single else f" on {plural('state', len(where))} {format_few(where.tolist(), 8)}"
            causes.append(f"{layer_name} {plural(kind, len(which))} {format_few(which, 8)}{states}: the unit {because}")
    images = "the image is" if single else f"{int(zero.sum())} of {len(gradients)} images are"
    warnings.warn(f"guided_backprop: {images} all zero; " + "; ".join(causes), ZeroGradientWarning, stacklevel=3)


def _strongest_unit_target(model, output, strongest):
    """``t(x, filters[, units])``: per example, filter ``filters[i]`` of ``output`` (guided) at its
    first strongest position, or at ``units[i]`` (a row-major index ``y · W + x``)."""
    run = graph_runner(model, output, guided=True)
    channels = int(output.shape[-1])

    def target(x, filters, *units):
        activations = run(x)
        rank = len(activations.shape)
        mask = ops.one_hot(filters, channels, dtype=activations.dtype)
        selected = ops.sum(activations * ops.reshape(mask, (-1,) + (1,) * (rank - 2) + (channels,)), axis=-1)
        if rank == 2:
            return selected
        flat = ops.reshape(selected, (-1, int(np.prod(selected.shape[1:]))))
        where = first_argmax(ops.stop_gradient(flat)) if strongest else units[0]
        unit = ops.stop_gradient(ops.one_hot(where, int(flat.shape[1]), dtype=flat.dtype))
        return ops.sum(flat * unit, axis=1)

    return target


def first_argmax(values):
    """Per row of ``(N, P)`` values, ``min {p : values[p] = max_q values[q]}``: ties go to the first
    position, as ``np.argmax`` (``ops.argmax`` leaves ties unspecified on some backends)."""
    size = int(values.shape[1])
    is_max = ops.equal(values, ops.max(values, axis=1, keepdims=True))
    return ops.min(ops.where(is_max, ops.arange(size, dtype="int32"), size), axis=1)


def _flat_positions(model, layer, output, position, batch_shape) -> np.ndarray:
    """``(y, x)`` per state as row-major indices ``y · W + x`` into the layer's output, for states
    of ``batch_shape`` (N, H, W): a model of any image size has the output size those states give."""
    if len(output.shape) != 4:
        raise UserError(f"layer {layer.name!r} has no spatial axes: give no position for it")
    count = batch_shape[0]
    height, width = output.shape[1], output.shape[2]
    if height is None or width is None:
        from dqnviz.analysis.receptive_field import _layer_field

        height, width = _layer_field(model, layer, tuple(batch_shape[1:3]))[1].spatial
    height, width = int(height), int(width)
    array = np.asarray(position)
    if array.dtype.kind not in "iu" or array.shape not in ((2,), (count, 2)):
        raise UserError(f"give one (y, x) position or one per state ({count}, 2), got {position!r}")
    array = np.broadcast_to(array.astype(np.int64), (count, 2))
    outside = (array < 0).any(axis=1) | (array[:, 0] >= height) | (array[:, 1] >= width)
    if outside.any():
        y, x = (int(v) for v in array[outside][0])
        raise UserError(
            f"position ({y}, {x}) is outside layer {layer.name!r}, whose output is {height}×{width} "
            f"(valid: y 0..{height - 1}, x 0..{width - 1})"
        )
    return (array[:, 0] * width + array[:, 1]).astype(np.int32)
