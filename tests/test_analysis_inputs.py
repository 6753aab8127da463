"""What the analyses refuse, and inputs they used to get silently wrong: batch sizes, channels_first
layers, SmoothGrad's noise for int64 states, variable-size models, ``prefer``, empty filter lists,
``mass``, non-finite states, a negative blur and a method name given as the action.

Every model is tiny and built from a fixed seed.
"""

import functools

import keras
import numpy as np
import pytest

import dqnviz
from dqnviz.analysis.saliency import _value_range
from dqnviz.errors import UserError

L = keras.layers


@functools.lru_cache(maxsize=None)
def float_model():
    """Float (16, 16, 3) input, two convolutions, 3 actions."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((16, 16, 3)),
        L.Conv2D(4, 3, strides=2, activation="relu", name="c1"),
        L.Conv2D(5, 3, activation="relu", name="c2"),
        L.Flatten(),
        L.Dense(3, name="q"),
    ], name="small")


@functools.lru_cache(maxsize=None)
def uint8_model():
    """uint8 (20, 20, 4) input rescaled to [0, 1], like the Nature DQN."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((20, 20, 4), dtype="uint8")
    x = L.Rescaling(1 / 255)(inputs)
    x = L.Conv2D(4, 4, strides=2, activation="relu", name="c1")(x)
    x = L.Conv2D(6, 3, activation="relu", name="c2")(x)
    outputs = L.Dense(3, name="q")(L.Flatten()(x))
    return keras.Model(inputs, outputs, name="small_uint8")


@functools.lru_cache(maxsize=None)
def channels_first_model():
    """A (3, 16, 16) input read by a channels_first convolution of 4 filters."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((3, 16, 16))
    x = L.Conv2D(4, 3, activation="relu", data_format="channels_first", name="cf")(inputs)
    return keras.Model(inputs, L.Dense(2)(L.Flatten()(x)), name="first")


def padded_model(shape):
    """Convolutions with padding "same", a ZeroPadding2D and a BatchNormalization on ``shape``;
    the same weights for every shape."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape)
    x = L.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="c1")(inputs)
    x = L.ZeroPadding2D(1, name="pad")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv2D(5, 3, padding="same", name="c2")(x)
    outputs = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def states(n=2, seed=0):
    return np.random.default_rng(seed).random((n, 16, 16, 3)).astype(np.float32)


BATCH_SIZE_CALLS = {
    "guided_backprop": lambda m, s, b: dqnviz.guided_backprop(m, s, "c2", 0, batch_size=b),
    "gradient": lambda m, s, b: dqnviz.saliency(m, s, method="gradient", batch_size=b),
    "smoothgrad": lambda m, s, b: dqnviz.saliency(m, s, method="smoothgrad", samples=2, batch_size=b),
    "perturbation": lambda m, s, b: dqnviz.saliency(m, s, method="perturbation", batch_size=b),
    "top_activations": lambda m, s, b: dqnviz.top_activations(m, s, "c2", batch_size=b),
    "effective_receptive_field": lambda m, s, b: dqnviz.effective_receptive_field(m, s, "c2", batch_size=b),
}


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True])
@pytest.mark.parametrize("call", BATCH_SIZE_CALLS.values(), ids=BATCH_SIZE_CALLS.keys())
def test_batch_size_must_be_a_positive_integer(call, batch_size):
    with pytest.raises(UserError, match=rf"^batch_size must be a positive integer, got {batch_size!r}$"):
        call(float_model(), states(), batch_size)


def test_a_numpy_integer_batch_size_is_fine():
    model, s = float_model(), states(3)
    np.testing.assert_allclose(dqnviz.saliency(model, s, batch_size=np.int64(2)), dqnviz.saliency(model, s),
                               rtol=1e-5, atol=1e-7)


CHANNELS_FIRST_CALLS = {
    "guided_backprop": lambda m, s: dqnviz.guided_backprop(m, s, "cf", 0),
    "top_activations": lambda m, s: dqnviz.top_activations(m, s, "cf", [0]),
    "receptive_field": lambda m, s: dqnviz.receptive_field(m, "cf"),
    "effective_receptive_field": lambda m, s: dqnviz.effective_receptive_field(m, s, "cf"),
}


@pytest.mark.parametrize("call", CHANNELS_FIRST_CALLS.values(), ids=CHANNELS_FIRST_CALLS.keys())
def test_channels_first_layers_are_refused(call):
    model = channels_first_model()
    layer_states = np.random.default_rng(0).random((2, 3, 16, 16)).astype(np.float32)
    with pytest.raises(UserError, match=r"^layer 'cf' is channels_first; only channels_last layers can be analysed$"):
        call(model, layer_states)
    with pytest.raises(UserError, match=r"'cf' is channels_first"):
        dqnviz.guided_backprop(model, layer_states, model.get_layer("cf"), 0)


