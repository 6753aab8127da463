"""guided_backprop against an independent numpy forward/backward pass of tiny conv nets."""

import keras
import numpy as np
import pytest

from dqnviz.analysis import conv_layers, guided_backprop, top_activations
from dqnviz.errors import UserError

try:
    from tests import models
except ImportError:  # pragma: no cover - tests/ on sys.path
    import models

BUILDERS = {
    "fused_uint8": (models.fused_uint8_model, "uint8"),
    "separate_float": (models.separate_float_model, "float32"),
}


def assert_close(got, ref):
    assert np.abs(ref).max() > 0, "reference gradient is all zero: the test would be vacuous"
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def case(request):
    build, dtype = BUILDERS[request.param]
    return build(), models.random_states(6, seed=3, dtype=dtype)


@pytest.mark.parametrize("layer", ["conv1", "conv2", "fc"])
def test_matches_numpy_reference_per_state_filters(case, layer):
    model, states = case
    filters = np.array([0, 1, 2, 3, 1, 0])
    got = guided_backprop(model, states, layer, filters)
    _, ref = models.numpy_input_gradient(model, states, layer, models.max_filter_seed(filters), guided=True)
    assert got.shape == states.shape and got.dtype == np.float32
    assert_close(got, ref)


def test_single_filter_and_layer_object_and_single_state(case):
    model, states = case
    layer = model.get_layer("conv2")
    got = guided_backprop(model, states, layer, 5, batch_size=3)
    _, ref = models.numpy_input_gradient(model, states, "conv2", models.max_filter_seed(5), guided=True)
    assert_close(got, ref)
    one = guided_backprop(model, states[2], "conv2", 5)
    assert one.shape == states.shape[1:]
    np.testing.assert_allclose(one, got[2], rtol=1e-5, atol=1e-7)


def test_guided_rule_differs_from_plain_gradient(case):
    model, states = case
    filters = np.zeros(len(states), dtype=int)
    seed = models.max_filter_seed(filters)
    _, guided = models.numpy_input_gradient(model, states, "fc", seed, guided=True)
    _, plain = models.numpy_input_gradient(model, states, "fc", seed, guided=False)
    assert not np.allclose(guided, plain)
    assert_close(guided_backprop(model, states, "fc", filters), guided)


def test_model_is_not_modified(case):
    model, states = case
    before = [w.copy() for w in model.get_weights()]
    activations = [getattr(layer, "activation", None) for layer in model.layers]
    expected = np.asarray(model(states.astype(model.inputs[0].dtype)))
    guided_backprop(model, states, "conv2", 0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert activations == [getattr(layer, "activation", None) for layer in model.layers]
    np.testing.assert_allclose(np.asarray(model(states.astype(model.inputs[0].dtype))), expected)


def test_conv_layers_and_top_activations(case):
    model, states = case
    assert conv_layers(model) == ["conv1", "conv2"]
    result = top_activations(model, states, "conv2", batch_size=4)
    assert len(result) == 6
    acts, _ = models.numpy_input_gradient(
        model, states, "conv2", lambda a: (a, np.zeros_like(a)), guided=False
    )
    for f, (n, (y, x), value) in enumerate(result):
        assert value == pytest.approx(acts[..., f].max(), rel=1e-4, abs=1e-6)
        assert value == pytest.approx(acts[n, y, x, f], rel=1e-4, abs=1e-6)
    subset = top_activations(model, states, "conv1", filters=[3, 1])
    assert [r[2] for r in subset] == pytest.approx([acts_max for acts_max in (
        top_activations(model, states, "conv1")[3][2], top_activations(model, states, "conv1")[1][2])])


def test_errors():
    model = models.fused_uint8_model()
    states = models.random_states(2)
    with pytest.raises(UserError, match=r"unknown layer 'conv9'.*conv1, conv2"):
        guided_backprop(model, states, "conv9", 0)
    with pytest.raises(UserError, match=r"filter 4 is out of range.*4 filters.*0\.\.3"):
        guided_backprop(model, states, "conv1", 4)
    with pytest.raises(UserError, match=r"filter -1 is out of range"):
        guided_backprop(model, states, "conv1", np.array([0, -1]))
    with pytest.raises(UserError, match=r"one per state"):
        guided_backprop(model, states, "conv1", np.array([0, 1, 2]))
    with pytest.raises(UserError, match=r"do not fit model"):
        guided_backprop(model, states[:, :10], "conv1", 0)
    with pytest.raises(UserError, match=r"not part of model"):
        guided_backprop(model, states, keras.layers.Dense(3), 0)
    with pytest.raises(UserError, match=r"out of range"):
        top_activations(model, states, "conv2", filters=[6])

    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input((12, 12, 4)), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(UserError, match=r"no Conv2D layers"):
        guided_backprop(mlp, states, "dense", 0)
    with pytest.raises(UserError, match=r"no Conv2D layers"):
        conv_layers(mlp)

    vector = keras.Sequential([keras.Input((16,)), keras.layers.Dense(3)])
    with pytest.raises(UserError, match=r"does not take images"):
        conv_layers(vector)
