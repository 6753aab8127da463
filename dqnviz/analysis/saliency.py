"""Saliency maps of a Q-network: gradient, SmoothGrad and Greydanus-style perturbation."""

import numpy as np
from keras import ops
from scipy.ndimage import gaussian_filter

from dqnviz.analysis._model import (
    as_batch,
    check_batch_size,
    compiled_gradient,
    compiled_runner,
    graph_runner,
    is_whole_number,
    predict,
    score_count,
)
from dqnviz.errors import UserError

METHODS = ("gradient", "smoothgrad", "perturbation")
_OPTIONS = {
    "gradient": {"batch_size": 256},
    "smoothgrad": {"samples": 16, "noise": 0.15, "seed": 0, "value_range": None, "batch_size": 256},
    "perturbation": {"stride": 5, "radius": 5.0, "blur": 3.0, "batch_size": 256},
}


def saliency(model, states, action=None, method="gradient", **options) -> np.ndarray:
    """Which pixels matter to the Q-value(s) of each state.

    ``Q`` is the model's ``(N, A)`` output: Q-values for a DQN, any per-class score for another
    model. For a classifier ending in a softmax (a top-level ``Softmax`` layer,
    ``Activation("softmax")`` or ``Dense(..., activation="softmax")``, the softmax written any way
    that computes one: ``keras.ops.softmax``, ``tf.nn.softmax``, a ``Lambda``) ``Q`` is the logits ``z``
    of ``p = softmax(z)`` instead, as Simonyan et al. (2014) use the class score before the
    softmax: a confident softmax saturates, ``dp/ds ≈ 0`` and a blurred patch changes no
    probability, so the maps of ``p`` would be blank. (A softmax inside a nested model is kept.)

    Methods:

    ``"gradient"``
        ``S = dQ(s, a)/ds`` (signed), ``a`` = ``action`` or ``argmax_a Q(s, a)`` per state.
        Options: ``batch_size`` (256).

    ``"smoothgrad"`` (Smilkov et al., 2017)
        ``S = 1/n Σ_i dQ(s + ε_i, a)/ds``, ``ε_i ~ N(0, σ²)``, ``σ = noise · (x_max − x_min)``,
        ``a`` chosen on the clean state. The noise is drawn as ``σ *
        np.random.default_rng(seed).standard_normal((N, samples, H, W, C), dtype=np.float32)``
        (σ per state), so it is reproducible; the noisy copies are not clipped. All ``samples`` copies of a
        state go through the model in the same forward+backward pass.
        Options: ``samples`` (16), ``noise`` (0.15), ``seed`` (0), ``value_range`` (the
        ``x_max − x_min`` above; None: the full range of the model's integer Input dtype, e.g.
        255 for a uint8 model, else of 8-bit integer states, e.g. 255 for uint8 states; otherwise
        each state's own ``max − min``, Smilkov's definition, 1.0 for a constant state; never the
        limits of a wider integer dtype such as numpy's default int64), ``batch_size`` (256
        noisy states per pass, at least ``samples``).

    ``"perturbation"`` (Greydanus et al., 2018)
        For centres ``(y, x)`` every ``stride`` pixels, a Gaussian mask
        ``M(i, j) = exp(−((i−y)² + (j−x)²) / (2·radius²))`` blends in a blurred state:
        ``s' = s·(1 − M) + G_blur(s)·M`` (``G_blur``: Gaussian filter of σ = ``blur`` over the
        spatial axes, per channel). The score is ``½ ‖Q(s) − Q(s')‖²`` over all actions
        (Greydanus' choice) when ``action`` is None, and ``½ (Q(s, a) − Q(s', a))²`` when an
        action is given. The coarse map is bilinearly upsampled to ``(H, W)`` (constant beyond
        the last centre) and repeated over the channels. Options: ``stride`` (5), ``radius``
        (5), ``blur`` (3), ``batch_size`` (256 perturbed states per forward pass).

    Args:
        model: a built Keras image model with one ``(H, W, C)`` input and a ``(N, A)`` output
            (a Q-network's A actions, or a classifier's A scores).
        states: ``(N, H, W, C)`` array (or one state), any numeric dtype.
        action: None, an int, or an int array with one action per state.
        method: ``"gradient"``, ``"smoothgrad"`` or ``"perturbation"`` (a keyword: the third
            positional argument is ``action``).
        **options: per-method options listed above; every ``batch_size`` is a positive integer.

    Returns:
        float32 array shaped like ``states`` (non-negative for ``"perturbation"``).

    Raises:
        UserError: unknown method or option, bad action (a method name given as the action
            included), non-image model, wrong state shape, states with NaN / infinite values,
            ``batch_size`` not a positive integer, an option of the wrong type or out of range:
            ``samples`` and ``stride`` whole numbers >= 1, ``seed`` a whole number >= 0,
            ``noise`` and ``blur`` finite and >= 0, ``value_range`` and ``radius`` finite and > 0.
    """
    if method not in METHODS:
        raise UserError(f"unknown saliency method {method!r}; choose one of: {', '.join(METHODS)}")
    unknown = sorted(set(options) - set(_OPTIONS[method]))
    if unknown:
        raise UserError(
            f"unknown option(s) {', '.join(unknown)} for saliency method {method!r}; "
            f"valid: {', '.join(_OPTIONS[method])}"
        )
    settings = _checked_settings(method, {**_OPTIONS[method], **options})
    batch, single = as_batch(model, states)
    num_actions = score_count(model, "saliency")
    actions = _check_actions(action, len(batch), num_actions)

    if method == "gradient":
        result = _gradient(model, batch.astype(np.float32), actions, settings["batch_size"])
    elif method == "smoothgrad":
        result = _smoothgrad(model, batch, actions, settings)
    else:
        result = _perturbation(compiled_runner(model, logits=True), batch, actions, settings)
    return result[0] if single else result


