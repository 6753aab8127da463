"""What ``dqnviz play`` and ``dqnviz record`` draw, and the pieces both need to watch an agent.

* :class:`FrameEnv` is an :class:`~dqnviz.atari.AtariEnv` whose ``step`` also keeps the colour
  screen after *each* of its ``frame_skip`` emulator frames (so a video can show every frame at
  60 fps) — the agent's preprocessing is exactly AtariEnv's.
* :class:`Evaluator` gives the Q-values of a state and, optionally, its saliency map. Gradient
  saliency is one compiled forward+backward pass that also yields the Q-values, so recording
  with saliency costs one network call per agent step.
* Drawing works on numpy RGB arrays with Pillow (no window needed): :func:`scale_screen`,
  :func:`saliency_layer` / :func:`blend` / :func:`saliency_overlay` for the coloured saliency,
  :class:`Panel` for the side panel (text lines, Q-value bars with ALE action names, key help),
  :func:`compose` to put screen and panel side by side, and :func:`banner` for a message across
  the middle (``play``'s "game over"). ``play`` blits the result into a
  pygame window, ``record`` sends it to ffmpeg.
"""

from __future__ import annotations

import functools

import numpy as np

from dqnviz.atari import SCREEN_SHAPE, AtariEnv, Step
from dqnviz.errors import UserError

SALIENCY_METHODS = ("gradient", "perturbation")


# --------------------------------------------------------------------------- CPU threads


def one_blas_thread():
    """A context in which numpy's BLAS uses one thread.

    Watching alternates small numpy matrix products (the saliency upsampling) with the network's
    compiled passes. On a small CPU, BLAS worker threads and the TensorFlow/XLA thread pool then
    spin against each other and a sub-millisecond product takes tens of milliseconds; one BLAS
    thread is plenty for these sizes. (threadpoolctl finds whichever BLAS numpy loaded.)
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


# --------------------------------------------------------------------------- the environment


class FrameEnv(AtariEnv):
    """An AtariEnv that keeps the RGB screen after every emulator frame of a step.

    After :meth:`step`, ``frames[:n_frames]`` holds the (height, width, 3) screens of the frames
    played (fewer than ``frame_skip`` when the game ended early) and ``frame_scores[:n_frames]``
    the game score after each of them. Everything else — rewards, pooling, resizing, the state —
    is computed exactly as :meth:`AtariEnv.step` does.
    """

    def _init_capture(self) -> None:
        self.frames = np.zeros((self.frame_skip,) + self.screen_shape + (3,), np.uint8)
        self.frame_scores = np.zeros(self.frame_skip, np.float64)
        self.n_frames = 0

    @classmethod
    def capture(cls, env: AtariEnv) -> "FrameEnv":
        """Turn an existing AtariEnv (e.g. from ``env_for_snapshot``) into a FrameEnv in place."""
        env.__class__ = cls
        env._init_capture()
        return env

    @classmethod
    def for_episode(cls, snapshot, seed: int, episode: int, max_frames: int,
                    check: bool = True) -> tuple["FrameEnv", "np.random.Generator"]:
        """``dqnviz test --seed seed``'s game ``episode`` (from 0) as a FrameEnv with its ε stream
        (:func:`dqnviz.agent.episode_seeds`), cut off after ``max_frames`` emulator frames.

        ``check``: first check that the snapshot's metadata builds its game and that its network
        fits it (:func:`dqnviz.agent.checked_env_for_snapshot`, a one-line UserError if not). The
        snapshot does not change between games: a caller playing several checks the first only.
        """
        from dqnviz.agent import checked_env_for_snapshot, env_for_snapshot, episode_seeds

        emulator_seed, rng = episode_seeds(seed, episode)
        if check:
            env = checked_env_for_snapshot(snapshot, emulator_seed, max_frames_per_episode=max_frames)
        else:
            env = env_for_snapshot(snapshot.meta, emulator_seed, max_frames_per_episode=max_frames)
        return cls.capture(env), rng

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_capture()

    def captured(self) -> np.ndarray:
        """The screens of the last step, shaped (n_frames, height, width, 3) (a view: copy to keep)."""
        return self.frames[:self.n_frames]

    def step(self, action: int) -> Step:
        self.n_frames = 0
        return super().step(action)

    def _after_frame(self, k: int, reward: float) -> None:
        self.ale.getScreenRGB(self.frames[k])
        self.frame_scores[k] = self.episode_score + reward
        self.n_frames = k + 1


# --------------------------------------------------------------------------- Q-values and saliency


class Evaluator:
    """``evaluator(state) -> (q_values (A,), saliency (84, 84, 4) float32 or None)``.

    Args:
        model: the snapshot's Keras Q-network.
        saliency: None (Q-values only), ``"gradient"`` or ``"perturbation"``.

    ``"gradient"`` is ``d Q(s, a*) / d s`` with ``a*`` the greedy action, taken with respect to
    the float pixel values (as :func:`dqnviz.analysis.saliency` defines it), computed in one
    compiled (XLA / ``jax.jit``) pass that returns the Q-values too. ``"perturbation"`` calls
    :func:`dqnviz.analysis.saliency`, which is much slower.
    """

    def __init__(self, model, saliency: str | None = None):
        if saliency is not None and saliency not in SALIENCY_METHODS:
            raise UserError(f"unknown saliency method {saliency!r}; choose {' or '.join(SALIENCY_METHODS)}")
        self.model, self.method = model, saliency
        self.num_actions = int(model.output_shape[-1])
        if saliency == "gradient":
            self._fn = _compiled_q_and_gradient(model)
        else:
            from dqnviz.agent import QFunction

            self._q = QFunction(model)
            if saliency == "perturbation":
                self._saliency = _analysis_saliency()

    def __call__(self, state: np.ndarray):
        state = np.asarray(state)
        if self.method == "gradient":
            q, gradient = self._fn(state[None].astype(np.float32))
            return q[0], gradient[0]
        q = self._q(state)
        if self.method is None:
            return q, None
        sal = self._saliency(self.model, state[None], action=None, method="perturbation")
        return q, np.asarray(sal, np.float32).reshape(state.shape)


def _analysis_saliency():
    try:
        from dqnviz.analysis import saliency
    except ImportError as error:
        raise UserError(f"perturbation saliency is not available in this dqnviz ({error})") from None
    return saliency


def _compiled_q_and_gradient(model):
    """A compiled ``x (N, 84, 84, 4) float32 -> (Q (N, A), dQ(x, argmax)/dx)`` in numpy."""
    from dqnviz.analysis._model import graph_runner
    from dqnviz.backend import make_q_and_gradient

    return make_q_and_gradient(model, graph_runner(model))


# --------------------------------------------------------------------------- drawing


def scale_screen(rgb: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, 3) image by an integer factor."""
    if scale == 1:
        return np.ascontiguousarray(rgb)
    return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


