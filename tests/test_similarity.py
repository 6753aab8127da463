"""The similarity maths of ``dqnviz compare``: linear CKA, Hungarian filter matching, cosines."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from dqnviz.analysis.similarity import (
    chance_level,
    cka_of_grams,
    cosine_matrix,
    cross_layer_similarity,
    kernels_as_rows,
    linear_cka,
    match_filters,
    rowwise_cosine,
    temporal_lean,
    unit_gram,
)


def _reference_cka(x, y):
    """The definition, literally: centred X, Y and Frobenius norms of the feature-space products."""
    x = np.asarray(x, float).reshape(len(x), -1)
    y = np.asarray(y, float).reshape(len(y), -1)
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


@pytest.mark.parametrize("shape", [(50, 7), (10, 3, 3, 4)])
def test_cka_with_itself_is_one(shape):
    x = np.random.default_rng(0).normal(size=shape)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 12))
    y = np.tanh(x @ rng.normal(size=(12, 9))) + 0.3 * rng.normal(size=(40, 9))
    q = ortho_group.rvs(12, random_state=2)
    base = linear_cka(x, y)
    assert 0.0 < base < 1.0
    assert linear_cka(x @ q, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(3.7 * x, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, -0.01 * y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x + 5.0, y) == pytest.approx(base, rel=1e-10)  # centring removes offsets
    for tiny in (1e-4, 1e-8, 1e-30):  # activations of any scale, not taken for constant ones
        assert linear_cka(tiny * x, y) == pytest.approx(base, rel=1e-8)
        assert linear_cka(x, tiny * y) == pytest.approx(base, rel=1e-8)
    assert np.isnan(linear_cka(np.full_like(x, 1e-6), y)) and np.isnan(linear_cka(x, np.full_like(y, 3.0)))
    # nor is a large offset taken for a constant: float64 still resolves unit variation at 1e9
    standard = (x - x.mean(axis=0)) / x.std()  # a shift and an isotropic scale: the same CKA
    assert linear_cka(standard + 1e9, y) == pytest.approx(base, rel=1e-4)
    assert unit_gram(standard + 1e9) is not None and unit_gram(np.full_like(x, 1e9)) is None
    assert np.isnan(linear_cka(np.full_like(x, 1e9), y))
    # but not invariant to an arbitrary (non-orthogonal) invertible linear map
    assert linear_cka(x @ np.diag(np.arange(1, 13.0)), y) != pytest.approx(base, rel=1e-3)


def test_cka_gram_and_feature_forms_agree():
    rng = np.random.default_rng(3)
    wide_x, wide_y = rng.normal(size=(8, 30)), rng.normal(size=(8, 25))  # N < features: Gram form
    tall_x, tall_y = rng.normal(size=(30, 4)), rng.normal(size=(30, 6))  # N > features
    assert linear_cka(wide_x, wide_y) == pytest.approx(_reference_cka(wide_x, wide_y), rel=1e-10)
    assert linear_cka(tall_x, tall_y) == pytest.approx(_reference_cka(tall_x, tall_y), rel=1e-10)


def test_cka_hand_computed():
    # X = [0, 1, 2]ᵀ and Y = [0, 1, 0]ᵀ (one feature each). Centred: x = [-1, 0, 1],
    # y = [-1/3, 2/3, -1/3]; yᵀx = 1/3 - 1/3 = 0, so the representations are unrelated: CKA 0.
    assert linear_cka([[0], [1], [2]], [[0], [1], [0]]) == pytest.approx(0.0, abs=1e-12)
    # X = [0, 1, 2]ᵀ, Y = [0, 0, 3]ᵀ: x = [-1, 0, 1], y = [-1, -1, 2]; xᵀx = 2, yᵀy = 6,
    # yᵀx = 3, so CKA = 9 / (2·6) = 0.75.
    assert linear_cka([[0], [1], [2]], [[0], [0], [3]]) == pytest.approx(0.75, abs=1e-12)
    # two features, identity vs swapped columns (a permutation is orthogonal): 1
    x = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [0.0, 0.0]])
    assert linear_cka(x, x[:, ::-1]) == pytest.approx(1.0, abs=1e-12)


def test_cka_constant_representation_is_nan():
    assert np.isnan(linear_cka(np.ones((5, 3)), np.random.default_rng(0).normal(size=(5, 3))))


def test_cka_needs_same_examples():
    with pytest.raises(ValueError):
        linear_cka(np.zeros((4, 2)), np.zeros((5, 2)))


def test_cka_from_gram_matrices_is_linear_cka():
    """compare's chance level reduces each network's layer to one Gram matrix and pairs them: the
    same number as linear_cka, in both its forms, and nan for a constant representation."""
    rng = np.random.default_rng(4)
    wide = [rng.normal(size=(10, 3, 3, 4)) for _ in range(3)]  # N < features
    tall = [rng.normal(size=(40, 5)) + 7.0 for _ in range(3)]  # N > features, with an offset
    for group in (wide, tall):
        grams = [unit_gram(x) for x in group]
        for a in range(3):
            assert np.linalg.norm(grams[a]) == pytest.approx(1.0)
            for b in range(3):
                assert cka_of_grams(grams[a], grams[b]) == pytest.approx(linear_cka(group[a], group[b]), rel=1e-10)
    assert unit_gram(np.ones((6, 4))) is None and unit_gram(np.zeros((6, 4))) is None
    assert unit_gram(np.full((6, 4), 0.1) + np.zeros((6, 1))) is None  # constant up to rounding
    assert unit_gram(1e-6 * rng.normal(size=(6, 4))) is not None  # small is not constant
    assert np.isnan(cka_of_grams(None, unit_gram(tall[0])))
    with pytest.raises(ValueError):
        cka_of_grams(unit_gram(wide[0]), unit_gram(tall[0]))


def test_chance_level_is_mean_and_central_percentiles():
    draws = list(np.linspace(0.0, 1.0, 21))  # 0, 0.05, …, 1
    level = chance_level(draws + [float("nan")])
    assert level.draws == pytest.approx(draws)  # the nan is dropped
    assert level.mean == pytest.approx(0.5)
    assert (level.low, level.high) == pytest.approx((0.05, 0.95))  # 5th and 95th percentiles
    assert chance_level([0.3]) == chance_level([0.3, float("inf")])
    assert (chance_level([0.3]).low, chance_level([0.3]).high) == (0.3, 0.3)
    assert chance_level([]) is None and chance_level([float("nan")]) is None
    narrow = chance_level(draws, quantiles=(0.25, 0.75))
    assert (narrow.low, narrow.high) == pytest.approx((0.25, 0.75))


def test_hungarian_recovers_a_permutation_of_a_filter_bank():
    rng = np.random.default_rng(4)
    kernel = rng.normal(size=(8, 8, 4, 16))
    permutation = rng.permutation(16)
    permuted = kernel[..., permutation]  # filter j of B is filter permutation[j] of A
    match = match_filters(kernels_as_rows(kernel), kernels_as_rows(permuted))
    recovered = dict(zip(match.rows, match.cols))
    for j, i in enumerate(permutation):
        assert recovered[i] == j
        assert match.partner_of(int(i)) == j
    assert match.mean == pytest.approx(1.0)
    # scaled and slightly noisy copies are still matched
    noisy = 2.5 * permuted + 0.05 * rng.normal(size=permuted.shape)
    match = match_filters(kernels_as_rows(kernel), kernels_as_rows(noisy))
    assert all(dict(zip(match.rows, match.cols))[i] == j for j, i in enumerate(permutation))
    assert 0.95 < match.mean <= 1.0


def test_hungarian_is_optimal_against_brute_force():
    from itertools import permutations

    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    sim = cosine_matrix(a, b)
    best = max(sum(sim[i, p[i]] for i in range(6)) for p in permutations(range(6)))
    match = match_filters(a, b)
    assert match.similarities.sum() == pytest.approx(best)
    # a case where greedy fails: with B = (e0, e1) and these unit rows of A the cosines are
    # [[0.6, 0.5], [0.5, 0.0]]. Greedy takes 0->0 (0.6) and is left with 1->1 (0.0): mean 0.3.
    # The optimum pairs 0->1 and 1->0: mean 0.5.
    a = np.array([[0.6, 0.5, np.sqrt(1 - 0.61)], [0.5, 0.0, np.sqrt(0.75)]])
    b = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    match = match_filters(a, b)
    assert match.matrix == pytest.approx(np.array([[0.6, 0.5], [0.5, 0.0]]))
    assert list(match.cols) == [1, 0]
    assert match.mean == pytest.approx(0.5)


def test_unequal_banks_match_min_count():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(3, 10)), rng.normal(size=(5, 10))
    match = match_filters(a, b)
    assert len(match.rows) == 3 and len(set(match.cols)) == 3
    assert match.matrix.shape == (3, 5)


def test_cosines():
    assert cosine_matrix([[1, 0], [1, 1]], [[2, 0], [0, 3], [0, 0]]) == pytest.approx(
        np.array([[1, 0, 0], [np.sqrt(0.5), np.sqrt(0.5), 0]])
    )
    assert rowwise_cosine([[1, 0], [1, 1], [0, 0]], [[-3, 0], [1, 1], [1, 0]]) == pytest.approx([-1, 1, 0])
    with pytest.raises(ValueError):
        cosine_matrix(np.zeros((2, 3)), np.zeros((2, 4)))


def test_kernels_as_rows_order():
    kernel = np.arange(2 * 2 * 3 * 5).reshape(2, 2, 3, 5)
    rows = kernels_as_rows(kernel)
    assert rows.shape == (5, 12)
    assert np.array_equal(rows[2], kernel[..., 2].ravel())


def test_cross_layer_similarity():
    g1 = np.array([[1.0, 0.0], [0.0, 1.0]])
    g2 = np.array([[1.0, 0.0], [0.0, -1.0]])  # cos with g1: [1, -1] -> 0
    g3 = np.array([[1.0, 1.0], [1.0, 1.0]])  # with g1: [.707, .707]; with g2: [.707, -.707] -> 0
    mean, pairs = cross_layer_similarity({"a": g1, "b": g2, "c": g3})
    assert pairs[("a", "b")] == pytest.approx(0.0)
    assert pairs[("a", "c")] == pytest.approx(np.sqrt(0.5))
    assert pairs[("b", "c")] == pytest.approx(0.0)
    assert mean == pytest.approx(np.sqrt(0.5) / 3)
    assert np.isnan(cross_layer_similarity({"a": g1})[0])


def test_temporal_lean_is_each_input_frame_s_share_of_the_squared_weights():
    kernel = np.zeros((8, 8, 4, 32))
    kernel[2, 3, 1, 0] = 3.0  # frame 1: 3² + 4² = 25
    kernel[7, 0, 1, 31] = -4.0
    kernel[:, :, 3, 5] = 0.5  # frame 3 (the newest): 64 weights of 0.5², = 16
    assert temporal_lean(kernel).tolist() == [0.0, 25.0, 0.0, 16.0]
    rng = np.random.default_rng(0)
    even = rng.normal(size=(8, 8, 4, 32))
    lean = temporal_lean(even)
    assert np.sum(lean) == pytest.approx(np.sum(even**2))
    assert np.allclose(lean / lean.sum(), 0.25, atol=0.03)  # i.i.d. weights: about an even share each
    assert temporal_lean(2 * even) == pytest.approx(4 * lean)  # energy: quadratic in the weights
    with pytest.raises(ValueError, match=r"temporal_lean takes a Conv2D kernel \(kh, kw, frames, filters\), got shape \(8, 8, 4\)"):
        temporal_lean(np.zeros((8, 8, 4)))


def test_temporal_lean_takes_the_layer_and_says_what_a_name_needs():
    import keras

    keras.utils.set_random_seed(5)
    layer = keras.layers.Conv2D(6, 3)
    layer.build((None, 12, 12, 4))
    assert temporal_lean(layer).tolist() == temporal_lean(layer.get_weights()[0]).tolist()
    with pytest.raises(ValueError, match=r"got the string 'conv1' \(for a layer of that name: "
                                         r"temporal_lean\(model.get_layer\('conv1'\)\)\)"):
        temporal_lean("conv1")
    with pytest.raises(ValueError, match=r"takes a Conv2D kernel .* or a Conv2D layer, got dict"):
        temporal_lean({"kernel": 1})


def test_cka_never_passes_one():
    rng = np.random.default_rng(0)
    for _ in range(200):  # rounding put CKA(X, X) at 1 + 2⁻⁵² for about 1 in 10 of these
        x = rng.normal(size=(int(rng.integers(2, 60)), int(rng.integers(1, 40))))
        assert linear_cka(x, x) <= 1.0 and linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
