"""Analyses of Keras image models, written once with ``keras.ops`` (TensorFlow and JAX).

Works on any built Keras 3 image model with Conv2D layers: functional or Sequential, float or
uint8 input, channels last, ReLU fused (``activation="relu"``) or as its own layer. Only
:func:`dqnviz.backend.input_gradient` is backend specific. Models are never modified.

* :func:`guided_backprop` — guided-ReLU gradient of a filter's strongest unit.
* :func:`saliency` — gradient, SmoothGrad or perturbation saliency of Q-values.
* :func:`receptive_field`, :func:`effective_receptive_field` — theoretical and measured RF.
* :func:`encode_rgb`, :func:`encode_gradient_rgb`, :func:`frames_strip` — images of states.
* :func:`conv_layers`, :func:`top_activations`, :func:`full_history` — layers and the inputs exciting them most.

Mistakes (unknown layer, filter out of range, no Conv2D layers, non-image input) raise
:class:`dqnviz.errors.UserError`.
"""

from dqnviz.analysis.encoding import encode_gradient_rgb, encode_rgb, frames_strip
from dqnviz.analysis.guided import guided_backprop
from dqnviz.analysis.probes import conv_layers, full_history, top_activations
from dqnviz.analysis.receptive_field import effective_receptive_field, receptive_field
from dqnviz.analysis.saliency import saliency

__all__ = [
    "conv_layers",
    "effective_receptive_field",
    "encode_gradient_rgb",
    "encode_rgb",
    "frames_strip",
    "full_history",
    "guided_backprop",
    "receptive_field",
    "saliency",
    "top_activations",
]