@functools.lru_cache(maxsize=8)
def _upsampler(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights spreading a resized frame back over the screen pixels.

    The transpose of the preprocessing's area matrix, rows normalised: screen pixel ``y`` gets
    the average of the 84-cells it was averaged into, weighted by overlap. A pixel is non-zero
    exactly when it overlaps a non-zero cell.
    """
    matrix = np.zeros((n_out, n_in))  # overlap of screen pixel y with cell i (cells are n_out/n_in wide)
    size = n_out / n_in
    for i in range(n_in):
        low, high = i * size, (i + 1) * size
        for y in range(int(np.floor(low)), min(n_out, int(np.ceil(high)))):
            matrix[y, i] = min(high, y + 1) - max(low, y)
    return (matrix / matrix.sum(axis=1, keepdims=True)).astype(np.float32)


def upsample_map(values: np.ndarray, shape=SCREEN_SHAPE) -> np.ndarray:
    """An (h, w) map (84×84) spread over a screen of ``shape`` (most games' (210, 160)); see :func:`_upsampler`."""
    values = np.asarray(values, np.float32)
    return _upsampler(shape[0], values.shape[0]) @ values @ _upsampler(shape[1], values.shape[1]).T


# A compact "inferno" colormap (dark purple → red → orange → pale yellow).
_CMAP_POINTS = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
_CMAP_COLOURS = np.array(
    [[40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [252, 255, 164]], np.float32
)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), _CMAP_POINTS, _CMAP_COLOURS[:, c]) for c in range(3)], -1)
COLORMAP = _LUT.astype(np.float32)  # (256, 3)


