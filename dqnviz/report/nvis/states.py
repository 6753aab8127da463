"""How the report draws a model's states as images: :class:`StateView` (a stack of frames, an RGB
or a grey image, chosen by :func:`state_view`) and the state values drawn as 0..255."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dqnviz import analysis
from dqnviz.errors import UserError
from dqnviz.report.nvis.images import _strip


@dataclass(frozen=True)
class StateView:
    """How the report draws a model's states ``(N, H, W, C)`` as images.

    A stack of frames (``frame_stack``, C ≥ 3, oldest first) is shown as
    :func:`dqnviz.analysis.encode_rgb` shows it: its last three frames as R, G, B = t-2, t-1, t.
    An image shows its 3 channels as R, G, B, or its one channel as grey. State values
    ``low..high`` are drawn as 0..255 (uint8 states as they are).
    """

    frame_stack: bool
    height: int
    width: int
    channels: int
    low: float = 0.0
    high: float = 255.0

    @property
    def scaled(self) -> bool:
        return (self.low, self.high) != (0.0, 255.0)

    def rgb(self, states) -> np.ndarray:
        """uint8 ``(..., H, W, 3)`` images of states."""
        states = np.asarray(states)
        if self.scaled or states.dtype.kind == "f":
            scale = 255.0 / (self.high - self.low)
            states = np.clip(np.rint((states.astype(np.float64) - self.low) * scale), 0, 255).astype(np.uint8)
        return analysis.encode_rgb(self._three(states))

    def gradient_rgb(self, gradients) -> np.ndarray:
        """uint8 ``(..., H, W, 3)`` images of gradients over states: grey 128 = 0."""
        return np.asarray(analysis.encode_gradient_rgb(self._three(gradients)))

    def strip(self, gradient):
        """One image of the gradient of each frame or channel side by side; None for one channel."""
        return None if self.channels == 1 else _strip(analysis.frames_strip(gradient))

    @property
    def labels(self) -> list:
        """The strip's labels: t-(C-1) … t for a frame stack, R, G, B for a colour image."""
        if self.frame_stack:
            return [f"t-{back}" if back else "t" for back in range(self.channels - 1, -1, -1)]
        return ["R", "G", "B"] if self.channels == 3 else []

    def _three(self, array):
        return np.repeat(array, 3, axis=-1) if self.channels == 1 else array


def state_view(states, frame_stack=None) -> StateView:
    """How to show ``states`` ``(N, H, W, C)``: C = 1 a grey image, C = 3 an RGB image unless
    ``frame_stack`` (or, when None, consecutive states share frames as a game's stacks do), C ≥ 4
    a stack of frames, oldest first.

    Raises:
        UserError: 2 channels, ``frame_stack`` not True, False or None, ``frame_stack=True``
            with 1 channel, or ``frame_stack=False`` with more than 3.
    """
    states = np.asarray(states)
    channels = int(states.shape[-1])
    if channels == 2:
        raise UserError("states have 2 channels; nvis_report shows 1 channel as grey, 3 as an RGB image, "
                        "or a stack of 3 or more frames (the last three as red, green, blue)")
    if frame_stack is not None and not isinstance(frame_stack, (bool, np.bool_)):
        raise UserError(f"frame_stack must be True, False or None (guess), got {frame_stack!r}")
    if frame_stack is None:
        frame_stack = channels >= 4 or (channels == 3 and shares_frames(states))
    elif frame_stack and channels < 3:
        raise UserError(f"frame_stack=True needs states of 3 or more stacked frames, these have {channels} channel")
    elif not frame_stack and channels > 3:
        raise UserError(f"states of {channels} channels are shown as a stack of frames (the last three as red, "
                        "green, blue); frame_stack=False is for grey (1) or RGB (3) images")
    return StateView(bool(frame_stack), int(states.shape[1]), int(states.shape[2]), channels, *display_range(states))


def shares_frames(states) -> bool:
    """Whether consecutive states overlap as stacks of frames: ``s[i][..., :-1] = s[i−1][..., 1:]``
    (the frames t-1, t of one are t-2, t-1 of the next) for at least half of the pairs, counting
    only pairs whose shared frames are not blank."""
    states = np.asarray(states)
    if len(states) < 2 or states.shape[-1] < 2:
        return False
    newer, older = states[1:, ..., :-1], states[:-1, ..., 1:]
    same = (newer == older).reshape(len(newer), -1).all(axis=1)
    lit = np.ptp(newer.reshape(len(newer), -1), axis=1) > 0
    return int((same & lit).sum()) * 2 >= len(newer)


def display_range(states) -> tuple:
    """The state values drawn as 0..255: uint8 and values within 0..255 as they are, values within
    0..1 scaled by 255, others stretched from their minimum to their maximum."""
    states = np.asarray(states)
    if states.dtype == np.uint8:
        return 0.0, 255.0
    low, high = float(np.min(states)), float(np.max(states))
    if low >= 0 and high <= 1:
        return 0.0, 1.0
    if low >= 0 and high <= 255:
        return 0.0, 255.0
    return low, high if high > low else low + 1.0
