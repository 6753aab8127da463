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


def _strided_conv(kernel=None, activation=None):
    """One 8×8 stride-4 Conv2D "c1" over 84×84×4 states (20×20 units), as the Nature DQN's conv1."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((84, 84, 4)),
                              keras.layers.Conv2D(2, 8, strides=4, activation=activation, name="c1")])
    if kernel is not None:
        model.get_layer("c1").set_weights([kernel, np.zeros(2, np.float32)])
    return model


def _nonzero_box(gradient):
    """(y0, y1, x0, x1) of the input pixels where the gradient is non-zero, ends exclusive."""
    ys, xs = np.nonzero(np.abs(gradient).sum(axis=-1))
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def test_tied_maxima_give_the_gradient_of_the_first_unit_only():
    """On a constant state every unit of a filter ties; the gradient is that of unit (0, 0), whose
    receptive field is the 8×8 patch in the corner, not the sum over all 400 units. The kernel
    holds small whole numbers, so that every unit's sum is exact in float32 in any order: a tie
    whatever order the backend sums in (TensorFlow's oneDNN, under load, once summed random
    float weights in another order at (17, 14), breaking the tie by one bit)."""
    kernel = np.random.default_rng(0).integers(-4, 5, (8, 8, 4, 2)).astype(np.float32)
    model = _strided_conv(kernel=kernel)
    const = np.full((84, 84, 4), 7.0, np.float32)
    (state, position, _), = top_activations(model, const, "c1", filters=[0])
    assert (state, position) == (0, (0, 0))
    gradient = guided_backprop(model, const, "c1", 0)
    assert _nonzero_box(gradient) == (0, 8, 0, 8)
    np.testing.assert_allclose(gradient[:8, :8], model.get_layer("c1").kernel.numpy()[..., 0], rtol=1e-6)


def test_a_tied_plateau_is_differentiated_at_the_unit_top_activations_names():
    """A bright 16×16 square on black: every unit wholly inside it ties at 8·8·4 (kernel of ones).
    The first in row-major order is (10, 5), at input y 40, x 20; its gradient is its own 8×8 patch."""
    model = _strided_conv(kernel=np.ones((8, 8, 4, 2), np.float32), activation="relu")
    state = np.zeros((84, 84, 4), np.uint8)
    state[40:56, 20:36] = 1
    (_, (y, x), value), = top_activations(model, state, "c1", filters=[1])
    assert (y, x) == (10, 5) and value == 256
    gradient = guided_backprop(model, state, "c1", 1)
    assert _nonzero_box(gradient) == (4 * y, 4 * y + 8, 4 * x, 4 * x + 8)
    np.testing.assert_array_equal(gradient[40:48, 20:28], 1.0)


def test_a_given_position_names_the_unit_per_state():
    model = _strided_conv()
    states = np.full((2, 84, 84, 4), 3.0, np.float32)
    gradients = guided_backprop(model, states, "c1", 1, position=np.array([[3, 5], [19, 0]]))
    assert _nonzero_box(gradients[0]) == (12, 20, 20, 28)
    assert _nonzero_box(gradients[1]) == (76, 84, 0, 8)
    one = guided_backprop(model, states[0], "c1", 1, position=(3, 5))
    np.testing.assert_array_equal(one, gradients[0])
    with pytest.raises(UserError, match=r"position \(20, 0\) is outside layer 'c1'.*20×20"):
        guided_backprop(model, states, "c1", 1, position=(20, 0))
    with pytest.raises(UserError, match=r"one per state \(2, 2\)"):
        guided_backprop(model, states, "c1", 1, position=[(0, 0)] * 3)
    with pytest.raises(UserError, match=r"no spatial axes"):
        guided_backprop(models.fused_uint8_model(), models.random_states(2), "fc", 0, position=(0, 0))


def test_top_activations_prefers_states_with_a_whole_history():
    """A game's first state (blank frames from before the start) wins for a filter only where the
    filter fires on no other state."""
    import keras

    from dqnviz.analysis import full_history, top_activations

    inputs = keras.Input((8, 8, 4))
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="c")
    model = keras.Model(inputs, conv(inputs))
    # filter 0 sums the frames; filter 1 fires only on the last frame minus the others (sudden light)
    conv.set_weights([np.array([[[[1.0, -1.0], [1.0, -1.0], [1.0, -1.0], [1.0, 3.0]]]], np.float32), np.zeros(2, np.float32)])
    start = np.zeros((8, 8, 4), np.float32)
    start[2, 3, 3] = 5.0  # the game's first state: only its newest frame is lit
    playing = np.ones((8, 8, 4), np.float32)
    playing[5, 6] = 2.0
    states = np.stack([start, playing])
    assert full_history(states).tolist() == [False, True]
    # without a preference, the start state wins both filters (5 > 4·2 is false for filter 0: 8 wins)
    assert [s for s, _, _ in top_activations(model, states, "c")] == [1, 0]
    chosen = top_activations(model, states, "c", prefer=full_history(states))
    assert chosen[0] == (1, (5, 6), 8.0)
    # filter 1 is 3·1 − 3·1 = 0 on the whole-history state: it fires on none of them, so the start state
    assert chosen[1] == (0, (2, 3), 15.0)
    # once it fires in play (3·2 − 3 = 3 at (1, 1)), that state wins over the start's 15
    lit = np.ones((8, 8, 4), np.float32)
    lit[1, 1, 3] = 2.0
    chosen = top_activations(model, np.stack([start, playing, lit]), "c", prefer=full_history(np.stack([start, playing, lit])))
    assert chosen[1] == (2, (1, 1), 3.0)


def test_all_zero_images_are_said_in_one_warning_naming_their_filters():
    """Filter 1's kernel is negative and the states positive: its ReLU unit never fires, so its
    image is all zero, and a researcher is told so rather than left with a blank picture."""
    import warnings

    from dqnviz.analysis import ZeroGradientWarning

    kernel = np.stack([np.ones((8, 8, 4)), -np.ones((8, 8, 4))], axis=-1).astype(np.float32)
    model = _strided_conv(kernel, activation="relu")
    states = np.random.default_rng(0).integers(1, 256, (3, 84, 84, 4)).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a firing filter warns of nothing
        assert np.abs(guided_backprop(model, states, "c1", 0)).max() > 0
    with pytest.warns(ZeroGradientWarning, match=r"^guided_backprop: 2 of 3 images are all zero; c1 filter 1 on "
                                                 r"states 0, 2: the unit is 0 there") as caught:
        images = guided_backprop(model, states, "c1", np.array([1, 0, 1]))
    assert len(caught) == 1 and not images[0].any() and images[1].any() and not images[2].any()
    with pytest.warns(ZeroGradientWarning, match=r"the image is all zero; c1 filter 1: the unit is 0 there"):
        guided_backprop(model, states[0], "c1", 1)


def test_a_firing_unit_whose_every_guided_path_is_cut_is_told_apart():
    """c2 fires through its bias while its weights are all negative: the gradient reaching c1's
    ReLUs is negative, and the guided rule drops it. The image is all zero though the unit fires."""
    from dqnviz.analysis import ZeroGradientWarning

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 3, activation="relu", name="c1"),
                              keras.layers.Conv2D(1, 1, activation="relu", name="c2")])
    model.get_layer("c1").set_weights([np.ones((3, 3, 1, 1), np.float32), np.zeros(1, np.float32)])
    model.get_layer("c2").set_weights([-np.ones((1, 1, 1, 1), np.float32), np.full(1, 1000.0, np.float32)])
    with pytest.warns(ZeroGradientWarning, match=r"c2 filter 0: the unit fires, but guided backprop's rule"):
        image = guided_backprop(model, np.ones((8, 8, 1), np.float32), "c2", 0)
    assert not image.any()


def _relu_spellings():
    """ReLUs written as callables rather than "relu": each computes the same function."""
    native = __import__("tensorflow").nn.relu if keras.config.backend() == "tensorflow" else __import__("jax").nn.relu
    return {"keras.ops.relu": keras.ops.relu, "native": native, "lambda": lambda t: keras.activations.relu(t)}


@pytest.mark.parametrize("spelling", ["keras.ops.relu", "native", "lambda", "Lambda layer"])
def test_a_relu_written_as_any_callable_gets_the_guided_rule(spelling):
    """Conv2D(activation=keras.ops.relu), tf.nn.relu / jax.nn.relu, a lambda, or a Lambda layer:
    the same network as "relu", so the same guided images (they had been plain gradients)."""
    reference = models.fused_uint8_model()
    keras.utils.set_random_seed(0)
    inputs = keras.Input(models.SHAPE, dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    if spelling == "Lambda layer":
        x = keras.layers.Lambda(keras.ops.relu)(keras.layers.Conv2D(4, 4, strides=2, name="conv1")(x))
        relu = keras.ops.relu
    else:
        relu = _relu_spellings()[spelling]
        x = keras.layers.Conv2D(4, 4, strides=2, activation=relu, name="conv1")(x)
    x = keras.layers.Activation(relu)(keras.layers.Conv2D(6, 3, strides=1, name="conv2")(x))
    x = keras.layers.Dense(8, activation=relu, name="fc")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, keras.layers.Dense(models.ACTIONS, name="q")(x))
    for name in ("conv1", "conv2", "fc", "q"):
        model.get_layer(name).set_weights(reference.get_layer(name).get_weights())
    states = models.random_states(8, seed=5)
    np.testing.assert_allclose(model.predict(states, verbose=0), reference.predict(states, verbose=0), rtol=1e-5)
    for layer in ("conv1", "conv2", "fc"):
        # the filter that fires most on these states, so that no image is all zero
        values = keras.Model(reference.input, reference.get_layer(layer).output).predict(states, verbose=0)
        strongest = int(np.argmax(values.reshape(-1, values.shape[-1]).max(0)))
        want = guided_backprop(reference, states, layer, strongest)
        assert_close(guided_backprop(model, states, layer, strongest), want)


def test_only_functions_that_compute_a_rectifier_are_taken_for_one():
    from dqnviz.analysis.relu import acts_as_rectifier, acts_as_softmax

    assert acts_as_rectifier(keras.ops.relu6) and acts_as_rectifier(lambda t: keras.ops.leaky_relu(t, negative_slope=0.1))
    assert acts_as_rectifier(keras.activations.relu) and not acts_as_rectifier(keras.activations.tanh)
    for other in (keras.ops.tanh, keras.ops.elu, lambda t: 2 * t, lambda t: keras.ops.relu(t) + 1, lambda t: -keras.ops.relu(t),
                  lambda t: keras.ops.sum(t, axis=-1), lambda t: keras.ops.leaky_relu(t, negative_slope=1.5), None, "relu"):
        assert not acts_as_rectifier(other)
    assert acts_as_softmax(keras.ops.softmax) and acts_as_softmax(keras.activations.softmax)
    assert not acts_as_softmax(keras.ops.sigmoid) and not acts_as_softmax(keras.ops.relu)


def test_a_lambda_with_arguments_is_probed_once_and_a_float16_activation_in_its_own_dtype():
    """A Lambda layer with arguments is read once (its probe kept under the layer, not under a new
    function per call), and an activation that takes float16 only is probed in float16."""
    from dqnviz.analysis import relu

    leaky = keras.layers.Lambda(keras.ops.leaky_relu, arguments={"negative_slope": 0.2})
    squared = keras.layers.Lambda(keras.ops.power, arguments={"x2": 2})
    before = len(relu._probed)
    for _ in range(5):
        assert relu.is_relu_output(leaky) and not relu.is_relu_output(squared)
    assert len(relu._probed) == before + 2

    def float16_only(t):
        if keras.backend.standardize_dtype(t.dtype) != "float16":
            raise TypeError("float16 inputs only")
        return keras.ops.relu(t)

    assert not relu.acts_as_rectifier(float16_only)
    assert relu.acts_as_rectifier(float16_only, "float16")
    layer = keras.layers.Activation(float16_only, dtype="mixed_float16")
    assert layer.compute_dtype == "float16" and relu.is_relu_output(layer)


def test_a_layer_of_its_own_code_is_named_in_a_warning_and_the_rest_still_guided():
    import warnings

    from dqnviz.analysis import UnguidedCodeWarning

    keras.utils.set_random_seed(21)
    inputs = keras.Input((12, 12, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="a")(inputs)
    x = models.ReluInside(name="inside")(x)
    x = keras.layers.Conv2D(3, 3, activation="relu", name="b")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    states = np.random.default_rng(4).random((2, 12, 12, 2), np.float32)
    with pytest.warns(UnguidedCodeWarning, match=r"layer 'inside' \(ReluInside\) runs code of its own"):
        guided_backprop(model, states, "b", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnguidedCodeWarning)
        guided_backprop(model, states, "a", 1)  # a path with no such layer: no warning
