"""Recognising ReLUs in a Keras model and the guided-ReLU backward rule.

Guided backpropagation (Springenberg et al., 2014) changes the backward pass of every ReLU
``y = max(x, 0)`` to

    dL/dx = g · [x > 0] · [g > 0],        g = dL/dy (the incoming gradient).

The ordinary ReLU backward pass already multiplies by ``[x > 0]``, so the guided rule is obtained
without touching the model: we put an identity op after each ReLU output whose backward pass is
``g -> max(g, 0)`` (:func:`positive_gradient`). Because ``y > 0 <=> x > 0`` the product of the two
backward rules is exactly the guided one, both for a ReLU fused into a layer
(``Conv2D(..., activation="relu")``) and for a separate ``ReLU()`` / ``Activation("relu")`` layer.
The user's model is never modified.

Other rectifiers get the same clamp, so their backward pass becomes ``dL/dx = f'(x) · max(g, 0)``
with their own derivative ``f'``: for ReLU6 / ``ReLU(max_value=m)`` / ``activation="relu6"``
that is ``g · [0 < x < m] · [g > 0]`` (a saturated unit passes nothing back, as a dead one), for
``LeakyReLU`` (slope α) and ``ReLU(negative_slope=α)`` it is ``max(g, 0) · (1 if x > 0 else α)``.
Smooth activations (swish, GELU, ELU, tanh, ...) are not rectifiers and keep their ordinary
derivative; a model without any rectifier gets plain gradients from guided backprop.

A rectifier is recognised however it is written: Keras' own (``"relu"``, ``ReLU()``, …) by what
it is, and any other activation function (``keras.ops.relu``, ``tf.nn.relu``, ``jax.nn.relu``, a
lambda; fused, in ``Activation`` or in a ``Lambda`` layer) by what it computes
(:func:`acts_as_rectifier`). A rectifier called inside the ``call()`` of a custom layer or of a
subclassed model is out of reach: it keeps its plain derivative, and guided backprop says so in an
:class:`UnguidedCodeWarning` naming the layer.
"""

import keras
import numpy as np
from keras import ops

# Layers whose ``call`` ends with ``self.activation(outputs)``: a fused ReLU is their output.
_FUSED_ACTIVATION_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv2DTranspose,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Dense,
    keras.layers.Activation,
)


# Piecewise-linear rectifiers that the guided rule applies to, as fused activations.
_RECTIFIERS = (keras.activations.relu, keras.activations.relu6, keras.activations.leaky_relu)

# Where a function's values are read to tell what it computes (float32 holds each exactly).
_PROBE = np.array([-1e4, -100.0, -7.0, -3.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 100.0, 1e4],
                  np.float32)
_PROBE_ROWS = np.array([[1.0, 2.0, 3.0, -1.0], [0.0, 0.0, 5.0, -2.0], [-3.0, 0.5, 0.25, 8.0]], np.float32)
_probed: dict = {}  # (function, kind) -> what it computes, read once per function


def _keras_activation(function) -> bool:
    """Whether ``function`` is one of ``keras.activations``' (which are known by what they are)."""
    return getattr(function, "__module__", "").startswith("keras.src.activations")


def _values(function, probe, dtype="float32"):
    """``function(probe)`` as float64 numpy, the probe given as ``dtype`` (a layer's compute
    dtype: float16 under mixed precision), computed at once (even while a model is being
    compiled), or None where it fails or changes the shape."""
    from dqnviz import backend

    try:
        values = backend.eagerly(lambda: ops.convert_to_numpy(function(ops.convert_to_tensor(probe, dtype=dtype))))
    except Exception:  # a function of other inputs (a shape, a dtype): no activation of these
        return None
    values = np.asarray(values, np.float64)
    return values if values.shape == probe.shape and np.all(np.isfinite(values)) else None


def _tolerance(dtype) -> float:
    return 1e-3 if "16" in str(dtype) else 1e-5


def _computes_rectifier(function, dtype="float32") -> bool:
    """Whether ``f(x) = min(x, m)`` for x > 0 (m ≥ 1, or none) and ``α·x`` for x ≤ 0 (0 ≤ α < 1)
    on :data:`_PROBE`: ReLU (α = 0, no cap), ReLU6 (m = 6), leaky ReLU (α)."""
    y = _values(function, _PROBE, dtype)
    if y is None:
        return False
    alpha = -y[_PROBE == -1.0][0]
    cap = y[-1] if y[-1] < _PROBE[-1] else np.inf
    if not (0.0 <= alpha < 1.0 and cap >= 1.0):
        return False
    expected = np.where(_PROBE > 0, np.minimum(_PROBE, cap), alpha * _PROBE)
    return bool(np.allclose(y, expected, rtol=_tolerance(dtype), atol=_tolerance(dtype) / 10))


def _computes_softmax(function, dtype="float32") -> bool:
    """Whether ``f(z) = exp(z) / Σ exp(z)`` over the last axis on :data:`_PROBE_ROWS`."""
    y = _values(function, _PROBE_ROWS, dtype)
    if y is None:
        return False
    z = _PROBE_ROWS.astype(np.float64)
    expected = np.exp(z - z.max(-1, keepdims=True))
    tolerance = _tolerance(dtype)
    return bool(np.allclose(y, expected / expected.sum(-1, keepdims=True), rtol=tolerance, atol=tolerance / 10))


