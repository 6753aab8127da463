"""Theoretical and effective receptive fields of convolutional layers."""

import keras
import numpy as np
from keras import ops

from dqnviz.analysis._model import (
    as_batch,
    has_graph,
    check_batch_size,
    check_channels_last,
    compiled_gradient,
    conv_layer_objects,
    graph_runner,
    layer_output,
    nested_input,
    nesting,
    resolve_layer,
)
from dqnviz.errors import UserError


class _Field:
    """Receptive-field geometry of a tensor, per spatial axis (y, x).

    ``size``: side of one unit's receptive field in input pixels; ``stride``: input pixels
    between neighbouring units (the "jump"); ``start``: input pixel coordinate of the centre of
    unit 0's receptive field; ``spatial``: the tensor's (H, W), an axis None where the model
    takes images of any size and no states fixed it. ``size`` is None once the spatial
    structure is lost (Flatten, Dense, global pooling).
    """

    def __init__(self, size, stride, start, spatial):
        self.size, self.stride, self.start, self.spatial = size, stride, start, spatial


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _apply_window(field, layer, output_spatial):
    """``r' = r + (k_eff − 1)·j``, ``j' = j·s``, ``start' = start + ((k_eff − 1)/2 − pad)·j``.

    An output axis of unknown size (variable-size model) gets ``⌈n/s⌉`` ("same") or
    ``⌊(n − k_eff)/s⌋ + 1`` ("valid") from the input's size ``n`` when that is known.
    """
    kernel = _pair(getattr(layer, "kernel_size", None) or getattr(layer, "pool_size"))
    strides = _pair(layer.strides if layer.strides is not None else kernel)
    dilation = _pair(getattr(layer, "dilation_rate", 1))
    size, stride, start, spatial = [], [], [], []
    for axis in range(2):
        k = dilation[axis] * (kernel[axis] - 1) + 1
        s, j, n_in = strides[axis], field.stride[axis], field.spatial[axis]
        pad, n_out = 0, output_spatial[axis]
        if n_in is not None and n_out is None:
            n_out = -(-n_in // s) if layer.padding == "same" else (n_in - k) // s + 1
        if layer.padding == "same" and n_in is not None:
            pad = max((n_out - 1) * s + k - n_in, 0) // 2
        size.append(field.size[axis] + (k - 1) * j)
        stride.append(j * s)
        start.append(field.start[axis] + ((k - 1) / 2 - pad) * j)
        spatial.append(n_out)
    return _Field(tuple(size), tuple(stride), tuple(start), tuple(spatial))


def _edges(value):
    """``((top, bottom), (left, right))`` from a ZeroPadding2D ``padding`` / Cropping2D ``cropping``."""
    if isinstance(value, int):
        return ((value, value), (value, value))
    return tuple(_pair(edge) for edge in value)


def _shift(field, output_spatial, edges, sign):
    """``start' = start − added·j``: a border of ``added = sign·before`` pixels (sign −1: cropped)
    before unit 0, for ``edges`` ``((top, bottom), (left, right))``. An output axis of unknown
    size gets ``n + sign·(before + after)``."""
    start = tuple(field.start[a] - sign * edges[a][0] * field.stride[a] for a in range(2))
    spatial = tuple(
        n_out if n_out is not None or n_in is None else n_in + sign * sum(edge)
        for n_out, n_in, edge in zip(output_spatial, field.spatial, edges)
    )
    return _Field(field.size, field.stride, start, spatial)


def _same_size(operation, node, parents, spatial):
    """The spatial size of a layer's output that keeps its input's size, or None if it does not.

    ``spatial`` is the output's static size; where the model takes images of any size, the size
    for the states' images is asked of the layer (``compute_output_shape`` on the inputs' sizes).
    """
    parent = max(parents, key=lambda p: p.size)
    if None not in spatial or None in parent.spatial:
        return spatial if spatial == parent.spatial else None
    shapes = [
        (1,) + tuple(field.spatial) + tuple(tensor.shape[3:])
        for tensor, field in zip(node.input_tensors, parents)
    ]
    try:
        shape = operation.compute_output_shape(shapes[0] if len(shapes) == 1 else shapes)
    except Exception:  # a layer that cannot say: the walk cannot know the size either
        return None
    concrete = tuple(shape[1:3]) if len(shape) == 4 else None
    return concrete if concrete == parent.spatial else None


_GLOBAL_POOLING = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)

