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


def is_relu_output(operation) -> bool:
    """Whether the output of ``operation`` is a plain ReLU ``max(x, 0)`` of something.

    Args:
        operation: a node's operation in a Keras functional graph (usually a layer).

    Returns:
        True for ``keras.layers.ReLU()`` with default arguments (no ``max_value``, slope 0,
        threshold 0), ``Activation("relu")`` and layers with a fused ``activation="relu"``
        (Conv*, Dense, ...). Leaky or capped ReLUs are not plain ReLUs and return False.
    """
    if isinstance(operation, keras.layers.ReLU):
        return (
            operation.max_value is None
            and not operation.negative_slope
            and not operation.threshold
        )
    if isinstance(operation, _FUSED_ACTIVATION_LAYERS):
        return getattr(operation, "activation", None) is keras.activations.relu
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
