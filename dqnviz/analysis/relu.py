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
"""

import keras
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


def is_relu_output(operation) -> bool:
    """Whether the output of ``operation`` is a rectifier (ReLU, capped or leaky) of something.

    Args:
        operation: a node's operation in a Keras functional graph (usually a layer).

    Returns:
        True for ``keras.layers.ReLU`` with any arguments (``max_value``, ``negative_slope``,
        ``threshold``: ReLU6 included), ``keras.layers.LeakyReLU``, ``Activation("relu")``,
        ``Activation("relu6")``, ``Activation("leaky_relu")`` and layers with one of these fused
        (``Conv2D(..., activation="relu6")``, Dense, DepthwiseConv2D, ...). False otherwise,
        e.g. for smooth activations (swish, GELU) and PReLU, whose learned slope may be anything.
    """
    if isinstance(operation, (keras.layers.ReLU, keras.layers.LeakyReLU)):
        return True
    if isinstance(operation, _FUSED_ACTIVATION_LAYERS):
        return any(getattr(operation, "activation", None) is f for f in _RECTIFIERS)
    return False


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
