"""Shared helpers: validating models, layers and states, and running a model's graph on floats.

All analyses feed *float32* inputs through the model's own layers (same layer objects, same
weights). A Keras Functional model converts its inputs to the ``Input``'s dtype (``uint8`` for the
Nature DQN), which would round the inputs and cut the gradient; :func:`graph_runner` therefore
executes the layer graph directly from the input tensors, skipping that conversion.
"""

import keras
import numpy as np
from keras import ops

from dqnviz.analysis.relu import is_relu_output, positive_gradient
from dqnviz.errors import UserError


def check_model(model) -> None:
    """Make sure ``model`` is a built Keras model with one rank-4 (image) input.

    Raises:
        UserError: not a Keras model, not built, several inputs, or an input of rank != 4.
    """
    if not isinstance(model, keras.Model):
        raise UserError(f"expected a Keras model, got {type(model).__name__}")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise UserError(
            f"model {model.name!r} is not built: give it a keras.Input or call it on data first"
        )
    if len(inputs) != 1:
        raise UserError(f"model {model.name!r} has {len(inputs)} inputs; the analyses need exactly one image input")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4:
        raise UserError(
            f"model {model.name!r} does not take images: its input shape is {shape[1:]}, "
            "expected (height, width, channels)"
        )


def input_shape(model) -> tuple:
    """The model's input shape without the batch axis, e.g. ``(84, 84, 4)``."""
    return tuple(model.inputs[0].shape[1:])


def conv_layer_objects(model) -> list:
    """The model's top-level ``Conv2D`` layers, in order.

    Raises:
        UserError: the model has no Conv2D layer.
    """
    check_model(model)
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if not layers:
        raise UserError(f"model {model.name!r} has no Conv2D layers to analyse")
    return layers


def resolve_layer(model, layer):
    """Turn a layer name or Layer object into a top-level layer of ``model``.

    Args:
        model: a Keras model (validated with :func:`check_model`).
        layer: a layer name (str) or a Layer object belonging to ``model``.

    Returns:
        The Layer object.

    Raises:
        UserError: unknown name or a layer that is not part of the model; the message lists
            the model's Conv2D layers.
    """
    convs = [l.name for l in conv_layer_objects(model)]
    if isinstance(layer, keras.layers.Layer):
        if any(layer is l for l in model.layers):
            return layer
        raise UserError(
            f"layer {layer.name!r} is not part of model {model.name!r}; "
            f"its conv layers are: {', '.join(convs)}"
        )
    if not isinstance(layer, str):
        raise UserError(f"a layer must be a name or a Keras layer, got {type(layer).__name__}")
    for candidate in model.layers:
        if candidate.name == layer:
            return candidate
    raise UserError(
        f"unknown layer {layer!r}; the conv layers of model {model.name!r} are: {', '.join(convs)}"
    )


def layer_output(model, layer):
    """The symbolic output tensor of ``layer`` inside ``model``'s graph."""
    try:
        return layer.output
    except (AttributeError, ValueError) as error:
        raise UserError(
            f"layer {layer.name!r} has no single output in model {model.name!r} "
            f"(shared or unconnected layer): {error}"
        ) from None


def num_channels(model, layer) -> int:
    """Number of filters/units (last axis) of ``layer``'s output."""
    return int(layer_output(model, layer).shape[-1])


def check_filters(model, layer, filters, count=None) -> np.ndarray:
    """Validate filter indices for ``layer``.

    Args:
        filters: an int or an integer array.
        count: if given and ``filters`` is an array, its required length.

    Returns:
        ``filters`` as an int64 array (shape ``()`` for an int).

    Raises:
        UserError: non-integer, wrong length or out of range ``[0, channels)``.
    """
    n = num_channels(model, layer)
    array = np.asarray(filters)
    if array.dtype.kind not in "iu":
        raise UserError(f"filter indices must be integers, got {filters!r}")
    if array.ndim > 1 or (array.ndim == 1 and count is not None and len(array) != count):
        raise UserError(
            f"give one filter index or one per state ({count}), got shape {array.shape}"
        )
    if array.size and (array.min() < 0 or array.max() >= n):
        bad = int(array[(array < 0) | (array >= n)].flat[0])
        raise UserError(
            f"filter {bad} is out of range for layer {layer.name!r}, which has {n} filters "
            f"(valid: 0..{n - 1})"
        )
    return array.astype(np.int64)