def saliency_layer(saliency: np.ndarray, shape=SCREEN_SHAPE, max_alpha: float = 0.7):
    """Prepare a saliency map for blending: ``(alpha (H, W, 1), colour (H, W, 3))`` float32.

    Args:
        saliency: an (84, 84) map (signed; its absolute value is used) or a full (84, 84, C)
            saliency, of which the newest frame (last channel) is used.
        shape: the screen size to spread it over.
        max_alpha: opacity where the saliency is largest; it falls linearly to 0 with |saliency|.

    Returns:
        None when the map is zero everywhere (nothing to draw).
    """
    saliency = np.asarray(saliency, np.float32)
    if saliency.ndim == 3:
        saliency = saliency[..., -1]
    magnitude = np.abs(saliency)
    peak = float(magnitude.max()) if magnitude.size else 0.0
    if not np.isfinite(peak) or peak <= 0:
        return None
    level = np.clip(upsample_map(magnitude / peak, shape), 0.0, 1.0)
    alpha = (max_alpha * level)[..., None]
    colour = COLORMAP[np.rint(level * 255).astype(np.intp)]
    return alpha, colour


def blend(screen: np.ndarray, layer) -> np.ndarray:
    """Alpha-blend a :func:`saliency_layer` onto an (H, W, 3) uint8 screen of the same size."""
    if layer is None:
        return screen
    alpha, colour = layer
    out = screen.astype(np.float32)
    out += alpha * (colour - out)
    return np.rint(out).astype(np.uint8)


def saliency_overlay(screen: np.ndarray, saliency: np.ndarray, max_alpha: float = 0.7) -> np.ndarray:
    """The screen with the saliency map drawn on it in colour where the saliency is non-zero.

    Args:
        screen: (210, 160, 3) uint8 (or any (H, W, 3): the map is spread over it).
        saliency: (84, 84) or (84, 84, C) (newest frame = last channel); |saliency| is shown.
    """
    return blend(screen, saliency_layer(saliency, screen.shape[:2], max_alpha))


@functools.lru_cache(maxsize=16)
def font(size: int):
    """DejaVu Sans when the system has it (it has ε and ▶), else Pillow's built-in font."""
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def glyph(text: str, fallback: str) -> str:
    """``text`` if the panel font can draw it (ε, ▶), else the ASCII ``fallback``."""
    try:
        unicode_ok = font(12).getname()[0].startswith("DejaVu")
    except Exception:
        unicode_ok = False
    return text if unicode_ok else fallback


BACKGROUND = (18, 18, 24)
TEXT = (230, 230, 230)
DIM = (150, 150, 160)
BAR = (70, 130, 200)
BAR_BEST = (90, 200, 120)
CHOSEN = (255, 200, 60)


