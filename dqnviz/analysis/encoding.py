"""Turning stacked-frame states and their gradients into images.

A DQN state stacks its last frames on the channel axis, oldest first: ``t−3, t−2, t−1, t`` for
the Nature network's four. The RGB encoding shows the last three as R = ``t−2``, G = ``t−1``,
B = ``t``: still objects are grey, moving ones leave a red → green → blue trail. Any stack of
three or more frames works the same way (a 3-channel colour image is shown as itself).
"""

import warnings

import numpy as np

from dqnviz.errors import UserError


def _check_frames(array, name):
    if array.ndim < 3 or array.shape[-1] < 3:
        raise UserError(f"{name} must be shaped (..., H, W, frames) with at least 3 stacked frames "
                        f"(shown as red, green, blue), got {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UserError(f"{name} contain NaN or infinite values")


def _to_uint8(values):
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def encode_rgb(states) -> np.ndarray:
    """RGB image of a state: ``(R, G, B) = (frame t−2, frame t−1, frame t)``, its last three frames.

    Args:
        states: ``(..., H, W, frames)`` with 3 or more frames, in 0..255 (uint8, or floats that
            are rounded and clipped to 0..255; floats that all lie in 0..1 draw a warning, as
            they would come out black).

    Returns:
        uint8 ``(..., H, W, 3)`` equal to ``states[..., -3:]``.

    Raises:
        UserError: fewer than 3 frames on the last axis, or non-finite values.
    """
    states = np.asarray(states)
    _check_frames(states, "states")
    if states.dtype.kind == "f" and states.size and 0 < states.max() <= 1.0 and states.min() >= 0:
        warnings.warn("encode_rgb expects frames in 0..255, and these all lie in 0..1 (scaled?): "
                      "the image will be almost black; pass states * 255", stacklevel=2)
    return _to_uint8(states[..., -3:])


def _symmetric_scale(gradients):
    """``floor(128 + 127.5 · g / max|g|)`` clipped to 0..255, ``max|g|`` per image over (H, W, frames).

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
    ``m = max|g|`` over all of that image's frames (so the RGB image and :func:`frames_strip`
    share one scale). Zero gradient is grey 128, ``+m`` is 255 and ``−m`` is 0; channels are
    (R, G, B) = the last three frames (t−2, t−1, t).

    Args:
        gradients: ``(..., H, W, frames)`` finite floats, 3 or more frames.

    Returns:
        uint8 ``(..., H, W, 3)``.

    Raises:
        UserError: fewer than 3 frames on the last axis, or non-finite values.
    """
    gradients = np.asarray(gradients)
    _check_frames(gradients, "gradients")
    return _symmetric_scale(gradients)[..., -3:]


def frames_strip(gradients, signed=True) -> np.ndarray:
    """Each frame ``t−F+1 … t`` of a gradient image as its own grey image, for a "time strip"
    (lay them side by side: ``np.concatenate(list(strip), axis=-1)`` for one image).

    Args:
        gradients: ``(..., H, W, F)`` finite floats (a gradient, a saliency map or a state), F ≥ 3.
        signed: scale symmetrically as :func:`encode_gradient_rgb` (0 → 128); if False, scale
            ``min..max`` of each image to ``0..255`` (for non-negative maps or raw frames).

    Returns:
        uint8 ``(..., F, H, W)``: index 0 is the oldest frame, index F−1 frame t; one scale per
        image (shared by its frames).

    Raises:
        UserError: fewer than 3 frames on the last axis, or non-finite values.
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
