"""saliency: gradient and SmoothGrad against the numpy reference; perturbation on a regional model."""

import numpy as np
import pytest

from dqnviz.analysis import saliency
from dqnviz.analysis.saliency import smoothgrad_noise
from dqnviz.errors import UserError

try:
    from tests import models
except ImportError:  # pragma: no cover
    import models


def assert_close(got, ref):
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def numpy_q(model, states):
    q, _ = models.numpy_input_gradient(model, states, None, lambda q: (q, np.zeros_like(q)), guided=False)
    return q


@pytest.fixture(scope="module", params=["fused_uint8", "separate_float"])
def case(request):
    if request.param == "fused_uint8":
        return models.fused_uint8_model(), models.random_states(5, seed=4)
    return models.separate_float_model(), models.random_states(5, seed=4, dtype="float32")


def test_gradient_default_action_is_argmax(case):
    model, states = case
    actions = numpy_q(model, states).argmax(axis=1)
    _, ref = models.numpy_input_gradient(model, states, None, models.q_seed(actions), guided=False)
    got = saliency(model, states)
    assert got.shape == states.shape and got.dtype == np.float32
    assert_close(got, ref)


def test_gradient_given_actions(case):
    model, states = case
    actions = np.array([2, 0, 1, 1, 2])
    _, ref = models.numpy_input_gradient(model, states, None, models.q_seed(actions), guided=False)
    assert_close(saliency(model, states, action=actions, method="gradient", batch_size=2), ref)
    _, ref1 = models.numpy_input_gradient(model, states, None, models.q_seed(np.full(5, 1)), guided=False)
    assert_close(saliency(model, states, action=1), ref1)


def test_smoothgrad_is_mean_of_noisy_gradients(case):
    model, states = case
    samples, seed = 4, 7
    actions = numpy_q(model, states).argmax(axis=1)
    value_range = 255.0 if states.dtype == np.uint8 else None
    if value_range is None:
        flat = states.reshape(len(states), -1)
        sigma = 0.2 * (flat.max(axis=1) - flat.min(axis=1))
    else:
        sigma = np.full(len(states), 0.2 * value_range)
    noise = smoothgrad_noise(states.shape, samples, sigma, seed)
    ref = np.zeros(states.shape)
    for k in range(samples):
        noisy = states.astype(np.float32) + noise[:, k]
        _, g = models.numpy_input_gradient(model, noisy, None, models.q_seed(actions), guided=False)
        ref += g / samples
    got = saliency(model, states, method="smoothgrad", samples=samples, noise=0.2, seed=seed, batch_size=8)
    assert_close(got, ref)
    again = saliency(model, states, method="smoothgrad", samples=samples, noise=0.2, seed=seed)
    np.testing.assert_allclose(again, got, rtol=1e-5, atol=1e-6 * np.abs(got).max())


def test_perturbation_follows_the_region_the_model_reads():
    model = models.region_model()
    states = models.random_states(3, seed=5, dtype="float32")
    got = saliency(model, states, method="perturbation", stride=2, radius=1.0, blur=1.5)
    assert got.shape == states.shape and (got >= 0).all()
    np.testing.assert_array_equal(got[..., 0], got[..., 3])  # broadcast over channels
    inside, outside = got[:, :5, :5].mean(), got[:, 8:, 8:].mean()
    assert inside > 20 * outside
    one = saliency(model, states, action=1, method="perturbation", stride=2, radius=1.0, blur=1.5)
    assert one[:, :5, :5].mean() > 20 * one[:, 8:, 8:].mean()


def test_perturbation_score_formula():
    model = models.separate_float_model()
    state = models.random_states(1, seed=6, dtype="float32")
    got = saliency(model, state, method="perturbation", stride=11, radius=2.0, blur=1.0)
    # Centres (0, 0), (0, 11), (11, 0), (11, 11): the map at a centre is the score there.
    from scipy.ndimage import gaussian_filter

    from dqnviz.analysis.saliency import gaussian_mask

    blurred = gaussian_filter(state.astype(np.float64), sigma=(0, 1.0, 1.0, 0))
    q0 = numpy_q(model, state)
    for y, x in [(0, 0), (0, 11), (11, 0), (11, 11)]:
        mask = gaussian_mask((12, 12), (y, x), 2.0)[None, :, :, None]
        q = numpy_q(model, state * (1 - mask) + blurred * mask)
        assert got[0, y, x, 0] == pytest.approx(0.5 * np.sum((q0 - q) ** 2), rel=1e-3, abs=1e-9)


def test_errors():
    model = models.fused_uint8_model()
    states = models.random_states(2)
    with pytest.raises(UserError, match=r"unknown saliency method 'occlusion'.*gradient, smoothgrad, perturbation"):
        saliency(model, states, method="occlusion")
    with pytest.raises(UserError, match=r"unknown option.*samplez.*samples"):
        saliency(model, states, method="smoothgrad", samplez=3)
    with pytest.raises(UserError, match=r"out of range.*3 actions"):
        saliency(model, states, action=3)
    with pytest.raises(UserError, match=r"one per state"):
        saliency(model, states, action=np.array([0, 1, 2]))


def test_a_model_with_two_outputs_is_told_which_to_keep():
    import keras

    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, name="conv")(inputs))
    model = keras.Model(inputs, [keras.layers.Dense(3, name="policy")(x), keras.layers.Dense(1, name="value")(x)],
                        name="two_heads")
    with pytest.raises(UserError, match=r"saliency reads one \(N, outputs\) output as scores; 'two_heads' has 2 "
                                        r"\(0: policy \(None, 3\), 1: value \(None, 1\)\): pass keras.Model"):
        saliency(model, np.zeros((2, 8, 8, 2), "float32"))


def test_a_softmax_written_as_a_callable_is_explained_by_its_logits():
    """Dense(activation=keras.ops.softmax) is the classifier of Dense(activation="softmax"): its
    saliency explains the same scores before the softmax."""
    import keras

    from dqnviz.analysis import saliency

    maps = []
    for activation in ("softmax", keras.ops.softmax, None):
        keras.utils.set_random_seed(2)
        inputs = keras.Input((12, 10, 3))
        x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs))
        model = keras.Model(inputs, keras.layers.Dense(5, activation=activation)(x))
        maps.append(saliency(model, np.random.default_rng(0).random((3, 12, 10, 3), np.float32), action=[0, 2, 4]))
    assert np.abs(maps[2]).max() > 0
    np.testing.assert_allclose(maps[1], maps[0], rtol=1e-5, atol=1e-6 * np.abs(maps[0]).max())
    np.testing.assert_allclose(maps[1], maps[2], rtol=1e-5, atol=1e-6 * np.abs(maps[2]).max())  # the logits' map