class Panel:
    """The side panel: a title, ``label value`` lines, Q-value bars and (optionally) key help.

    Args:
        height: in pixels (the scaled screen's height).
        width: in pixels.
        action_names: ALE names of the minimal action set, one bar each.
    """

    def __init__(self, height: int, width: int, action_names, help_lines=()):
        self.height, self.width = int(height), int(width)
        self.action_names = list(action_names)
        self.help_lines = list(help_lines)
        self.text_size = max(9, min(16, self.height // 28))
        self.help_height = (len(self.help_lines) * (self.text_size + 3) + 6) if self.help_lines else 0
        self._cache_key = None
        self._cache = None

    def render(self, title: str = "", lines=(), q_values=None, chosen: int | None = None) -> np.ndarray:
        """An (height, width, 3) uint8 image. ``chosen`` (action index) is marked with ▶."""
        q_tuple = None if q_values is None else tuple(np.round(np.asarray(q_values, np.float64), 4))
        key = (title, tuple(lines), q_tuple, chosen)
        if key == self._cache_key:
            return self._cache
        from PIL import Image, ImageDraw

        image = Image.new("RGB", (self.width, self.height), BACKGROUND)
        draw = ImageDraw.Draw(image)
        size = self.text_size
        big, small = font(size + 2), font(size)
        x0, y = 8, 6
        if title:
            draw.text((x0, y), title, fill=TEXT, font=big)
            y += size + 8
        for label, value in lines:
            draw.text((x0, y), str(label), fill=DIM, font=small)
            draw.text((x0 + int(size * 4.6), y), str(value), fill=TEXT, font=small)
            y += size + 4
        if q_values is not None and self.action_names:
            y = self._bars(draw, y + 6, np.asarray(q_values, np.float64), chosen)
        if self.help_lines:
            hy = self.height - self.help_height
            draw.line((x0, hy, self.width - x0, hy), fill=(60, 60, 70))
            hy += 5
            for text in self.help_lines:
                draw.text((x0, hy), text, fill=DIM, font=font(max(8, size - 1)))
                hy += size + 3
        self._cache_key, self._cache = key, np.asarray(image)
        return self._cache

    def _bars(self, draw, y, q, chosen):
        size = self.text_size
        names = self.action_names
        bottom = self.height - self.help_height - 4
        draw.text((8, y), "Q-values", fill=DIM, font=font(size))
        y += size + 4
        row = max(6, min(size + 6, (bottom - y) // len(names)))
        label_font = font(max(7, min(size, row - 2)))
        # names start at x = 24 (after the ▶ of the chosen action); the bars 8 px after the longest
        label_w = int(max(draw.textlength(n, font=label_font) for n in names)) + 16 + 8
        value_w = int(draw.textlength("-00.00", font=label_font)) + 4
        left, right = 8 + label_w, self.width - 8 - value_w
        low, high = min(0.0, float(q.min())), max(0.0, float(q.max()))
        span = (high - low) or 1.0
        zero = left + (right - left) * (0.0 - low) / span
        best = int(np.argmax(q))
        for i, (name, value) in enumerate(zip(names, q)):
            top = y + i * row
            if top + row > bottom + 2:
                break
            text_y = top + max(0, (row - label_font.size) // 2) if hasattr(label_font, "size") else top
            if chosen is not None and i == chosen:
                draw.text((8, text_y), glyph("▶", ">"), fill=CHOSEN, font=label_font)
            draw.text((24, text_y), name, fill=TEXT if i == best else DIM, font=label_font)
            end = left + (right - left) * (value - low) / span
            x_a, x_b = sorted((zero, end))
            draw.rectangle((x_a, top + 2, max(x_b, x_a + 1), top + row - 2), fill=BAR_BEST if i == best else BAR)
            draw.text((right + 4, text_y), f"{value:.2f}", fill=TEXT if i == best else DIM, font=label_font)
        draw.line((zero, y, zero, y + row * len(names)), fill=(120, 120, 130))
        return y + row * len(names)


def banner(image: np.ndarray, title: str, lines=(), dim_lines=()) -> np.ndarray:
    """``image`` (H, W, 3 uint8) with a dark translucent band across its middle holding ``title``
    (large, in the colour of the action taken), then ``lines`` and ``dim_lines`` (greyer), centred.

    A line too wide for the image is drawn in a smaller font, down to 8 px."""
    from PIL import Image, ImageDraw

    height, width = image.shape[:2]
    size = max(9, min(16, height // 28))  # the panel's text size
    texts = [(title, 2 * size, CHOSEN)] + [(t, size, TEXT) for t in lines] + [(t, size, DIM) for t in dim_lines]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    fitted = []
    for text, points, colour in texts:
        while points > 8 and measure.textlength(text, font=font(points)) > width - 16:
            points -= 1
        fitted.append((text, font(points), points, colour))
    pad = size
    band = sum(points + 6 for *_, points, _ in fitted) + 2 * pad
    top = max(0, (height - band) // 2)
    out = np.array(image, np.uint8, copy=True)
    region = out[top:top + band].astype(np.float32)
    out[top:top + band] = np.rint(0.25 * region + 0.75 * np.array(BACKGROUND, np.float32)).astype(np.uint8)
    picture = Image.fromarray(out)
    draw = ImageDraw.Draw(picture)
    y = top + pad
    for text, face, points, colour in fitted:
        draw.text(((width - draw.textlength(text, font=face)) / 2, y), text, fill=colour, font=face)
        y += points + 6
    return np.asarray(picture)


def compose(screen: np.ndarray, panel: np.ndarray | None = None) -> np.ndarray:
    """Screen and panel side by side (same height) as one contiguous uint8 image."""
    if panel is None:
        return np.ascontiguousarray(screen)
    return np.concatenate([screen, panel], axis=1)


def even(n: int) -> int:
    """``n`` rounded up to an even number (H.264 in yuv420p needs even sizes)."""
    return n + (n % 2)
