"""Tiny deterministic Keras models for the analysis tests (built once per session and cached;
the analyses never modify them), plus an independent numpy reference.

The numpy reference (:func:`numpy_input_gradient`) runs the layers of a chain model with explicit
patch extraction / einsum in float64 and back-propagates by hand, with either the plain or the
guided ReLU rule. It reads only the weights from Keras.
"""

import functools

import keras
import numpy as np

SHAPE = (12, 12, 4)
ACTIONS = 3


@functools.lru_cache(maxsize=None)
def fused_uint8_model(seed=0):
    """Functional, uint8 input + Rescaling, ReLU fused into Conv2D/Dense (like the Nature DQN)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SHAPE, dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 4, strides=2, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(6, 3, strides=1, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(ACTIONS, name="q")(x)
    return keras.Model(inputs, outputs, name="fused")


@functools.lru_cache(maxsize=None)
def separate_float_model(seed=1):
    """Sequential, float input, ReLU as separate ReLU()/Activation("relu") layers."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Conv2D(4, 4, strides=2, name="conv1"),
            keras.layers.ReLU(),
            keras.layers.Conv2D(6, 3, name="conv2"),
            keras.layers.Activation("relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(8, name="fc"),
            keras.layers.ReLU(),
            keras.layers.Dense(ACTIONS, name="q"),
        ],
        name="separate",
    )


@functools.lru_cache(maxsize=None)
def nature_cnn(actions=4):
    """The Nature DQN network that dqnviz trains (uint8 input), so the tests see the real thing."""
    from dqnviz.network import build_q_network

    return build_q_network(actions, seed=0)


@functools.lru_cache(maxsize=None)
def region_model(seed=2):
    """Q depends only on the top-left 6x6 corner of a 12x12 image (Dense weights masked)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(ACTIONS, name="q")(x)
    model = keras.Model(inputs, outputs, name="region")
    kernel, bias = model.get_layer("q").get_weights()
    mask = np.zeros((12, 12, 3, 1), dtype=np.float32)
    mask[:6, :6] = 1
    model.get_layer("q").set_weights([kernel * mask.reshape(-1, 1), bias])
    return model


def random_states(n, seed=0, dtype="uint8"):
    """``n`` random states of shape SHAPE."""
    rng = np.random.default_rng(seed)
    states = rng.integers(0, 256, size=(n,) + SHAPE)
    return states.astype(dtype) if dtype == "uint8" else (states / 255.0).astype(dtype)


# --------------------------------------------------------------------------------------------
# Independent numpy reference (float64).


def _conv_forward(x, kernel, bias, stride):
    k = kernel.shape[0]
    patches = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
    patches = patches[:, ::stride, ::stride]  # (n, oh, ow, c, k, k)
    return np.einsum("nhwcij,ijcf->nhwf", patches, kernel) + bias


def _conv_backward(grad_out, kernel, stride, input_shape):
    k = kernel.shape[0]
    grad_in = np.zeros(input_shape)
    for h in range(grad_out.shape[1]):
        for w in range(grad_out.shape[2]):
            grad_in[:, h * stride:h * stride + k, w * stride:w * stride + k, :] += np.einsum(
                "nf,ijcf->nijc", grad_out[:, h, w, :], kernel
            )
    return grad_in


def _layer_steps(model):
    """The chain of (kind, params, fused_relu, name) steps of a tiny model, from its layers."""
    steps = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.Rescaling):
            steps.append(("scale", float(layer.scale), False))
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = (w.astype(np.float64) for w in layer.get_weights())
            steps.append(("conv", (kernel, bias, layer.strides[0]), layer.activation is keras.activations.relu))
        elif isinstance(layer, keras.layers.Dense):
            kernel, bias = (w.astype(np.float64) for w in layer.get_weights())
            steps.append(("dense", (kernel, bias), layer.activation is keras.activations.relu))
        elif isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
            steps.append(("relu", None, False))
        elif isinstance(layer, keras.layers.Flatten):
            steps.append(("flatten", None, False))
        else:
            raise NotImplementedError(type(layer).__name__)
        steps[-1] += (layer.name,)
    return steps


def numpy_input_gradient(model, states, stop_layer, seed_fn, guided):
    """d target / d input with a hand-written backward pass.

    Args:
        stop_layer: name of the layer whose output is the target's input (None: model output).
        seed_fn: ``activations -> (target values, d target / d activations)`` in numpy.
        guided: use the guided ReLU rule (else the plain ReLU derivative).
    """
    x = np.asarray(states, dtype=np.float64)
    tape = []
    for kind, params, fused, name in _layer_steps(model):
        shape = x.shape
        if kind == "scale":
            y = x * params
        elif kind == "conv":
            y = _conv_forward(x, params[0], params[1], params[2])
        elif kind == "dense":
            y = x @ params[0] + params[1]
        elif kind == "flatten":
            y = x.reshape(len(x), -1)
        else:
            y = x
        tape.append((kind, params, shape))
        if kind == "relu" or fused:
            tape.append(("relu", y, y.shape))
            y = np.maximum(y, 0)
        x = y
        if name == stop_layer:
            break
    values, grad = seed_fn(x)
    for kind, params, shape in reversed(tape):
        if kind == "relu":
            if params is None:
                continue  # the ReLU layer step itself; its pre-activation is recorded next
            grad = grad * (params > 0)
            if guided:
                grad = grad * (grad > 0)
        elif kind == "scale":
            grad = grad * params
        elif kind == "conv":
            grad = _conv_backward(grad, params[0], params[2], shape)
        elif kind == "dense":
            grad = grad @ params[0].T
        elif kind == "flatten":
            grad = grad.reshape(shape)
    return values, grad


def max_filter_seed(filters):
    """Seed for guided backprop: target = max over (y, x) of activation[..., filter]."""

    def seed(a):
        f = np.broadcast_to(filters, (len(a),))
        grad = np.zeros_like(a)
        values = np.empty(len(a))
        for n in range(len(a)):
            channel = a[n, ..., f[n]]
            index = np.unravel_index(np.argmax(channel), channel.shape)
            values[n] = channel[index]
            grad[(n,) + index + (f[n],)] = 1.0
        return values, grad

    return seed


def q_seed(actions):
    """Seed for saliency: target = Q(s, a)."""

    def seed(q):
        grad = np.zeros_like(q)
        grad[np.arange(len(q)), actions] = 1.0
        return q[np.arange(len(q)), actions], grad

    return seed


class ReluInside(keras.layers.Layer):
    """Custom code, out of guided backprop's reach: a 3×3 "same" conv of 3 filters, then a ReLU,
    inside call()."""

    def __init__(self, **options):
        super().__init__(**options)
        self.conv = keras.layers.Conv2D(3, 3, padding="same")

    def call(self, x):
        return keras.ops.relu(self.conv(x))
