"""Turning 4-frame states and their gradients into images.

A DQN state stacks the last four frames ``t−3, t−2, t−1, t`` on the channel axis. The RGB
encoding shows the last three as R = ``t−2``, G = ``t−1``, B = ``t``: still objects are grey,
moving ones leave a red → green → blue trail.
"""

import numpy as np

from dqnviz.errors import UserError


def _check_frames(array, name):
    if array.ndim < 3 or array.shape[-1] != 4:
        raise UserError(f"{name} must be shaped (..., H, W, 4) (four stacked frames), got {array.shape}")


def _to_uint8(values):
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def encode_rgb(states) -> np.ndarray:
    """RGB image of a state: ``(R, G, B) = (frame t−2, frame t−1, frame t)``.

    Args:
        states: ``(..., H, W, 4)`` frames in 0..255 (uint8, or floats that are rounded and
            clipped to 0..255).

    Returns:
        uint8 ``(..., H, W, 3)`` equal to ``states[..., 1:4]``.

    Raises:
        UserError: the last axis is not 4 frames.
    """
    states = np.asarray(states)
    _check_frames(states, "states")
    return _to_uint8(states[..., 1:4])


def _symmetric_scale(gradients):
    """``floor(128 + 127.5 · g / max|g|)`` clipped to 0..255, ``max|g|`` per image over (H, W, 4).

    ``g = 0`` maps to 128 (grey), ``+max|g|`` to 255 and ``−max|g|`` to 0. An all-zero image is
    uniformly 128.
    """
    g = np.asarray(gradients, dtype=np.float64)
    peak = np.abs(g).max(axis=(-3, -2, -1), keepdims=True)
    scaled = 128.0 + 127.5 * g / np.where(peak > 0, peak, 1.0)
    return np.clip(np.floor(scaled), 0, 255).astype(np.uint8)


def encode_gradient_rgb(gradients) -> np.ndarray:
    """RGB image of a gradient (or saliency) over a state, in the :func:`encode_rgb` layout.

    Each image is scaled symmetrically: ``v = floor(128 + 127.5 · g / m)`` clipped to 0..255 with
    ``m = max|g|`` over that image's four frames (so the RGB image and :func:`frames_strip` share
    one scale). Zero gradient is grey 128, ``+m`` is 255 and ``−m`` is 0; channels are
    (R, G, B) = frames (t−2, t−1, t).

    Args:
        gradients: ``(..., H, W, 4)`` floats.

    Returns:
        uint8 ``(..., H, W, 3)``.

    Raises:
        UserError: the last axis is not 4 frames.
    """
    gradients = np.asarray(gradients)
    _check_frames(gradients, "gradients")
    return _symmetric_scale(gradients)[..., 1:4]


def frames_strip(gradients, signed=True) -> np.ndarray:
    """The four frames ``t−3, t−2, t−1, t`` of a gradient image as grey images (a "time strip").

    Args:
        gradients: ``(..., H, W, 4)`` floats (a gradient, a saliency map or a state).
        signed: scale symmetrically as :func:`encode_gradient_rgb` (0 → 128); if False, scale
            ``min..max`` of each image to ``0..255`` (for non-negative maps or raw frames).

    Returns:
        uint8 ``(..., 4, H, W)``: index 0 is frame t−3, index 3 is frame t; one scale per image
        (shared by its four frames).

    Raises:
        UserError: the last axis is not 4 frames.
    """
    gradients = np.asarray(gradients)
    _check_frames(gradients, "gradients")
    if signed:
        grey = _symmetric_scale(gradients)
    else:
        g = gradients.astype(np.float64)
        low = g.min(axis=(-3, -2, -1), keepdims=True)
        spread = g.max(axis=(-3, -2, -1), keepdims=True) - low
        grey = np.clip(np.rint(255.0 * (g - low) / np.where(spread > 0, spread, 1.0)), 0, 255).astype(np.uint8)
    return np.moveaxis(grey, -1, -3)
