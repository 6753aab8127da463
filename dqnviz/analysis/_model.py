"""Shared helpers: validating models, layers and states, and running a model's graph on floats.

All analyses feed *float32* inputs through the model's own layers (same layer objects, same
weights). A Keras Functional model converts its inputs to the ``Input``'s dtype (``uint8`` for the
Nature DQN), which would round the inputs and cut the gradient; :func:`graph_runner` therefore
executes the layer graph directly from the input tensors, skipping that conversion.

A model used as a layer of another (a Sequential backbone inside a Functional model, a
``keras.applications`` model called on an input) is run the same way, through its own graph, and
its layers can be named like the top-level ones: :func:`resolve_layer` finds ``"conv1"`` inside a
nested model, and :func:`graph_runner` runs the outer graph up to the nested model's input, then
the nested graph up to the layer. A nested model must be called once in the outer graph.
"""

import warnings

import keras
import numpy as np
from keras import ops

from dqnviz.analysis.relu import UnguidedCodeWarning, acts_as_softmax, is_relu_output, positive_gradient, runs_own_code
from dqnviz.backend import compile_forward, compile_input_gradient, input_gradient
from dqnviz.errors import UserError


def has_graph(model) -> bool:
    """Whether ``model`` has a layer graph to run and analyse: a functional or Sequential model
    with its inputs known. A subclassed ``keras.Model`` has none (its ``call`` is Python code),
    nor has a Sequential model that has not been built."""
    try:
        return bool(model.inputs)
    except (AttributeError, ValueError):
        return False


def check_model(model) -> None:
    """Make sure ``model`` is a built Keras model with one rank-4 (image) input and a layer graph.

    Raises:
        UserError: not a Keras model, not built, subclassed, several inputs, or an input of rank != 4.
    """
    if not isinstance(model, keras.Model):
        raise UserError(f"expected a Keras model, got {type(model).__name__}")
    if not has_graph(model):
        if model.built and not isinstance(model, keras.Sequential):
            raise UserError(
                f"model {model.name!r} is a subclassed keras.Model: its call() is Python code, not a graph of "
                "layers to analyse; build it with the functional API (keras.Input → layers → keras.Model)"
            )
        raise UserError(
            f"model {model.name!r} is not built: give it a keras.Input or call it on data first"
        )
    inputs = model.inputs
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


# 2-D convolutions, listed by :func:`conv_layer_objects` (DepthwiseConv2D and SeparableConv2D do
# not subclass Conv2D in Keras 3).
CONV_LAYER_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