def as_batch(model, states):
    """Validate ``states`` against the model input and add a batch axis if needed.

    Args:
        states: ``(N, H, W, C)`` or a single ``(H, W, C)`` state, any numeric dtype.

    Returns:
        ``(batch, single)``: the states as a numpy array with a batch axis (dtype kept), and
        whether a single state was given (so results can be squeezed back).

    Raises:
        UserError: the shape does not match the model input.
    """
    check_model(model)
    expected = input_shape(model)
    array = np.asarray(states)
    single = array.ndim == len(expected)
    if single:
        array = array[None]
    if array.ndim != len(expected) + 1 or any(
        e is not None and e != s for e, s in zip(expected, array.shape[1:])
    ):
        raise UserError(
            f"states of shape {np.shape(states)} do not fit model {model.name!r}, "
            f"which takes (N, {', '.join(str(e) for e in expected)})"
        )
    if array.dtype.kind not in "uifb":
        raise UserError(f"states must be numeric, got dtype {array.dtype}")
    if len(array) == 0:
        raise UserError("no states given")
    return array, single


def _call_operation(operation, guided):
    """Wrap one graph operation: inference mode, and the guided rule after ReLU outputs."""
    nested = None
    if guided and isinstance(operation, keras.Model):
        try:
            nested = graph_runner(operation, None, guided=True)
        except UserError:
            nested = None

    def call(*args, **kwargs):
        if nested is not None and len(args) == 1 and not kwargs:
            return nested(args[0])
        if "training" in getattr(operation, "_call_context_args", ()):
            kwargs["training"] = False
        outputs = operation(*args, **kwargs)
        if guided and is_relu_output(operation):
            outputs = positive_gradient(outputs)
        return outputs

    return call


def graph_runner(model, output=None, guided=False):
    """A function ``x -> tensor`` running ``model``'s layers on a float input.

    Args:
        model: a built single-input Keras model (functional or Sequential).
        output: a symbolic tensor of the model's graph to stop at (e.g. ``layer.output``);
            None for the model's output.
        guided: apply the guided-ReLU backward rule after every ReLU (see :mod:`.relu`).

    Returns:
        ``run(x)`` taking a float32 tensor ``(N, H, W, C)`` and returning the tensor at
        ``output``, computed in inference mode with the model's current weights. Nothing is
        cast to the Input's dtype.
    """
    inputs = model.inputs
    if output is None:
        outputs = model.outputs
        output = outputs[0] if len(outputs) == 1 else outputs
    function = keras.Function(inputs, output)

    def run(x):
        # ``_run_through_graph`` is what Functional.call uses after casting the inputs; calling it
        # directly keeps float inputs float. It is stable across Keras 3 releases.
        return function._run_through_graph(
            [x], operation_fn=lambda operation: _call_operation(operation, guided)
        )

    return run


def to_float_tensor(x):
    """A float32 backend tensor from a numpy array."""
    return ops.convert_to_tensor(np.asarray(x, dtype=np.float32))


def predict(run, states, batch_size=256) -> np.ndarray:
    """Apply ``run`` (from :func:`graph_runner`) to float32 ``states`` in batches; numpy out."""
    outputs = []
    for start in range(0, len(states), batch_size):
        outputs.append(ops.convert_to_numpy(run(to_float_tensor(states[start:start + batch_size]))))
    return np.concatenate(outputs, axis=0)