# Layers known to compute each output pixel from the same pixel of their inputs (normalisations
# by convention: the statistics they divide by are not counted as part of a field). Where several
# branches meet in a keras.ops operation (``x + y`` on symbolic tensors), the field is the union of
# the branches' (:func:`_union`), as for Add; another layer of several inputs (MultiHeadAttention,
# a custom merge) is refused. Any other layer or keras.ops operation of one input that
# keeps the spatial size (a Lambda, a custom layer, a subclassed model, ``ops.roll``) has its reach
# measured by :func:`_measured_reach`.
_POINTWISE = tuple(getattr(keras.layers, name) for name in (
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "BatchNormalization", "LayerNormalization",
    "UnitNormalization", "GroupNormalization", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "ActivityRegularization", "Rescaling", "Normalization", "Add", "Subtract", "Multiply",
    "Average", "Maximum", "Minimum", "Concatenate", "Dense", "Identity", "Masking",
) if hasattr(keras.layers, name))

_PROBES = 8  # random inputs whose gradients' support, together, is a layer's measured reach
_PROBE_SIDES = (33, 65, 129)  # tried in turn for an axis of unknown size, until the reach fits


def _union(parents):
    """The field where branches meet pixel by pixel (Add, Concatenate, ``x + y``): the input pixels
    any branch's unit sees, ``[min(start − (r − 1)/2), max(start + (r − 1)/2)]`` per axis over the
    branches (so a branch shifted against another widens it); branches of different strides get
    the largest field."""
    if len(parents) == 1:
        (parent,) = parents
        return _Field(parent.size, parent.stride, parent.start, parent.spatial)
    largest = max(parents, key=lambda p: p.size)
    if len({p.stride for p in parents}) != 1:
        return _Field(largest.size, largest.stride, largest.start, largest.spatial)
    size, start = [], []
    for a in range(2):
        low = min(p.start[a] - (p.size[a] - 1) / 2 for p in parents)
        high = max(p.start[a] + (p.size[a] - 1) / 2 for p in parents)
        size.append(int(round(high - low + 1)))
        start.append((low + high) / 2)
    return _Field(tuple(size), largest.stride, tuple(start), largest.spatial)


