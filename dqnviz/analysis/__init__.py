"""Analyses of Keras image models, written once with ``keras.ops`` (TensorFlow and JAX).

Works on any built Keras 3 image model with Conv2D layers: functional or Sequential, float or
uint8 input (any number of channels: frame stacks or RGB), channels last, ReLU fused
(``activation="relu"``) or as its own layer, capped or leaky (ReLU6, LeakyReLU), with
BatchNormalization (run with its moving statistics), Dropout (off), padding ``"same"`` or
``"valid"``, pooling, DepthwiseConv2D / SeparableConv2D, residual ``Add`` branches and nested
models (a Sequential or ``keras.applications`` backbone inside a Functional model, whose layers
are named like top-level ones). Only computing input gradients and compiling the passes is backend
specific (:func:`dqnviz.backend.compile_input_gradient`, :func:`dqnviz.backend.compile_forward`):
under JAX each analysis target is jitted once per model and layer, its per-call data (filters,
positions, actions) and the model's current weights passed as arguments. Models are never modified
(the compiled functions are kept in a private dict on the model, so they go with it).

* :func:`guided_backprop` — guided-ReLU gradient of a filter's strongest unit.
* :func:`saliency` — gradient, SmoothGrad or perturbation saliency of Q-values.
* :func:`receptive_field`, :func:`effective_receptive_field` — theoretical and measured RF.
* :func:`encode_rgb`, :func:`encode_gradient_rgb`, :func:`frames_strip` — images of states.
* :func:`conv_layers`, :func:`image_layers`, :func:`rectified_by`, :func:`top_activations`,
  :func:`top_activations_by_layer`, :func:`full_history` — layers and the inputs exciting them most.
* :func:`temporal_lean` — how much of a first-layer kernel looks at each input frame.
* :func:`linear_cka` — how alike two representations of the same states are (``dqnviz compare``'s CKA).

Mistakes (unknown layer, filter out of range, no Conv2D layers, non-image input) and what is not
supported (several inputs, a receptive field through Conv2DTranspose / UpSampling2D / Reshape or
channels_first layers, a layer inside a nested model called more than once) raise
:class:`dqnviz.errors.UserError` with a one-line message.
"""

from dqnviz.analysis.encoding import encode_gradient_rgb, encode_rgb, frames_strip
from dqnviz.analysis.guided import ZeroGradientWarning, guided_backprop
from dqnviz.analysis.probes import (conv_layers, full_history, image_layers, rectified_by, top_activations,
                                    top_activations_by_layer)
from dqnviz.analysis.relu import UnguidedCodeWarning
from dqnviz.analysis.receptive_field import effective_receptive_field, receptive_field
from dqnviz.analysis.saliency import saliency
from dqnviz.analysis.similarity import linear_cka, temporal_lean

__all__ = [
    "conv_layers",
    "effective_receptive_field",
    "encode_gradient_rgb",
    "encode_rgb",
    "frames_strip",
    "full_history",
    "guided_backprop",
    "ZeroGradientWarning",
    "image_layers",
    "linear_cka",
    "receptive_field",
    "rectified_by",
    "saliency",
    "temporal_lean",
    "UnguidedCodeWarning",
    "top_activations",
    "top_activations_by_layer",
]