def _probe(function, kind: str, dtype="float32", key=None) -> bool:
    """``_computes_<kind>(function)``, read once per ``key`` (default: the function; a Lambda
    layer with arguments gives the layer), kind and dtype. A function is taken to compute the same
    each time it is called, as a model's activation does."""
    try:
        key = (function if key is None else key, kind, str(dtype))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _probed:
        return _probed[key]
    found = (_computes_rectifier if kind == "rectifier" else _computes_softmax)(function, dtype)
    if key is not None:
        _probed[key] = found
    return found


def _activation_function(operation):
    """``(function, key)``: the function whose output is ``operation``'s (a fused or
    ``Activation`` layer's activation, a ``Lambda`` layer's function with its arguments), and what
    its probe is kept under; ``(None, None)`` for other operations."""
    if isinstance(operation, _FUSED_ACTIVATION_LAYERS):
        function = getattr(operation, "activation", None)
        return function, function
    if isinstance(operation, keras.layers.Lambda) and callable(getattr(operation, "function", None)):
        arguments = getattr(operation, "arguments", None) or {}
        if not arguments:
            return operation.function, operation.function
        return (lambda x: operation.function(x, **arguments)), operation
    return None, None


def acts_as_rectifier(function, dtype="float32", key=None) -> bool:
    """Whether the activation ``function`` is a rectifier: Keras' ``relu``, ``relu6`` and
    ``leaky_relu``, or any other function (not one of ``keras.activations``') that computes
    ``min(x, m)`` for x > 0 and ``α·x`` below (0 ≤ α < 1, m ≥ 1 or none) on a probe vector:
    ``keras.ops.relu``, ``tf.nn.relu``, ``jax.nn.relu``, ``lambda t: keras.activations.relu(t)``."""
    if function is None:
        return False
    if any(function is f for f in _RECTIFIERS):
        return True
    return not _keras_activation(function) and _probe(function, "rectifier", dtype, key)


def acts_as_softmax(function) -> bool:
    """Whether the activation ``function`` is a softmax over the last axis: Keras' own, or another
    function that computes one on a probe (``keras.ops.softmax``, ``tf.nn.softmax``, …)."""
    if function is None:
        return False
    if function is keras.activations.softmax:
        return True
    return not _keras_activation(function) and _probe(function, "softmax")


def is_relu_output(operation) -> bool:
    """Whether the output of ``operation`` is a rectifier (ReLU, capped or leaky) of something.

    Args:
        operation: a node's operation in a Keras functional graph (usually a layer).

    Returns:
        True for ``keras.layers.ReLU`` with any arguments (``max_value``, ``negative_slope``,
        ``threshold``: ReLU6 included), ``keras.layers.LeakyReLU``, ``Activation("relu")``,
        ``Activation("relu6")``, ``Activation("leaky_relu")`` and layers with one of these fused
        (``Conv2D(..., activation="relu6")``, Dense, DepthwiseConv2D, ...), and for fused,
        ``Activation`` and ``Lambda`` layers whose function computes a rectifier however it is
        written (:func:`acts_as_rectifier`). False otherwise, e.g. for smooth activations (swish,
        GELU) and PReLU, whose learned slope may be anything.
    """
    if isinstance(operation, (keras.layers.ReLU, keras.layers.LeakyReLU)):
        return True
    function, key = _activation_function(operation)
    return acts_as_rectifier(function, getattr(operation, "compute_dtype", None) or "float32", key)


class UnguidedCodeWarning(UserWarning):
    """Guided backprop went through a layer whose own code it cannot see into (a custom layer, a
    subclassed model, a ``Lambda`` that is not itself a rectifier): a rectifier inside its
    ``call()`` keeps its plain derivative there, not the guided rule (:func:`runs_own_code`)."""


def runs_own_code(operation) -> bool:
    """Whether ``operation`` computes with code of its own that the guided rule cannot reach: a
    layer class from outside Keras, a subclassed ``keras.Model`` (no layer graph), or a ``Lambda``
    layer; a functional or Sequential model is walked through, so it does not count."""
    if isinstance(operation, keras.layers.InputLayer):
        return False
    if isinstance(operation, keras.Model):
        try:
            return not operation.inputs
        except (AttributeError, ValueError):
            return True
    return isinstance(operation, keras.layers.Lambda) or not type(operation).__module__.startswith("keras.")


@ops.custom_gradient
def positive_gradient(x):
    """Identity in the forward pass; lets only positive gradients through backwards.

    Forward: ``y = x``. Backward: ``dL/dx = max(dL/dy, 0)``.

    Args:
        x: any float tensor.

    Returns:
        ``x`` unchanged (with the custom backward rule attached).
    """

    def grad(*args, upstream=None):
        if upstream is None:  # TensorFlow passes the upstream gradient positionally.
            (upstream,) = args
        return ops.relu(upstream)

    return ops.multiply(x, 1.0), grad