# Each option's rule: (kind, lowest, whether the lowest is allowed); None where None is allowed too.
_RULES = {
    "samples": ("whole", 1, True), "seed": ("whole", 0, True), "stride": ("whole", 1, True),
    "noise": ("number", 0.0, True), "value_range": ("number", 0.0, False),
    "radius": ("number", 0.0, False), "blur": ("number", 0.0, True),
}


def _checked_settings(method, settings) -> dict:
    """``settings`` with every option checked: whole numbers (no bool, no 2.5) and finite numbers
    in range, so that a NaN cannot silently give a map of zeros or NaN.

    Raises:
        UserError: naming the method, the option and the value given.
    """
    settings = dict(settings)
    settings["batch_size"] = check_batch_size(settings["batch_size"])
    for name, value in settings.items():
        if name not in _RULES or (name == "value_range" and value is None):
            continue
        kind, lowest, inclusive = _RULES[name]
        bound = f">= {lowest:g}" if inclusive else f"> {lowest:g}"
        if kind == "whole":
            if not is_whole_number(value) or value < lowest:
                raise UserError(f"{method} saliency needs {name} to be a whole number {bound}, got {value!r}")
            settings[name] = int(value)
        else:
            number = value if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, (bool, np.bool_)) else None
            if number is None or not np.isfinite(number) or number < lowest or (number == lowest and not inclusive):
                raise UserError(f"{method} saliency needs {name} to be a finite number {bound}, got {value!r}")
            settings[name] = float(number)
    return settings


def _check_actions(action, count, num_actions):
    """None, or an int64 array of ``count`` actions in ``[0, num_actions)``."""
    if action is None:
        return None
    if isinstance(action, str) and action in METHODS:
        raise UserError(f"{action!r} is a saliency method, not an action: pass it as method={action!r}")
    array = np.asarray(action)
    if array.dtype.kind not in "iu" or array.ndim > 1 or (array.ndim == 1 and len(array) != count):
        raise UserError(f"action must be an int or {count} ints (one per state), got {action!r}")
    if array.size and (array.min() < 0 or array.max() >= num_actions):
        raise UserError(f"action {action!r} is out of range: the model has {num_actions} actions (0..{num_actions - 1})")
    return np.broadcast_to(array.astype(np.int64), (count,)).copy()