def _measured_reach(operation, node, output_index, spatial):
    """The reach of a layer or operation whose code the walk cannot read (a Lambda, a custom layer,
    a subclassed model, a keras.ops call on a symbolic tensor) and that keeps the spatial size:
    ``((k_y, k_x), (o_y, o_x))``, the extent of the input pixels its centre output pixel
    ``(c_y, c_x) = (H // 2, W // 2)`` depends on, and the offset of that extent's centre from
    ``(c_y, c_x)``. It is the support of

        G(i, j) = Σ_probes Σ_ch | d Σ_f out[c_y, c_x, f] / d in[i, j, ch] |

    over 8 random normal inputs (fixed seed) of the layer's input size (``spatial``; where an axis
    is unknown, 33, then 65, then 129 pixels until the support stops short of the border), the call
    replayed as the graph makes it (its other arguments kept) in inference mode (``training=False``:
    no augmentation), taken as a window of side ``k`` and stride 1. It is measured with the current
    weights: a pixel whose every path to the centre is cut on all probes (a ReLU closed each time,
    a zero-initialised branch) is missed, and a layer that reads the whole image gets ``k = H``.

    Raises:
        UserError: the call fails on the probes, or, at an unknown size, the layer reads the whole
            image (no size of the field to give: the states' size fixes it).
    """
    from dqnviz.backend import input_gradient

    (tensor,) = node.input_tensors
    channels = int(tensor.shape[-1])
    rng = np.random.default_rng(0)
    options = {"training": False} if "training" in getattr(operation, "_call_context_args", ()) else {}

    def centre_sum(x, centre):
        args, kwargs = node.arguments.fill_in({id(tensor): x})
        out = operation(*args, **{**kwargs, **options})
        if isinstance(out, (list, tuple)):
            out = out[output_index]
        return ops.sum(ops.cast(out[:, centre[0], centre[1], :], "float32"), axis=-1)

    for side in _PROBE_SIDES:
        shape = tuple(n if n is not None else side for n in spatial)
        centre = (shape[0] // 2, shape[1] // 2)
        probes = rng.standard_normal((_PROBES, *shape, channels)).astype(np.float32)
        try:
            _, gradient = input_gradient(lambda x: centre_sum(x, centre), probes)
        except Exception as error:  # the layer's own code failed on the probes
            raise UserError(
                f"cannot compute a receptive field through layer {operation.name!r} ({type(operation).__name__}), "
                f"whose reach is measured on random inputs and failed: {type(error).__name__}: {error}"
            ) from None
        support = np.abs(np.asarray(gradient, np.float64)).sum(axis=(0, 3)) > 0
        rows, cols = np.nonzero(support.any(axis=1))[0], np.nonzero(support.any(axis=0))[0]
        if not len(rows):  # the centre depends on no pixel: no reach to add
            return (1, 1), (0.0, 0.0)
        touches = [spatial[a] is None and (ends[0] == 0 or ends[-1] == shape[a] - 1)
                   for a, ends in enumerate((rows, cols))]
        if not any(touches):
            break
    else:
        raise UserError(
            f"layer {operation.name!r} ({type(operation).__name__}) reaches {_PROBE_SIDES[-1] // 2} pixels or more "
            f"from its centre (perhaps the whole image), too far to measure in a model of any image size: build the "
            "model for the images' size, or measure effective_receptive_field on states"
        )
    return ((int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)),
            (float((rows[0] + rows[-1]) / 2 - centre[0]), float((cols[0] + cols[-1]) / 2 - centre[1])))


def _weights_key(operation) -> tuple:
    """What a measured reach depends on besides the layer's structure: its weights (a zero branch
    has no reach), as a cheap fingerprint, so that new weights are measured again."""
    weights = getattr(operation, "weights", None) or []
    return tuple((id(w), float(ops.convert_to_numpy(ops.sum(ops.abs(ops.cast(w, "float32")))))) for w in weights)


def _through_opaque(parent, operation, node, output_index):
    """``parent``'s field after a layer of unread code that keeps the size: its measured reach
    ``k`` and offset ``o`` (:func:`_measured_reach`) applied as a window of stride 1,
    ``r' = r + (k − 1)·j``, ``start' = start + o·j``."""
    # kept on the layer, per input size and weights (the walk runs for every layer after it, and
    # nvis asks for each conv layer twice)
    key = (parent.spatial, id(node), output_index, _weights_key(operation))
    cache = vars(operation).setdefault("_dqnviz_reach", {})
    if key not in cache:
        while len(cache) >= 8:  # a few sizes and calls; the oldest (weights since changed) go
            del cache[next(iter(cache))]
        cache[key] = _measured_reach(operation, node, output_index, parent.spatial)
    reach, offset = cache[key]
    return _Field(
        tuple(parent.size[a] + (reach[a] - 1) * parent.stride[a] for a in range(2)),
        parent.stride,
        tuple(parent.start[a] + offset[a] * parent.stride[a] for a in range(2)),
        parent.spatial,
    )


