"""Theoretical receptive fields (Nature CNN) and the measured effective receptive field."""

import keras
import numpy as np
import pytest

from dqnviz.analysis import effective_receptive_field, receptive_field
from dqnviz.errors import UserError

try:
    from tests import models
except ImportError:  # pragma: no cover
    import models


@pytest.fixture(scope="module")
def nature():
    keras.utils.set_random_seed(0)
    return models.nature_cnn(4)


def test_nature_cnn(nature):
    assert receptive_field(nature, "conv1") == (8, 4)
    assert receptive_field(nature, "conv2") == (20, 8)
    assert receptive_field(nature, nature.get_layer("conv3")) == (36, 8)


def test_pooling_same_padding_dilation_and_separate_relu():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(4, 3, padding="same", name="a"),
        keras.layers.ReLU(),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Conv2D(4, 3, dilation_rate=2, name="b"),
    ])
    assert receptive_field(model, "a") == (3, 1)
    assert receptive_field(model, "pool") == (4, 2)
    assert receptive_field(model, "b") == (4 + 4 * 2, 2)


def test_effective_receptive_field_nature(nature):
    states = np.random.default_rng(0).integers(0, 256, (2, 84, 84, 4)).astype("uint8")
    for layer in ["conv1", "conv2", "conv3"]:
        erf = effective_receptive_field(nature, states, layer, mass=0.9)
        size, _ = erf["theoretical"]
        assert 0 < erf["size"] <= size
        assert erf["fraction"] >= 0.9
        assert erf["map"].shape == (84, 84) and erf["map"].max() == pytest.approx(1.0)
        # Nothing outside the theoretical receptive field.
        cy, cx = erf["centre"]
        rows, cols = np.nonzero(erf["map"])
        assert np.abs(rows - cy).max() <= (size - 1) / 2 and np.abs(cols - cx).max() <= (size - 1) / 2
    full = effective_receptive_field(nature, states, "conv1", mass=1.0)
    assert full["size"] <= 8


def test_erf_of_one_conv_is_its_kernel_support():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((9, 9, 1)), keras.layers.Conv2D(1, 3, name="c", use_bias=False)])
    model.get_layer("c").set_weights([np.ones((3, 3, 1, 1), dtype=np.float32)])
    erf = effective_receptive_field(model, np.ones((1, 9, 9, 1)), "c", mass=1.0)
    assert erf["centre"] == (4.0, 4.0) and erf["size"] == 3
    assert erf["map"].sum() == pytest.approx(9.0)
    assert effective_receptive_field(model, np.ones((1, 9, 9, 1)), "c", mass=0.1)["size"] == 1


def test_smallest_square_sides_for_an_even_spread_and_a_peaked_one():
    from dqnviz.analysis.receptive_field import smallest_square

    even = np.zeros((84, 84))
    even[24:60, 24:60] = 1.0  # a 36-px field, centred at 41.5: even sides
    assert smallest_square(even, (41.5, 41.5), 0.9) == (36, pytest.approx(1.0))  # 34² holds 89.2%
    size, fraction = smallest_square(even, (41.5, 41.5), 0.5)
    assert size == 26 and fraction == pytest.approx(26 ** 2 / 36 ** 2)  # 24² holds 44%: √0.5 · 36 ≈ 25.5
    peaked = even.copy()
    peaked[39:44, 39:44] = 100.0  # most of the mass at the centre
    assert smallest_square(peaked, (41.5, 41.5), 0.5)[0] < 10
    assert smallest_square(np.zeros((5, 5)), (2, 2), 0.5) == (0, 0.0)
    odd = np.zeros((9, 9))
    odd[4, 4], odd[2, 4] = 3.0, 1.0  # a whole-pixel centre: odd sides
    assert smallest_square(odd, (4, 4), 0.75) == (1, 0.75) and smallest_square(odd, (4, 4), 0.8)[0] == 5


def test_the_core_holds_half_the_gradient_and_lies_within_the_size(nature):
    states = np.random.default_rng(0).integers(0, 256, (2, 84, 84, 4)).astype("uint8")
    erf = effective_receptive_field(nature, states, "conv3")
    from dqnviz.analysis.receptive_field import smallest_square

    assert 0 < erf["core"] < erf["size"] <= 36
    assert erf["core"] == smallest_square(erf["map"], erf["centre"], 0.5)[0]


def test_errors(nature):
    with pytest.raises(UserError, match=r"'fc' has no spatial axes.*conv1, conv2, conv3"):
        receptive_field(nature, "fc")
    with pytest.raises(UserError, match=r"unknown layer 'conv4'.*conv1, conv2, conv3"):
        receptive_field(nature, "conv4")
    with pytest.raises(UserError, match=r"mass must be in"):
        effective_receptive_field(nature, np.zeros((1, 84, 84, 4), "uint8"), "conv1", mass=1.5)
    mlp = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2, name="d")])
    with pytest.raises(UserError, match=r"no Conv2D layers"):
        receptive_field(mlp, "d")


class _ResidualBlock(keras.layers.Layer):
    """Custom code the walk cannot read: x + relu(conv5×5(x)), keeping the size."""

    def __init__(self, **options):
        super().__init__(**options)
        self.conv = keras.layers.Conv2D(4, 5, padding="same")

    def call(self, x):
        return x + keras.ops.relu(self.conv(x))


class _SubclassedBlock(keras.Model):
    def __init__(self, **options):
        super().__init__(**options)
        self.conv = keras.layers.Conv2D(4, 3, padding="same")

    def call(self, x):
        return keras.ops.relu(self.conv(x))