def _q_target(model, chosen):
    """Compiled ``(x[, actions]) -> Q(x, a)``: ``a`` = ``actions`` when ``chosen``, else ``argmax_a Q(x, a)``."""

    def make_target():
        run = graph_runner(model, logits=True)

        def target(x, *actions):
            q = run(x)
            best = actions[0] if chosen else ops.argmax(ops.stop_gradient(q), axis=-1)
            one_hot = ops.one_hot(best, int(q.shape[-1]), dtype=q.dtype)
            return ops.sum(q * ops.stop_gradient(one_hot), axis=-1)

        return target

    return compiled_gradient(model, ("q", chosen), make_target)


def _gradient(model, states, actions, batch_size):
    target = _q_target(model, actions is not None)
    gradients = np.empty(states.shape, dtype=np.float32)
    for start in range(0, len(states), batch_size):
        stop = start + batch_size
        chosen = () if actions is None else (actions[start:stop].astype(np.int32),)
        _, gradients[start:stop] = target(states[start:stop], *chosen)
    return gradients


def _value_range(model, batch, value_range):
    """The per-state value range ``x_max − x_min`` that scales the SmoothGrad noise, shape ``(N,)``:
    ``σ = noise_level · (x_max − x_min)``.

    In order: ``value_range`` when given; the full range of the model's integer Input dtype
    (255 for ``uint8``: the pixels' possible range, however dark a state); the full range of
    8-bit integer states (255 for ``uint8`` states fed to a float model); otherwise each state's
    own ``max − min`` (Smilkov's definition), or 1.0 for a constant state. A wider integer dtype's
    limits are never used: ``int64`` states (numpy's default for ``rng.integers``) holding pixels
    0..255 would get σ ≈ 0.15 · 2⁶⁴ and maps of pure noise.
    """
    if value_range is not None:
        return np.full(len(batch), float(value_range))
    full = None
    model_dtype = np.dtype(model.inputs[0].dtype)
    if model_dtype.kind in "iu":
        full = np.iinfo(model_dtype)
    elif batch.dtype.kind in "iu" and batch.dtype.itemsize == 1:
        full = np.iinfo(batch.dtype)
    if full is not None:
        return np.full(len(batch), float(full.max) - float(full.min))
    flat = batch.reshape(len(batch), -1).astype(np.float64)
    spread = flat.max(axis=1) - flat.min(axis=1)
    return np.where(spread > 0, spread, 1.0)


def smoothgrad_noise(shape, samples, sigma, seed):
    """The noise SmoothGrad adds: ``(N, samples, H, W, C)`` float32, ``σ`` per state.

    Args:
        shape: the batch shape ``(N, H, W, C)``.
        samples: noisy copies per state.
        sigma: ``(N,)`` standard deviations.
        seed: seed of ``np.random.default_rng``.
    """
    # one batch of all N states: the generator's only one (none for N = 0), not copied again
    return next(_noise_batches(shape, samples, sigma, seed, per_batch=max(1, shape[0])),
                np.empty((0, samples) + tuple(shape[1:]), np.float32))


def _noise_batches(shape, samples, sigma, seed, per_batch):
    """:func:`smoothgrad_noise` a ``per_batch`` states at a time, drawn in turn from one generator:
    the same numbers, without holding N × samples noisy states at once (a whole game's 3,000
    states, 25 samples: 8 GB)."""
    rng = np.random.default_rng(seed)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float32), (shape[0],))
    for start in range(0, shape[0], per_batch):
        stop = min(start + per_batch, shape[0])
        noise = rng.standard_normal((stop - start, samples) + tuple(shape[1:]), dtype=np.float32)
        yield noise * sigma[start:stop].reshape((-1,) + (1,) * len(shape))


