"""Similarity measures between networks: pure numpy/scipy maths, no Keras.

* :func:`linear_cka` — linear centred kernel alignment (Kornblith et al., 2019, "Similarity of
  Neural Network Representations Revisited") between two activation matrices for the same
  inputs.
* :func:`cosine_matrix` / :func:`match_filters` — the cosine similarity of every pair of
  filters of two filter banks and the one-to-one assignment (Hungarian algorithm,
  ``scipy.optimize.linear_sum_assignment``) that maximises the total similarity.
* :func:`rowwise_cosine` / :func:`cross_layer_similarity` — cosine similarity of paired images,
  and the mean over layer pairs used by ``dqnviz compare`` for guided-backprop patterns.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

_EPS = 1e-12


def _as_matrix(x) -> np.ndarray:
    """``(N, ...)`` activations as an ``(N, features)`` float64 matrix."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1:
        raise ValueError("activations need a leading example axis")
    return x.reshape(len(x), -1)


def _varies(centred: np.ndarray, raw: np.ndarray) -> bool:
    """Whether a representation varies over the examples: its ``centred`` values hold more than
    the rounding that centring ``raw`` leaves, about ε·max|raw| per value (ε the float64 machine
    epsilon; 64 of them allowed). Relative to the values' own size, so that neither a tiny scale
    nor a large offset is taken for a constant."""
    rounding = 64 * np.finfo(np.float64).eps * float(np.max(np.abs(raw), initial=0.0))
    return float(np.sum(centred * centred)) > centred.size * rounding ** 2


def center(x: np.ndarray) -> np.ndarray:
    """Subtract each column's mean (over the examples)."""
    x = _as_matrix(x)
    return x - x.mean(axis=0, keepdims=True)


