"""Guided backpropagation (Springenberg et al., 2014, "Striving for Simplicity")."""

import numpy as np
from keras import ops

from dqnviz.analysis._model import (
    as_batch,
    check_filters,
    graph_runner,
    layer_output,
    resolve_layer,
)
from dqnviz.backend import input_gradient


def guided_backprop(model, states, layer, filter, *, batch_size=128) -> np.ndarray:
    """What in each state makes one filter fire: the guided gradient of its largest activation.

    For state ``s`` and filter ``f`` of ``layer`` the target is

        t(s) = max_{y,x} A_layer(s)[y, x, f]

    (``A`` without spatial axes, e.g. a Dense layer, is used as is), and the result is
    ``dt/ds`` computed with the guided-ReLU backward rule at every ReLU of the model:
    ``dL/dx = g · [x > 0] · [g > 0]``. The gradient is taken with respect to the float value
    of the input pixels (``uint8`` states are cast to float32 and fed through the model's
    layers after the Input, without being cast back). The model is not modified.

    Args:
        model: a built Keras image model (one ``(H, W, C)`` input, channels last).
        states: ``(N, H, W, C)`` array (or one ``(H, W, C)`` state), any numeric dtype.
        layer: a layer name or Layer object of ``model`` (top level).
        filter: an int (the same filter for every state) or an int array of length ``N``
            (one filter per state: all filters of a layer can be done in one batched pass).
        batch_size: states per forward+backward pass.

    Returns:
        float32 array shaped like ``states``.

    Raises:
        UserError: no Conv2D layers, non-image input, unknown layer, states of the wrong
            shape, or a filter index out of range.
    """
    batch, single = as_batch(model, states)
    layer = resolve_layer(model, layer)
    filters = check_filters(model, layer, filter, count=len(batch))
    filters = np.broadcast_to(filters, (len(batch),))
    channels = int(layer_output(model, layer).shape[-1])
    run = graph_runner(model, layer_output(model, layer), guided=True)

    gradients = np.empty(batch.shape, dtype=np.float32)
    for start in range(0, len(batch), batch_size):
        stop = start + batch_size
        one_hot = np.eye(channels, dtype=np.float32)[filters[start:stop]]

        def target(x, one_hot=one_hot):
            activations = run(x)
            mask = ops.convert_to_tensor(
                one_hot.reshape((len(one_hot),) + (1,) * (len(activations.shape) - 2) + (channels,))
            )
            selected = ops.sum(activations * mask, axis=-1)
            if len(selected.shape) > 1:
                selected = ops.max(ops.reshape(selected, (ops.shape(selected)[0], -1)), axis=1)
            return selected

        _, gradient = input_gradient(target, batch[start:stop].astype(np.float32))
        gradients[start:stop] = gradient
    return gradients[0] if single else gradients