def _smoothgrad(model, batch, actions, settings):
    samples = settings["samples"]
    states = batch.astype(np.float32)
    if actions is None:
        actions = np.argmax(predict(compiled_runner(model, logits=True), states, settings["batch_size"]), axis=-1)
    target = _q_target(model, chosen=True)
    sigma = float(settings["noise"]) * _value_range(model, batch, settings["value_range"])
    per_pass = max(1, int(settings["batch_size"]) // samples)
    noise_batches = _noise_batches(states.shape, samples, sigma, settings["seed"], per_pass)
    result = np.empty(states.shape, dtype=np.float32)
    for start in range(0, len(states), per_pass):
        stop = min(start + per_pass, len(states))
        noisy = (states[start:stop, None] + next(noise_batches)).reshape((-1,) + states.shape[1:])
        repeated = np.repeat(actions[start:stop], samples)
        _, gradient = target(noisy, repeated.astype(np.int32))
        result[start:stop] = gradient.reshape((stop - start, samples) + states.shape[1:]).mean(axis=1)
    return result


def gaussian_mask(shape, centre, radius) -> np.ndarray:
    """``M(i, j) = exp(−((i−y)² + (j−x)²) / (2·radius²))`` over an ``(H, W)`` grid, peak 1."""
    rows = np.arange(shape[0], dtype=np.float64)[:, None] - centre[0]
    cols = np.arange(shape[1], dtype=np.float64)[None, :] - centre[1]
    return np.exp(-(rows ** 2 + cols ** 2) / (2.0 * float(radius) ** 2))


def _interpolation_matrix(size, centres):
    """``(size, len(centres))`` linear interpolation weights from the centres to every pixel."""
    eye = np.eye(len(centres))
    return np.stack([np.interp(np.arange(size), centres, eye[k]) for k in range(len(centres))], axis=1)


def _perturbation(run, batch, actions, settings):
    stride = settings["stride"]
    states = batch.astype(np.float32)
    n, height, width = states.shape[:3]
    ys, xs = np.arange(0, height, stride), np.arange(0, width, stride)
    masks = np.stack([gaussian_mask((height, width), (y, x), settings["radius"]) for y in ys for x in xs])
    masks = masks.astype(np.float32)[..., None]  # (K, H, W, 1)
    blur = float(settings["blur"])
    blurred = gaussian_filter(states, sigma=(0, blur, blur, 0)) if blur > 0 else states
    batch_size = settings["batch_size"]

    q_clean = predict(run, states, batch_size)
    scores = np.empty((n, len(masks)), dtype=np.float64)
    pairs = [(i, k) for i in range(n) for k in range(len(masks))]
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        index, mask_index = np.array([p[0] for p in chunk]), np.array([p[1] for p in chunk])
        perturbed = states[index] + (blurred[index] - states[index]) * masks[mask_index]
        q = run(perturbed).astype(np.float64)
        diff = q_clean[index].astype(np.float64) - q
        if actions is not None:
            diff = diff[np.arange(len(chunk)), actions[index]][:, None]
        # A perturbation that changes no pixel (blur 0, or a flat patch that blurs to itself)
        # scores exactly 0: the network's outputs then differ only by the rounding of another
        # batch size (about 1e-9 on XLA's CPU), which a map scaled to its own peak would show.
        changed = (perturbed != states[index]).reshape(len(chunk), -1).any(axis=1)
        scores[index, mask_index] = np.where(changed, 0.5 * np.sum(diff ** 2, axis=1), 0.0)

    coarse = scores.reshape(n, len(ys), len(xs))
    rows, cols = _interpolation_matrix(height, ys), _interpolation_matrix(width, xs)
    fine = np.einsum("hy,nyx,wx->nhw", rows, coarse, cols)
    return np.broadcast_to(fine[..., None], states.shape).astype(np.float32)