def _field_of(tensor, memo, base=None):
    """Walk the graph back from ``tensor`` to the input, computing its :class:`_Field`.

    ``base`` is the field of the graph's input: None for the model's own input (one pixel, of
    the Input's size), one pixel of the states' size (:func:`_layer_field`), or the field of the
    tensor a nested model is called on when walking inside that model.
    """
    key = id(tensor)
    if key in memo:
        return memo[key]
    operation, node_index, _ = tensor._keras_history
    spatial = tuple(tensor.shape[1:3]) if len(tensor.shape) == 4 else None
    if isinstance(operation, keras.layers.InputLayer):
        field = base if base is not None else _Field((1, 1), (1, 1), (0.0, 0.0), spatial)
    elif spatial is None or isinstance(operation, _GLOBAL_POOLING):
        field = _Field(None, None, None, None)
    else:
        node = operation._inbound_nodes[node_index]
        parents = [_field_of(t, memo, base) for t in node.input_tensors]
        if not parents:
            raise UserError(f"cannot follow layer {operation.name!r} back to the model input")
        if any(p.size is None for p in parents):
            field = _Field(None, None, None, None)
        else:
            parent = max(parents, key=lambda p: p.size)
            check_channels_last(operation)
            if isinstance(operation, keras.layers.Conv2DTranspose):
                raise UserError(f"cannot compute a receptive field through Conv2DTranspose {operation.name!r}")
            if isinstance(operation, keras.Model) and has_graph(operation):
                if len(operation.outputs) != 1 or len(node.input_tensors) != 1:
                    raise UserError(f"cannot compute a receptive field through nested model {operation.name!r}, "
                                    "which has several inputs or outputs")
                field = _field_of(operation.outputs[0], {}, parent)
            elif isinstance(operation, keras.layers.ZeroPadding2D):
                field = _shift(parent, spatial, _edges(operation.padding), 1)
            elif isinstance(operation, keras.layers.Cropping2D):
                field = _shift(parent, spatial, _edges(operation.cropping), -1)
            elif hasattr(operation, "strides") and (
                hasattr(operation, "kernel_size") or hasattr(operation, "pool_size")
            ):
                field = _apply_window(parent, operation, spatial)
            elif _same_size(operation, node, parents, spatial) is not None:
                if isinstance(operation, _POINTWISE) or (
                        len(node.input_tensors) != 1 and not isinstance(operation, keras.layers.Layer)):
                    field = _union(parents)  # elementwise: x + y, ops.multiply(x, y)
                elif len(node.input_tensors) != 1:  # MultiHeadAttention(x, x), a custom merge: unmeasured
                    raise UserError(
                        f"cannot compute a receptive field through layer {operation.name!r} "
                        f"({type(operation).__name__}), code of its own with {len(node.input_tensors)} inputs")
                else:
                    field = _through_opaque(parent, operation, node, tensor._keras_history[2])
            else:
                raise UserError(
                    f"cannot compute a receptive field through layer {operation.name!r} "
                    f"({type(operation).__name__}), which changes the spatial size"
                )
    memo[key] = field
    return field


def _tensor_field(model, tensor, base=None):
    """The :class:`_Field` of a tensor of ``model``'s graph or of a graph nested in it."""
    chain = nesting(model, tensor._keras_history[0])
    if not chain:
        return _field_of(tensor, {}, base)
    outer_field = _tensor_field(model, nested_input(model, chain[0]), base)
    if outer_field.size is None:
        return outer_field
    return _tensor_field(chain[0], tensor, outer_field)


def _squash(pair):
    return pair[0] if pair[0] == pair[1] else tuple(pair)


def _layer_field(model, layer, spatial=None):
    """``layer`` resolved and its :class:`_Field`; ``spatial``: the (H, W) of the images fed to
    the model, which fixes the sizes of a model taking images of any size (None: as built)."""
    layer = resolve_layer(model, layer)
    base = None if spatial is None else _Field((1, 1), (1, 1), (0.0, 0.0), tuple(spatial))
    field = _tensor_field(model, layer_output(model, layer), base)
    if field.size is None:
        convs = ", ".join(l.name for l in conv_layer_objects(model))
        raise UserError(
            f"layer {layer.name!r} has no spatial axes, so its receptive field is the whole "
            f"input; choose a convolutional layer: {convs}"
        )
    return layer, field