def linear_cka(x, y) -> float:
    """Linear CKA between two representations of the same ``N`` examples.

    ``x`` is ``(N, ...)`` and ``y`` is ``(N, ...)``; everything after the first axis is
    flattened (for a conv layer: height × width × channels per state). With ``X`` and ``Y``
    column-centred,

        CKA(X, Y) = ‖YᵀX‖_F² / (‖XᵀX‖_F · ‖YᵀY‖_F)

    which lies in [0, 1], is 1 for identical representations, and is unchanged by orthogonal
    transforms and isotropic scaling of either representation (not by arbitrary invertible
    linear maps). When there are fewer examples than features the equivalent Gram form
    ``tr(K L) / (‖K‖_F ‖L‖_F)`` with ``K = XXᵀ``, ``L = YYᵀ`` is used (same value, cheaper).

    Returns:
        The CKA value; ``nan`` when either representation is constant over the examples.
    """
    raw_x, raw_y = _as_matrix(x), _as_matrix(y)
    if len(raw_x) != len(raw_y):
        raise ValueError(f"CKA needs the same examples for both: {len(raw_x)} vs {len(raw_y)} rows")
    x, y = center(raw_x), center(raw_y)
    if not (_varies(x, raw_x) and _varies(y, raw_y)):
        return float("nan")
    n, p, q = len(x), x.shape[1], y.shape[1]
    if n < max(p, q):
        k, l = x @ x.T, y @ y.T
        numerator = float(np.sum(k * l))  # tr(K L) for symmetric K, L
        denominator = float(np.linalg.norm(k) * np.linalg.norm(l))
    else:
        numerator = float(np.linalg.norm(y.T @ x) ** 2)
        denominator = float(np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    if not denominator > 0.0 or not np.isfinite(denominator):
        return float("nan")
    return min(numerator / denominator, 1.0)  # ≤ 1 by Cauchy–Schwarz; rounding can pass it by 1e-16


def unit_gram(x) -> np.ndarray | None:
    """The centred linear Gram matrix ``K = X Xᵀ`` of ``(N, ...)`` activations (``X`` column-centred),
    scaled to ‖K‖_F = 1; None when the representation is constant over the examples.

    With it, ``linear_cka(x, y) == cka_of_grams(unit_gram(x), unit_gram(y))``: computing each
    representation's matrix once makes CKA over many pairs of representations (say every pair of
    several untrained networks) cost an ``N × N`` dot product per pair.
    """
    raw = _as_matrix(x)
    x = center(raw)
    if not _varies(x, raw):
        return None
    k = x @ x.T
    norm = float(np.linalg.norm(k))
    if not norm > 0 or not np.isfinite(norm):
        return None
    return k / norm


def cka_of_grams(k, l) -> float:
    """Linear CKA from two :func:`unit_gram` matrices of the same ``N`` examples (``nan`` if either is None)."""
    if k is None or l is None:
        return float("nan")
    if k.shape != l.shape:
        raise ValueError(f"CKA needs the same examples for both: {len(k)} vs {len(l)} rows")
    return float(np.sum(k * l))


@dataclass
class ChanceLevel:
    """What a similarity measure gives for unrelated pairs: ``draws`` (one value per pair), their
    ``mean`` and the central ``low``–``high`` quantiles (by default the 5th and 95th percentiles:
    a value above ``high`` is higher than 95 % of the pairs)."""

    mean: float
    low: float
    high: float
    draws: list


def chance_level(draws, quantiles=(0.05, 0.95)) -> ChanceLevel | None:
    """Summarise the values of unrelated pairs (non-finite ones dropped); None without any.

    The quantiles are numpy's (linear interpolation between the sorted draws), so with few draws
    they lie just inside the smallest and largest value.
    """
    values = [float(v) for v in draws if np.isfinite(v)]
    if not values:
        return None
    low, high = (float(q) for q in np.quantile(values, quantiles))
    return ChanceLevel(float(np.mean(values)), low, high, values)


def cosine_matrix(a, b) -> np.ndarray:
    """Cosine similarity of every row of ``a`` (``(m, ...)``) with every row of ``b`` (``(n, ...)``).

    Rows are flattened; an all-zero row has similarity 0 with everything. Returns ``(m, n)``.
    """
    a, b = _as_matrix(a), _as_matrix(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"cannot compare rows of {a.shape[1]} and {b.shape[1]} values")
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    return (a / np.maximum(na, _EPS)) @ (b / np.maximum(nb, _EPS)).T


def rowwise_cosine(a, b) -> np.ndarray:
    """Cosine similarity of row ``i`` of ``a`` with row ``i`` of ``b`` (rows flattened)."""
    a, b = _as_matrix(a), _as_matrix(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    dots = np.sum(a * b, axis=1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > _EPS, dots / np.maximum(norms, _EPS), 0.0)


def _kernel_array(kernel, who: str, shape: str) -> np.ndarray:
    """A Conv2D kernel, or the Conv2D layer holding it, as a float64 4-D array.

    Raises:
        ValueError: a string (a layer's name, where the layer is meant), something that is not an
            array of numbers, or an array that is not 4-D; the message names ``who`` and ``shape``.
    """
    if isinstance(kernel, str):
        raise ValueError(f"{who} takes a Conv2D kernel or layer, got the string {kernel!r} "
                         f"(for a layer of that name: {who}(model.get_layer({kernel!r})))")
    if hasattr(kernel, "kernel"):  # the layer itself
        kernel = kernel.kernel
    try:
        kernel = np.asarray(kernel, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{who} takes a Conv2D kernel {shape} or a Conv2D layer, got {type(kernel).__name__}") from None
    if kernel.ndim != 4:
        raise ValueError(f"{who} takes a Conv2D kernel {shape}, got shape {kernel.shape}")
    return kernel


def kernels_as_rows(kernel) -> np.ndarray:
    """A Conv2D kernel ``(kh, kw, in, out)`` as one row per filter: ``(out, kh·kw·in)``."""
    kernel = _kernel_array(kernel, "kernels_as_rows", "(kh, kw, in, out)")
    return np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)


def temporal_lean(kernel) -> np.ndarray:
    """How much of a first-layer kernel ``(kh, kw, frames, out)`` looks at each input frame:
    its energy per frame, ``lean_c = Σ_{y,x,f} W[y,x,c,f]²``. A network that ignores motion
    spreads it evenly; ``100 · lean_c / Σ_c lean_c`` is the share of frame c that ``dqnviz
    compare`` plots against the even share 100 / frames.

    Args:
        kernel: a Conv2D kernel ``(kh, kw, frames, filters)``, e.g.
            ``model.get_layer("conv1").get_weights()[0]``, or the Conv2D layer itself.

    Returns:
        float64 ``(frames,)``, one value per input frame, oldest first.

    Raises:
        ValueError: ``kernel`` is not a 4-D array of numbers (or a layer with one).
    """
    kernel = _kernel_array(kernel, "temporal_lean", "(kh, kw, frames, filters)")
    return np.sum(kernel**2, axis=(0, 1, 3))


@dataclass
class FilterMatch:
    """A one-to-one matching of filters of bank A to filters of bank B.

    ``rows[i]`` (a filter of A) is matched to ``cols[i]`` (a filter of B) with cosine
    similarity ``similarities[i]``; ``mean`` is their average. ``matrix`` is the full
    cosine-similarity matrix.
    """

    rows: np.ndarray
    cols: np.ndarray
    similarities: np.ndarray
    matrix: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.similarities)) if len(self.similarities) else float("nan")

    def partner_of(self, row: int) -> int | None:
        """The filter of B matched to filter ``row`` of A (None if unmatched)."""
        hits = np.nonzero(self.rows == row)[0]
        return int(self.cols[hits[0]]) if len(hits) else None


def match_filters(a, b) -> FilterMatch:
    """Hungarian matching of two filter banks on the cosine similarity of their weights.

    Args:
        a: ``(m, ...)`` filters of A (one per row; e.g. from :func:`kernels_as_rows`).
        b: ``(n, ...)`` filters of B with the same number of values per filter.

    Returns:
        A :class:`FilterMatch` pairing ``min(m, n)`` filters so that the summed cosine
        similarity of matched pairs is as large as possible (signed similarity: a filter and its
        negative are opposites, since a ReLU follows).
    """
    from scipy.optimize import linear_sum_assignment

    matrix = cosine_matrix(a, b)
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    return FilterMatch(rows=rows, cols=cols, similarities=matrix[rows, cols], matrix=matrix)


def cross_layer_similarity(patterns: dict) -> tuple[float, dict]:
    """Mean cosine similarity between the patterns of different layers on the same states.

    Args:
        patterns: ``{layer name: (N, ...) array}``, row ``s`` of every array being computed on the
            same state ``s`` (for example the guided-backprop image of that layer's most active
            filter on state ``s``).

    Returns:
        ``(mean, pairs)``: ``pairs`` maps ``(layer_a, layer_b)`` (every pair of distinct layers, in
        the dict's order) to the mean over states of ``cos(pattern_a[s], pattern_b[s])``; ``mean``
        is the average over those pairs (``nan`` with fewer than two layers).
    """
    names = list(patterns)
    pairs = {}
    for first, second in combinations(names, 2):
        pairs[(first, second)] = float(np.mean(rowwise_cosine(patterns[first], patterns[second])))
    mean = float(np.mean(list(pairs.values()))) if pairs else float("nan")
    return mean, pairs