def _around(middle, spatial=(32, 32, 2), stride=1):
    """Conv c1 (3×3, ``stride``) → ``middle`` → conv c2 (3×3), with a Dense head."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input(spatial)
    x = keras.layers.Conv2D(4, 3, strides=stride, name="c1")(inputs)
    x = keras.layers.Conv2D(4, 3, name="c2")(middle(x))
    pooled = keras.layers.GlobalMaxPooling2D()(x) if spatial[0] is None else keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(pooled))


@pytest.mark.parametrize("middle, stride, expected", [
    (lambda: _ResidualBlock(name="block"), 1, (3 + 4 + 2, 1)),
    (lambda: keras.layers.Lambda(lambda t: keras.ops.average_pool(t, 3, 1, "same"), name="blur"), 1, (3 + 2 + 2, 1)),
    (lambda: _SubclassedBlock(name="sub"), 2, (3 + 2 * 2 + 2 * 2, 2)),
    (lambda: keras.layers.Dropout(0.5), 1, (3 + 2, 1)),
])
def test_layers_of_unread_code_that_keep_the_size_add_their_measured_reach(middle, stride, expected):
    model = _around(middle(), stride=stride)
    assert receptive_field(model, "c2") == expected
    states = np.random.default_rng(0).random((4, 32, 32, 2), np.float32)
    erf = effective_receptive_field(model, states, "c2")
    assert erf["theoretical"] == expected and 0 < erf["size"] <= expected[0]


def test_a_measured_reach_works_for_images_of_any_size_and_moves_the_centre():
    assert receptive_field(_around(_ResidualBlock(name="block"), spatial=(None, None, 2)), "c2") == (9, 1)
    # out[y, x] = in[y, x − 2]: a reach of one pixel, two to the left of the unit
    shift = keras.layers.Lambda(lambda t: keras.ops.pad(t, [[0, 0], [0, 0], [2, 0], [0, 0]])[:, :, :-2, :])
    model = _around(shift, spatial=(20, 20, 2))
    assert receptive_field(model, "c2") == (5, 1)
    states = np.random.default_rng(0).random((2, 20, 20, 2), np.float32)
    erf = effective_receptive_field(model, states, "c2")
    unit = erf["unit"]  # c2's centre unit sees input pixels y + 0..4 and x − 2 + 0..4
    assert erf["centre"] == (unit[0] + 2, unit[1] + 2 - 2)


def test_keras_ops_on_symbolic_tensors_count_as_pointwise():
    """``x + relu(x)`` written with keras.ops in a functional graph (as ConvNeXt's residuals are)."""
    model = _around(lambda t: t + keras.ops.relu(t) * 2.0)
    assert receptive_field(model, "c2") == (5, 1)


class _TwoOutputs(keras.layers.Layer):
    def call(self, x):
        return x, keras.ops.roll(x, 2, axis=1)

    def compute_output_shape(self, shape):
        return shape, shape


class _ZeroBranch(keras.layers.Layer):
    """x + relu(conv5×5(x)) with the conv at zero: no reach until it has weights."""

    def __init__(self, **options):
        super().__init__(**options)
        self.conv = keras.layers.Conv2D(4, 5, padding="same", kernel_initializer="zeros")

    def call(self, x):
        return x + keras.ops.relu(self.conv(x))


class _ReadsEverything(keras.layers.Layer):
    def call(self, x):
        return x * keras.ops.mean(x, axis=(1, 2), keepdims=True)


def test_a_measured_reach_is_of_inference_of_the_output_used_and_of_the_current_weights():
    augment = keras.Sequential([keras.layers.RandomTranslation(0.3, 0.3), keras.layers.RandomZoom(0.3)])
    assert receptive_field(_around(augment), "c2") == (5, 1)  # measured with training=False: no augmentation
    # the second output of a two-output layer, shifted two rows: 3 + 2 rows of c2, from 2 rows up
    model = _around(lambda t: _TwoOutputs()(t)[1])
    assert receptive_field(model, "c2") == (5, 1)
    erf = effective_receptive_field(model, np.random.default_rng(0).random((2, 32, 32, 2), np.float32), "c2")
    assert erf["centre"] == (erf["unit"][0] + 2 - 2, erf["unit"][1] + 2)
    # branches that meet shifted against each other widen the field: x + roll(x, 3 columns)
    assert receptive_field(_around(lambda t: t + keras.ops.roll(t, 3, axis=2)), "c2") == ((5, 8), 1)
    branch = _ZeroBranch()
    model = _around(branch)
    assert receptive_field(model, "c2") == (5, 1)  # a zero branch reaches nothing
    branch.conv.set_weights([np.full_like(w, 0.1) for w in branch.conv.get_weights()])
    assert receptive_field(model, "c2") == (9, 1)  # measured again with the new weights


def test_a_layer_reading_the_whole_image_of_unknown_size_is_a_clear_error():
    with pytest.raises(UserError, match=r"layer 'everything' \(_ReadsEverything\) reaches 64 pixels or more from its "
                                         r"centre \(perhaps the whole image\), too far to measure"):
        receptive_field(_around(_ReadsEverything(name="everything"), spatial=(None, None, 2)), "c2")
    assert receptive_field(_around(_ReadsEverything()), "c2") == (3 + 29 + 2, 1)  # c1's whole 30×30 output


def test_a_layer_of_its_own_code_with_several_inputs_is_a_clear_error():
    attention = keras.layers.MultiHeadAttention(2, 4, attention_axes=(1, 2), name="attention")
    with pytest.raises(UserError, match=r"through layer 'attention' \(MultiHeadAttention\), code of its own with 2 inputs"):
        receptive_field(_around(lambda t: attention(t, t), spatial=(12, 12, 2)), "c2")