@pytest.mark.parametrize("model, batch, expected", [
    (uint8_model, np.array([[[[3, 9]]]] * 2, dtype=np.int64), [255.0, 255.0]),  # the model's dtype first
    (float_model, np.array([[[[3, 9]]], [[[0, 200]]]], dtype=np.int64), [6.0, 200.0]),  # int64 values
    (float_model, np.array([[[[3, 9]]]] * 2, dtype=np.uint8), [255.0, 255.0]),  # 8-bit states
    (float_model, np.array([[[[0.1, 0.4]]], [[[0.5, 0.5]]]], dtype=np.float32), [0.3, 1.0]),  # floats
], ids=["uint8 model", "int64 states", "uint8 states", "float states"])
def test_smoothgrad_value_range(model, batch, expected):
    np.testing.assert_allclose(_value_range(model(), batch, None), expected, rtol=1e-6)


def test_smoothgrad_noise_of_int64_states_is_that_of_uint8_ones():
    model = uint8_model()
    pixels = np.random.default_rng(4).integers(0, 256, (2, 20, 20, 4))  # numpy's default: int64
    options = dict(method="smoothgrad", samples=3, seed=1)
    wide = dqnviz.saliency(model, pixels, **options)
    narrow = dqnviz.saliency(model, pixels.astype(np.uint8), **options)
    assert np.abs(narrow).max() > 0
    np.testing.assert_allclose(wide, narrow, rtol=1e-5, atol=1e-6 * np.abs(narrow).max())


def test_effective_receptive_field_of_a_variable_size_model_uses_the_states_size():
    variable, fixed = padded_model((None, None, 3)), padded_model((17, 19, 3))
    fixed.set_weights(variable.get_weights())
    images = np.random.default_rng(5).random((3, 17, 19, 3)).astype(np.float32)
    got = dqnviz.effective_receptive_field(variable, images, "c2", mass=0.8)
    want = dqnviz.effective_receptive_field(fixed, images, "c2", mass=0.8)
    # c2's output is 11×12 (⌈17/2⌉ + 2 by ⌈19/2⌉ + 2): centre unit (5, 6)
    assert got["unit"] == want["unit"] == (5, 6)
    assert got["centre"] == want["centre"]
    assert got["size"] == want["size"] and got["theoretical"] == want["theoretical"] == (7, 2)
    np.testing.assert_allclose(got["map"], want["map"], rtol=1e-5, atol=1e-6)
    assert dqnviz.receptive_field(variable, "c2") == (7, 2)


def test_prefer_must_be_one_bool_per_state():
    model, s = float_model(), states(2)
    for prefer in ([True] * 5, np.array([0, 1]), [[True, False]]):
        with pytest.raises(UserError, match=r"prefer must be a boolean mask with one entry per state \(2\)"):
            dqnviz.top_activations(model, s, "c2", [0], prefer=prefer)
    assert len(dqnviz.top_activations(model, s, "c2", [0, 1], prefer=[False, True])) == 2
    assert len(dqnviz.top_activations(model, s, "c2", [0], prefer=True)) == 1


@pytest.mark.parametrize("filters", [[], np.array([], dtype=np.int64)], ids=["list", "int array"])
def test_an_empty_filter_list_asks_for_at_least_one(filters):
    with pytest.raises(UserError, match=r"^give at least one filter index for layer 'c2', got none$"):
        dqnviz.top_activations(float_model(), states(), "c2", filters)


@pytest.mark.parametrize("mass", ["0.5", None, True, float("nan"), 0.0, 1.5])
def test_mass_must_be_a_number_in_0_1(mass):
    with pytest.raises(UserError, match=r"^mass must be in \(0, 1\], a number like 0.9, got "):
        dqnviz.effective_receptive_field(float_model(), states(), "c2", mass=mass)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("call", [
    lambda m, s: dqnviz.saliency(m, s),
    lambda m, s: dqnviz.guided_backprop(m, s, "c1", 0),
    lambda m, s: dqnviz.top_activations(m, s, "c1"),
], ids=["saliency", "guided_backprop", "top_activations"])
def test_non_finite_states_are_refused(call, value):
    s = states(2)
    s[1, 4, 5, 0] = value
    with pytest.raises(UserError, match=r"^states hold 1 NaN or infinite values; the analyses need finite inputs$"):
        call(float_model(), s)


def test_perturbation_blur_must_not_be_negative():
    with pytest.raises(UserError, match=r"^perturbation saliency needs blur to be a finite number >= 0, got -1$"):
        dqnviz.saliency(float_model(), states(1), method="perturbation", blur=-1)


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "perturbation"])
def test_a_method_name_given_as_the_action_says_to_pass_it_as_method(method):
    with pytest.raises(UserError, match=rf"^'{method}' is a saliency method, not an action: pass it as method='{method}'$"):
        dqnviz.saliency(float_model(), states(), method)