def all_layers(model) -> list:
    """The model's layers in order, each nested model replaced by its own layers (recursively);
    a nested subclassed model stays one layer (its inner layers have no graph to analyse)."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and has_graph(layer):
            layers.extend(all_layers(layer))
        else:
            layers.append(layer)
    return layers


def nesting(model, operation):
    """The nested models leading from ``model`` to the graph ``operation`` belongs to.

    Returns:
        ``[]`` for an operation of ``model``'s own graph (a top-level layer), ``[outer, ...,
        innermost]`` for one inside nested models, None when it is not part of ``model``.
    """
    # layers, Input, keras.ops: built once per model (every pass of every analysis asks, some twice)
    own = _compiled(model, ("own operations",), lambda: keras.Function(model.inputs, model.outputs)._operations)
    if any(operation is layer for layer in model.layers) or any(operation is op for op in own):
        return []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and has_graph(layer):
            inner = nesting(layer, operation)
            if inner is not None:
                return [layer] + inner
    return None


def nested_input(model, nested):
    """The symbolic tensor of ``model``'s graph that the nested model ``nested`` is called on.

    Raises:
        UserError: ``nested`` is called on several tensors or more than once in ``model``.
    """
    nodes = [node for node in graph_nodes(model) if node.operation is nested]
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
        raise UserError(
            f"nested model {nested.name!r} is called {len(nodes)} times or on several inputs in "
            f"model {model.name!r}; only layers of a nested model called once on one tensor can be analysed"
        )
    return nodes[0].input_tensors[0]


def conv_layer_objects(model) -> list:
    """The model's 2-D convolution layers (Conv2D, DepthwiseConv2D, SeparableConv2D), in order,
    those of nested models included.

    Raises:
        UserError: the model has no such layer.
    """
    check_model(model)
    layers = [layer for layer in all_layers(model) if isinstance(layer, CONV_LAYER_TYPES)]
    if not layers:
        opaque = [layer.name for layer in all_layers(model) if isinstance(layer, keras.Model)]
        why = (f" (the layers inside subclassed model {opaque[0]!r} have no graph to analyse: build it with "
               "the functional API)") if opaque else ""
        raise UserError(f"model {model.name!r} has no Conv2D layers to analyse{why}")
    return layers


def resolve_layer(model, layer):
    """Turn a layer name or Layer object into a layer of ``model`` or of a model nested in it.

    A name is a top-level layer's, else that of the one layer of a nested model that has it; a
    layer of a nested model is also named by its path, ``"backbone/conv1"`` (:func:`layer_names`
    gives these where names repeat), and a name that only layers of two nested models share is
    refused.

    Args:
        model: a Keras model (validated with :func:`check_model`).
        layer: a layer name (str) or a Layer object belonging to ``model`` (or a nested model).

    Returns:
        The Layer object.

    Raises:
        UserError: unknown or ambiguous name, or a layer that is not part of the model (the
            message lists the model's Conv2D layers), or a channels_first layer
            (:func:`check_channels_last`).
    """
    convs = [l.name for l in conv_layer_objects(model)]
    if isinstance(layer, keras.layers.Layer):
        if nesting(model, layer) is not None:
            return check_channels_last(layer)
        raise UserError(
            f"layer {layer.name!r} is not part of model {model.name!r}; "
            f"its conv layers are: {', '.join(convs)}"
        )
    if not isinstance(layer, str):
        raise UserError(f"a layer must be a name or a Keras layer, got {type(layer).__name__}")
    if "/" in layer:  # "backbone/conv1": a layer of a nested model, by the path :func:`layer_names` gives
        return check_channels_last(_layer_at_path(model, layer, convs))
    top = [candidate for candidate in model.layers if candidate.name == layer]
    if top:  # a bare name is the top-level layer's: a nested one of that name is named by its path
        return check_channels_last(top[0])
    named = []
    for candidate in all_layers(model):
        if candidate.name == layer and not any(candidate is other for other in named):
            named.append(candidate)
    if len(named) > 1:
        raise UserError(
            f"layer name {layer!r} is ambiguous in model {model.name!r}: {len(named)} layers have it "
            f"(in {', '.join(_holder(model, candidate) for candidate in named)}); name it by its path, "
            f"{' or '.join(repr(qualified_name(model, candidate)) for candidate in named)}, or pass the layer object"
        )
    if named:
        return check_channels_last(named[0])
    raise UserError(
        f"unknown layer {layer!r}; the conv layers of model {model.name!r} are: {', '.join(convs)}"
    )


def _layer_at_path(model, path: str, convs: list):
    """The layer ``"outer/inner/name"`` names: ``name`` inside the nested model ``inner`` inside
    the nested model ``outer`` of ``model``."""
    *models, name = path.split("/")
    holder = model
    for part in models:
        found = [layer for layer in holder.layers if layer.name == part]
        if not found or not isinstance(found[0], keras.Model) or not has_graph(found[0]):
            raise UserError(f"unknown layer {path!r}: {holder.name!r} has no nested model {part!r}; "
                            f"the conv layers of model {model.name!r} are: {', '.join(convs)}")
        holder = found[0]
    for layer in holder.layers:
        if layer.name == name:
            return layer
    raise UserError(f"unknown layer {path!r}: nested model {holder.name!r} has no layer {name!r}; "
                    f"the conv layers of model {model.name!r} are: {', '.join(convs)}")


def qualified_name(model, layer) -> str:
    """``layer``'s path in ``model``: its name after those of the nested models holding it,
    ``"backbone/conv1"`` (Keras allows no ``/`` in a name), or just its name at the top level."""
    return "/".join([nested.name for nested in nesting(model, layer) or []] + [layer.name])


def layer_names(model, layers) -> list:
    """A name per layer of ``model`` that :func:`resolve_layer` takes back: its own name, or where
    another of the model's layers has it too (nested models may repeat names), its path
    (:func:`qualified_name`; a top-level layer's path is its name)."""
    counts: dict = {}
    for layer in {id(layer): layer for layer in model.layers + all_layers(model)}.values():
        counts[layer.name] = counts.get(layer.name, 0) + 1
    return [qualified_name(model, layer) if counts[layer.name] > 1 else layer.name for layer in layers]


def _holder(model, layer) -> str:
    """Which model holds ``layer``: ``model 'outer'`` or ``nested model 'backbone'``."""
    chain = nesting(model, layer) or []
    return f"nested model {chain[-1].name!r}" if chain else f"model {model.name!r}"


def check_channels_last(layer):
    """Return ``layer`` if its spatial axes come before its channels (``data_format``
    ``"channels_last"``, or no ``data_format`` at all).

    Every analysis reads the last axis as the filters and axes 1, 2 as (y, x); on a
    channels_first layer they would silently pick the wrong units.

    Raises:
        UserError: ``layer`` is channels_first.
    """
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        raise UserError(f"layer {layer.name!r} is channels_first; only channels_last layers can be analysed")
    return layer


def is_whole_number(value) -> bool:
    """Whether ``value`` is a Python or numpy integer, and not a bool (``True`` is no count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_batch_size(batch_size) -> int:
    """Return ``batch_size`` as an int if it is a positive integer (not a bool).

    Raises:
        UserError: 0, negative, a float, a bool or not a number.
    """
    if not is_whole_number(batch_size) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def graph_nodes(model) -> list:
    """The nodes (layer calls) of ``model``'s own graph, nested models' insides not included:
    built once per model."""
    def build():
        graph = keras.Function(model.inputs, model.outputs)
        return [node for depth in graph._nodes_by_depth.values() for node in depth]

    return _compiled(model, ("graph nodes",), build)


def layer_output(model, layer):
    """The symbolic output tensor of ``layer`` in the graph that holds it: ``model``'s own, or that
    of the model nested in it that the layer belongs to.

    That is the layer's call in this graph, not ``layer.output``, which is its first call
    anywhere: a layer taken from another model, or one of a Sequential model rebuilt by
    ``add()``, has calls outside this graph.

    Raises:
        UserError: ``layer`` is not part of ``model``, is called more than once in its graph (a
            shared layer: which call would be meant?), or has several outputs.
    """
    chain = nesting(model, layer)
    if chain is None:
        raise UserError(f"layer {layer.name!r} is not part of model {model.name!r}")
    graph = chain[-1] if chain else model
    calls = [node for node in graph_nodes(graph) if node.operation is layer]
    if len(calls) != 1:
        raise UserError(
            f"layer {layer.name!r} is called {len(calls)} times in model {graph.name!r}; only a layer "
            "called once has one output to analyse (give each call a layer of its own)"
        )
    if len(calls[0].output_tensors) != 1:
        raise UserError(f"layer {layer.name!r} has {len(calls[0].output_tensors)} outputs; "
                        "only a layer with one output can be analysed")
    return calls[0].output_tensors[0]


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
        UserError: none given, non-integer, wrong length or out of range ``[0, channels)``.
    """
    n = num_channels(model, layer)
    array = np.asarray(filters)
    if array.ndim == 1 and array.size == 0:
        raise UserError(f"give at least one filter index for layer {layer.name!r}, got none")
    if array.dtype.kind not in "iu":
        raise UserError(f"filter indices must be integers, got {filters!r}")
    if array.ndim > 1 or (array.ndim == 1 and count is not None and len(array) != count):
        if count is None:
            raise UserError(f"filter indices must be one int or a flat list of ints, got shape {array.shape}")
        raise UserError(f"give one filter index or one per state ({count}), got shape {array.shape}")
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
        UserError: the shape does not match the model input, a non-numeric dtype, no states,
            or NaN / infinite values (whose gradients come out as silent all-zero maps).
    """
    check_model(model)
    expected = input_shape(model)
    if isinstance(states, dict):
        raise UserError(f"states must be one array (N, {', '.join(str(e) for e in expected)}), not a dict: "
                        "pass the image array itself")
    try:
        array = np.asarray(states)
    except ValueError:  # a list of states of different shapes
        raise UserError(f"states must be one array (N, {', '.join(str(e) for e in expected)}); the ones given "
                        "differ in shape") from None
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
    if None in expected:  # a model of any image size: the states' size must leave every layer some pixels
        _check_fits(model, array.shape[1:])
    if array.dtype.kind == "f":
        bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        if bad:
            raise UserError(f"states hold {bad} NaN or infinite values; the analyses need finite inputs")
    return array, single


def _check_fits(model, shape) -> None:
    """Make sure a model taking images of any size can take images of ``shape`` (H, W, C): none
    empty, and none so small that a layer's output would have no pixels. Asked of the model's
    graph once per size (Keras's output shapes, no computation).

    Raises:
        UserError: the images are empty or too small for the model.
    """
    if 0 in shape:
        raise UserError(f"states of shape {shape} have no pixels")

    def fits():
        try:
            model.compute_output_spec(keras.KerasTensor((1, *shape)))
        except ValueError as error:  # "Computed output size would be zero or negative ..."
            reason = str(error).split(". ")[0].split("\n")[0]
            return (f"states of {shape[0]}×{shape[1]} pixels are too small for model {model.name!r}: "
                    f"{reason[:1].lower()}{reason[1:]} (Keras, for a layer's output)")
        return ""

    why = _compiled(model, ("fits", tuple(int(n) for n in shape)), fits)
    if why:
        raise UserError(why)


def score_count(model, reader: str) -> int:
    """How many scores the model's one ``(N, scores)`` output holds (Q-values, class scores).

    Raises:
        UserError: several outputs (naming each, with the line that keeps one), or one of
            another rank; ``reader`` names who needs it (``"saliency"``, ``"nvis_report"``).
    """
    outputs = model.outputs
    if len(outputs) == 1 and len(outputs[0].shape) == 2 and outputs[0].shape[-1] is not None:
        return int(outputs[0].shape[-1])
    if len(outputs) == 1:
        raise UserError(f"{reader} reads the model's output as one score per output unit, (N, outputs); "
                        f"{model.name!r} outputs {tuple(outputs[0].shape)}")
    named = ", ".join(f"{i}: {name} {tuple(o.shape)}" for i, (name, o) in enumerate(zip(model.output_names, outputs)))
    raise UserError(f"{reader} reads one (N, outputs) output as scores; {model.name!r} has {len(outputs)} "
                    f"({named}): pass keras.Model(model.input, model.outputs[0]) or another of them")


def softmax_output(model):
    """The top-level operation whose output is the model's softmax output, or None.

    That is a ``Softmax`` layer, an ``Activation("softmax")`` or a ``Dense(..., activation="softmax")``
    producing the model's single output: a classifier's probabilities rather than scores. The
    softmax may be written any way that computes one (``keras.ops.softmax``, ``tf.nn.softmax``,
    in a ``Lambda`` layer too: :func:`~dqnviz.analysis.relu.acts_as_softmax`).
    """
    outputs = model.outputs
    if len(outputs) != 1:
        return None
    operation = outputs[0]._keras_history[0]
    if isinstance(operation, keras.layers.Softmax):
        return operation
    if isinstance(operation, (keras.layers.Activation, keras.layers.Dense)):
        return operation if acts_as_softmax(operation.activation) else None
    if isinstance(operation, keras.layers.Lambda) and not getattr(operation, "arguments", None):
        return operation if acts_as_softmax(operation.function) else None
    return None


def _pre_softmax(operation):
    """``operation`` (from :func:`softmax_output`) without its softmax: ``z`` for ``softmax(z)``."""
    if isinstance(operation, keras.layers.Dense):
        def logits(x, *args, **kwargs):
            z = ops.matmul(x, operation.kernel)
            return ops.add(z, operation.bias) if operation.use_bias else z

        return logits
    return lambda x, *args, **kwargs: x


def _callers_level() -> int:
    """The ``stacklevel`` of a warning raised here that names the first frame outside dqnviz and
    the frameworks it runs in (Keras, JAX, TensorFlow): the user's call, not dqnviz's internals."""
    import os
    import sys

    inside = tuple(os.path.dirname(os.path.dirname(module.__file__)) + os.sep
                   for module in (sys.modules["dqnviz"], sys.modules["keras"]))
    frameworks = tuple(f"{os.sep}{name}{os.sep}" for name in ("dqnviz", "keras", "jax", "jaxlib", "tensorflow"))
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith(inside) and
                                 any(part in frame.f_code.co_filename for part in frameworks)):
        frame, level = frame.f_back, level + 1
    return level


def _call_operation(operation, guided, logits_of=None):
    """Wrap one graph operation: inference mode, nested models run on float inputs through their
    own graph, the guided rule after rectifier outputs, and ``logits_of`` without its softmax."""
    if logits_of is not None and operation is logits_of:
        return _pre_softmax(operation)
    nested = None
    if isinstance(operation, keras.Model) and has_graph(operation):  # a subclassed one is called as it is
        try:
            nested = graph_runner(operation, None, guided=guided)
        except UserError:
            nested = None

    if guided and nested is None and runs_own_code(operation) and not is_relu_output(operation):
        warnings.warn(
            f"layer {operation.name!r} ({type(operation).__name__}) runs code of its own: a rectifier inside its "
            "call() keeps its plain derivative there, not guided backprop's rule (a ReLU layer or activation= "
            "outside it gets the rule)", UnguidedCodeWarning, stacklevel=_callers_level())

    def call(*args, **kwargs):
        if nested is not None and len(args) == 1 and set(kwargs) <= {"training", "mask"}:
            return nested(args[0])
        if "training" in getattr(operation, "_call_context_args", ()):
            kwargs["training"] = False
        outputs = operation(*args, **kwargs)
        if guided and is_relu_output(operation):
            outputs = positive_gradient(outputs)
        return outputs

    return call


def graph_runner(model, output=None, guided=False, logits=False):
    """A function ``x -> tensor`` running ``model``'s layers on a float input.

    Args:
        model: a built single-input Keras model (functional or Sequential).
        output: a symbolic tensor to stop at (e.g. ``layer.output``), of the model's graph or of
            a model nested in it; a list of tensors of the model's own graph, computed in one
            pass; None for the model's output.
        guided: apply the guided-ReLU backward rule after every rectifier (see :mod:`.relu`).
        logits: when the model's output is a softmax (:func:`softmax_output`), return its
            input ``z`` instead of ``softmax(z)``; only with ``output`` None.

    Returns:
        ``run(x)`` taking a float32 tensor ``(N, H, W, C)`` and returning the tensor at
        ``output`` (a list of tensors for a list), computed in inference mode (BatchNormalization with its moving statistics,
        Dropout off) with the model's current weights. Nothing is cast to the Input's dtype.

    Raises:
        UserError: ``output`` is not in the model, or inside a nested model called several times
            (or, in a list, inside a nested model at all).
    """
    if isinstance(output, (list, tuple)):
        output = list(output)
        for tensor in output:
            if nesting(model, tensor._keras_history[0]) != []:
                raise UserError(f"tensor {tensor.name!r} is not an output of a layer of model {model.name!r} "
                                "itself (one pass computes several outputs only of the model's own layers)")
    elif output is not None:
        chain = nesting(model, output._keras_history[0])
        if chain is None:
            raise UserError(f"tensor {output.name!r} is not part of model {model.name!r}")
        if chain:
            into_nested = graph_runner(model, nested_input(model, chain[0]), guided)
            inside = graph_runner(chain[0], output, guided)
            return lambda x: inside(into_nested(x))
    inputs = model.inputs
    if output is None:
        outputs = model.outputs
        output = outputs[0] if len(outputs) == 1 else outputs
    if not isinstance(output, list) and output is inputs[0]:
        return lambda x: x
    function = keras.Function(inputs, output)
    logits_of = softmax_output(model) if logits else None
    wrapped = {}  # id(operation) -> its wrapper, so nested models' graphs are mapped once

    def operation_fn(operation):
        if id(operation) not in wrapped:
            wrapped[id(operation)] = _call_operation(operation, guided, logits_of)
        return wrapped[id(operation)]

    def run(x):
        # ``_run_through_graph`` is what Functional.call uses after casting the inputs; calling it
        # directly keeps float inputs float. It is stable across Keras 3 releases.
        return function._run_through_graph([x], operation_fn=operation_fn)

    return run


def _compiled(model, key, build):
    """``build()`` once per ``(model, key)``, kept in a dict in the model's ``__dict__`` (set
    directly, so Keras does not track it) so that it lives and dies with the model.

    ``key`` names what was built; it holds the model's current output tensor, so a Sequential
    model that gets a new layer gets new functions.
    """
    cache = vars(model).setdefault("_dqnviz_compiled", {})
    key = (id(model.outputs[0]),) + key
    if key not in cache:
        cache[key] = (model.outputs[0], build())  # the tensor is kept so that its id stays unique
    return cache[key][1]


# Compiling a pass costs time in proportion to its operations, once per model and layer; running it
# op by op costs per call. For a DQN (11 operations in all) compiling wins at once: nvis took 13-16 s
# instead of 21 under JAX. A deep model's layer L compiles its L-operation prefix, so all layers
# cost O(L²): nvis_report of MobileNetV2 (152 operations; 5 images, 8 filters of each of its 52
# conv layers) took 115 s op by op, 205 s all compiled, 128 s compiling passes of up to 32
# operations and 117 s up to 16. Passes of more operations than this run op by op.
MAX_COMPILED_OPERATIONS = 16


def graph_size(model, output=None) -> int:
    """The operations between the model's input and ``output`` (None: its outputs), a nested
    model's layers counted one by one; for an ``output`` inside a nested model, all the model's."""
    try:
        operations = keras.Function(model.inputs, model.outputs if output is None else output).operations
    except (ValueError, KeyError, AttributeError):
        return len(all_layers(model))
    return sum(len(all_layers(op)) if isinstance(op, keras.Model) else 1 for op in operations)


def forget_compiled(model) -> None:
    """Drop the functions :func:`_compiled` built for ``model`` (and with them their compiled
    programs), for a caller that is done with some analyses but still needs the model: ``dqnviz
    compare`` of many snapshots, where each network's guided-backprop, receptive-field and search
    programs (about 27 MB a Nature network under JAX) would otherwise stay until the network is let
    go, after the CKA of the pairs it is in."""
    vars(model).pop("_dqnviz_compiled", None)


def compiled_runner(model, output=None, guided=False, logits=False):
    """:func:`graph_runner` as ``x (N, H, W, C) float32 -> numpy``, compiled once per model and
    arguments (:func:`dqnviz.backend.compile_forward`) when it has at most
    :data:`MAX_COMPILED_OPERATIONS` operations, else run op by op."""

    def build():
        run = graph_runner(model, output, guided, logits)
        if graph_size(model, output) <= MAX_COMPILED_OPERATIONS:
            return compile_forward(model, run)
        return lambda x: to_numpy(run(to_float_tensor(x)))

    return _compiled(model, ("forward", _tensor_key(output), guided, logits), build)


def _tensor_key(output):
    """What names ``output`` (None, a symbolic tensor, or a list of them) in a cache key."""
    if output is None:
        return None
    if isinstance(output, (list, tuple)):
        return tuple(id(tensor) for tensor in output)
    return id(output)


def compiled_gradient(model, key, make_target, output=None):
    """``make_target() -> target(x, *args) -> (N,) values`` as ``call(x, *args) -> (values, d Σ
    values / dx)``, built once per model and ``key`` (which must name everything ``target`` closes
    over), compiled (:func:`dqnviz.backend.compile_input_gradient`) when the graph up to ``output``
    (None: the model's outputs) has at most :data:`MAX_COMPILED_OPERATIONS` operations, else run
    op by op."""

    def build():
        target = make_target()
        if graph_size(model, output) <= MAX_COMPILED_OPERATIONS:
            return compile_input_gradient(model, target)
        return lambda x, *args: input_gradient(lambda t: target(t, *(ops.convert_to_tensor(a) for a in args)), x)

    return _compiled(model, ("gradient",) + tuple(key), build)


def to_float_tensor(x):
    """A float32 backend tensor from a numpy array."""
    return ops.convert_to_tensor(np.asarray(x, dtype=np.float32))


def to_numpy(outputs):
    """A tensor as a numpy array, a list or tuple of tensors as a tuple of them."""
    if isinstance(outputs, (list, tuple)):
        return tuple(ops.convert_to_numpy(output) for output in outputs)
    return ops.convert_to_numpy(outputs)


def predict(run, states, batch_size=256):
    """Apply ``run`` (from :func:`compiled_runner`, or :func:`graph_runner`) to float32 ``states``
    in batches; numpy out (a tuple of arrays when ``run`` returns several tensors)."""
    batches = [to_numpy(run(to_float_tensor(states[start:start + batch_size])))
               for start in range(0, len(states), batch_size)]
    if isinstance(batches[0], tuple):
        return tuple(np.concatenate(parts, axis=0) for parts in zip(*batches))
    return np.concatenate(batches, axis=0)