def receptive_field(model, layer):
    """Theoretical receptive field of one unit of ``layer``, in input pixels.

    Walking from the input through the graph, each window layer with kernel ``k``
    (``k_eff = d·(k − 1) + 1`` with dilation ``d``) and stride ``s`` updates

        size_out = size_in + (k_eff − 1) · stride_in,     stride_out = stride_in · s

    starting from ``(1, 1)`` at the input. Window layers are Conv2D, DepthwiseConv2D,
    SeparableConv2D (its depthwise kernel; the pointwise 1×1 adds nothing) and the 2-D pooling
    layers, with ``padding="valid"`` or ``"same"`` alike: padding moves where a unit looks (the
    centre ``start`` used by :func:`effective_receptive_field`), not how far. ZeroPadding2D and
    Cropping2D shift that centre only; layers known to work pixel by pixel (Rescaling, ReLU,
    BatchNormalization, Dropout, Dense on the channels, ...) leave the field unchanged; where
    branches meet (``Add``, ``Concatenate``) the union of what each branch sees counts. Nested functional and
    Sequential models are walked through. A layer whose code the walk cannot read (a Lambda, a
    custom layer, a subclassed model, a keras.ops call on one symbolic tensor) and that keeps the
    spatial size counts as a window of stride 1 whose side is measured: the extent of the input
    pixels its centre output depends on, from its gradients on random inputs (:func:`_measured_reach`).
    For the Nature
    DQN: conv1 (8, 4), conv2 (20, 8), conv3 (36, 8).

    Args:
        model: a built Keras image model (channels last).
        layer: a layer name (or path, ``"backbone/conv1"``) or Layer object with a spatial
            (rank-4) output.

    Returns:
        ``(size, stride)``; each is an int when equal along y and x, else a ``(y, x)`` tuple.

    Raises:
        UserError: no Conv2D layers, unknown or channels_first layer, a layer without spatial
            axes (Flatten, Dense, global pooling), or a layer the walk cannot go through
            (Conv2DTranspose, UpSampling2D, Resizing, Reshape, channels_first layers, a layer
            reaching 64 pixels or more in a model of any image size, or a custom layer of
            several inputs).
    """
    _, field = _layer_field(model, layer)
    return _squash(field.size), _squash(field.stride)


def smallest_square(weight_map, centre, mass: float) -> tuple[int, float]:
    """The side of the smallest square centred on ``centre`` (input coordinates ``(y, x)``, whole
    or half pixels) that holds at least ``mass`` of the non-negative ``weight_map``'s sum, and the
    share it holds: ``(0, 0.0)`` for an all-zero map. A pixel at (i, j) lies in the square of side
    2·h + 1 when max(|i − cy|, |j − cx|) ≤ h, so the sides step by 2 (odd sides about a whole-pixel
    centre, even ones about a half-pixel centre)."""
    weight_map = np.asarray(weight_map, np.float64)
    rows = np.abs(np.arange(weight_map.shape[0])[:, None] - centre[0])
    cols = np.abs(np.arange(weight_map.shape[1])[None, :] - centre[1])
    half = np.maximum(rows, cols).ravel()  # a square of side 2·half + 1 holds this pixel
    weight = weight_map.ravel()
    if not weight.sum() > 0:
        return 0, 0.0
    order = np.argsort(half, kind="stable")
    sorted_half = half[order]
    cumulative = np.cumsum(weight[order]) / weight.sum()
    for level in np.unique(sorted_half):
        inside = cumulative[np.searchsorted(sorted_half, level, side="right") - 1]
        if inside >= mass - 1e-9:
            return int(round(2 * level + 1)), float(inside)
    return int(round(2 * sorted_half[-1] + 1)), 1.0


def effective_receptive_field(model, states, layer, mass=0.9, *, batch_size=128) -> dict:
    """Measure the effective receptive field (Luo et al., 2016) of ``layer``'s centre unit.

    With ``(cy, cx) = (H_l // 2, W_l // 2)`` the centre position of ``layer``'s output, the map is

        E(i, j) = mean_states Σ_c | d/ds[i, j, c] Σ_f A_layer(s)[cy, cx, f] |

    using plain gradients (ordinary ReLU derivatives, not guided backprop). ``size`` is the side
    of the smallest square centred on the centre unit's theoretical receptive-field centre
    (in input pixels) that holds at least ``mass`` of ``Σ E``; it never exceeds the
    theoretical field's larger side (for a field of 3 × 5 pixels, a square of side 5 at most). ``core`` is the same side for half the mass: with mass 0.9 a gradient
    spread evenly over the theoretical field already needs √0.9 ≈ 95% of its side, so ``size``
    alone barely tells a unit that listens to its field's centre from one that listens to all
    of it; ``core`` (√0.5 ≈ 71% for an even spread) does.

    A model taking images of any size (``keras.Input((None, None, C))``) is measured on the
    states' size: ``H_l``, ``W_l`` and the centre are those of the layer's output for them.

    Args:
        model: a built Keras image model.
        states: ``(N, H, W, C)`` states (or one state) to average over.
        layer: a conv layer name or Layer object.
        mass: fraction of the gradient mass the square must hold, a number in (0, 1].
        batch_size: states per forward+backward pass, a positive integer.

    Returns:
        dict with ``"size"`` (int; 0 if the gradient is zero everywhere), ``"core"`` (int: the
        side for half the mass, 0 likewise), ``"theoretical"``
        ``(size, stride)`` as :func:`receptive_field`, ``"map"`` (``(H, W)`` float32 map ``E``
        scaled to max 1), ``"centre"`` ``(y, x)`` input coordinates of the unit's receptive-field
        centre, ``"unit"`` ``(cy, cx)`` and ``"fraction"`` (the mass actually inside the square).

    Raises:
        UserError: as :func:`receptive_field`, states of the wrong shape or with NaN / infinite
            values, ``mass`` not a number in (0, 1], ``batch_size`` not a positive integer.
    """
    is_number = isinstance(mass, (int, float, np.integer, np.floating)) and not isinstance(mass, (bool, np.bool_))
    if not is_number or not 0 < mass <= 1:
        raise UserError(f"mass must be in (0, 1], a number like 0.9, got {mass!r}")
    batch_size = check_batch_size(batch_size)
    batch, _ = as_batch(model, states)
    layer, field = _layer_field(model, layer, batch.shape[1:3])
    output = layer_output(model, layer)
    unit = (field.spatial[0] // 2, field.spatial[1] // 2)
    centre = tuple(field.start[a] + unit[a] * field.stride[a] for a in range(2))

    def make_target():
        run = graph_runner(model, output)
        return lambda x: ops.sum(run(x)[:, unit[0], unit[1], :], axis=-1)

    target = compiled_gradient(model, ("centre unit", id(output), unit), make_target, output)
    total = np.zeros(batch.shape[1:3], dtype=np.float64)
    for start in range(0, len(batch), batch_size):
        _, gradient = target(batch[start:start + batch_size].astype(np.float32))
        total += np.abs(gradient).sum(axis=(0, 3))
    total /= len(batch)

    size, fraction = smallest_square(total, centre, mass)
    core, _ = smallest_square(total, centre, 0.5)
    peak = total.max()
    return {
        "size": size,
        "core": core,
        "theoretical": (_squash(field.size), _squash(field.stride)),
        "map": (total / peak if peak > 0 else total).astype(np.float32),
        "centre": centre,
        "unit": unit,
        "fraction": fraction,
    }
