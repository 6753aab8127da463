"""The analyses on Keras image models other than the Nature DQN: BatchNormalization, padding
"same", pooling, DepthwiseConv2D / SeparableConv2D, residual Add branches, ReLU6 / LeakyReLU,
Dropout, float RGB input, a softmax classifier and a Sequential nested in a Functional model.

Every model is tiny and built from a fixed seed; receptive fields are checked against values
worked out by hand in the comments.
"""

import functools

import keras
import numpy as np
import pytest

import dqnviz
from dqnviz.analysis import top_activations
from dqnviz.errors import UserError

L = keras.layers


@functools.lru_cache(maxsize=None)
def mixed_model():
    """A float RGB classifier with most of what image models contain, 32×32×3 input.

    Receptive fields (size, stride, centre of unit 0), worked out by hand:

    ========  ===========================  =====  ======  =======
    layer     what                         size   stride  centre
    ========  ===========================  =====  ======  =======
    c1, bn    Conv 3, same                 3      1       0
    pool      MaxPooling 2                 4      2       0.5
    res       Conv 3, same, in a residual  8      2       0.5
    add       max(4, 8) over the branches  8      2       0.5
    dw        Depthwise 3, same            12     2       0.5
    sep       Separable 3, stride 2        16     4       2.5
    pad       ZeroPadding 1                16     4       −1.5
    c2        Conv 3                       24     4       2.5
    ========  ===========================  =====  ======  =======
    """
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = L.Rescaling(1 / 255, name="scale")(inputs)
    x = L.Conv2D(4, 3, padding="same", use_bias=False, name="c1")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    branch = L.Conv2D(4, 3, padding="same", activation="relu", name="res")(x)
    x = L.Add(name="add")([x, branch])
    x = L.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw")(x)
    x = L.SeparableConv2D(6, 3, strides=2, name="sep")(x)
    x = L.LeakyReLU(name="leaky")(x)
    x = L.ZeroPadding2D(1, name="pad")(x)
    x = L.Conv2D(5, 3, name="c2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.5, name="drop")(x)
    outputs = L.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="mixed")
    _set_batch_norm_statistics(model.get_layer("bn"), seed=1)
    return model


def _set_batch_norm_statistics(layer, seed):
    """Moving statistics far from a batch's own, so training mode would give other values."""
    rng = np.random.default_rng(seed)
    gamma, beta, mean, variance = layer.get_weights()
    layer.set_weights([rng.uniform(0.5, 2, gamma.shape), rng.normal(0, 0.5, beta.shape),
                       rng.normal(0, 0.3, mean.shape), rng.uniform(0.2, 3, variance.shape)])


def rgb_states(count, shape=(32, 32, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count,) + shape).astype(np.float32)


def box_around(centre, size):
    """Input rows (or columns) ``[lo, hi)`` of a receptive field of ``size`` centred on ``centre``,
    cut at the image's top (left) edge."""
    half = (size - 1) / 2
    return max(int(np.ceil(centre - half)), 0), int(np.floor(centre + half)) + 1


def assert_inside(gradient, rows, cols):
    """The gradient is non-zero, and zero outside rows × cols of every state."""
    magnitude = np.abs(gradient).sum(axis=-1)
    assert magnitude.max() > 0, "all-zero gradient: the check would be vacuous"
    outside = np.ones(magnitude.shape[-2:], bool)
    outside[rows[0]:rows[1], cols[0]:cols[1]] = False
    assert magnitude[..., outside].max() == 0


def test_conv_layers_lists_depthwise_and_separable_convolutions():
    assert dqnviz.conv_layers(mixed_model()) == ["c1", "res", "dw", "sep", "c2"]


@pytest.mark.parametrize("layer, expected", [
    ("c1", (3, 1)), ("bn", (3, 1)), ("pool", (4, 2)), ("res", (8, 2)), ("add", (8, 2)),
    ("dw", (12, 2)), ("sep", (16, 4)), ("pad", (16, 4)), ("c2", (24, 4)),
])
def test_receptive_field_through_same_padding_pooling_residual_and_separable(layer, expected):
    assert dqnviz.receptive_field(mixed_model(), layer) == expected


@pytest.mark.parametrize("layer, start, stride, size, position", [
    ("bn", 0.0, 1, 3, (5, 9)),     # after BatchNorm; padding "same" keeps unit (y, x) at pixel (y, x)
    ("res", 0.5, 2, 8, (7, 2)),    # inside the residual branch
    ("dw", 0.5, 2, 12, (0, 15)),   # a depthwise conv at the border: the field is cut by the image
    ("c2", 2.5, 4, 24, (3, 4)),    # after a strided separable conv and ZeroPadding2D
])
def test_guided_backprop_stays_inside_the_units_receptive_field(layer, start, stride, size, position):
    model = mixed_model()
    states = rgb_states(3)
    gradient = dqnviz.guided_backprop(model, states, layer, 1, position=position)
    assert gradient.shape == states.shape and np.isfinite(gradient).all()
    rows = box_around(start + stride * position[0], size)
    cols = box_around(start + stride * position[1], size)
    assert_inside(gradient, rows, cols)


def test_effective_receptive_field_is_centred_where_the_walk_says():
    model = mixed_model()
    erf = dqnviz.effective_receptive_field(model, rgb_states(2), "c2", mass=1.0)
    # c2 is 7×7; its centre unit (3, 3) looks at 2.5 + 4·3 = 14.5 on both axes.
    assert erf["unit"] == (3, 3) and erf["centre"] == (14.5, 14.5)
    assert erf["theoretical"] == (24, 4) and 0 < erf["size"] <= 24
    rows, cols = np.nonzero(erf["map"])
    assert rows.min() >= 3 and rows.max() <= 26 and cols.min() >= 3 and cols.max() <= 26


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "perturbation"])
def test_saliency_of_a_float_rgb_classifier(method):
    states = rgb_states(2)
    options = {"samples": 4} if method == "smoothgrad" else {"stride": 8} if method == "perturbation" else {}
    maps = dqnviz.saliency(mixed_model(), states, method=method, **options)
    assert maps.shape == states.shape and maps.dtype == np.float32
    assert np.isfinite(maps).all() and np.abs(maps).max() > 0


def _mixed_logits(model, states):
    """The mixed model's scores before its softmax, in inference mode: what saliency explains."""
    features = keras.Model(model.input, model.get_layer("probs").input)(states, training=False)
    head = model.get_layer("probs")
    return keras.ops.convert_to_numpy(keras.ops.matmul(features, head.kernel) + head.bias).astype(np.float64)


def test_smoothgrad_of_the_batch_norm_residual_model_is_the_mean_gradient_at_its_noisy_copies():
    """S = 1/n Σ_i dz(s + ε_i, a)/ds with ε_i ~ N(0, σ²), σ = noise · value_range, the noise drawn
    as the docstring says; the plain gradients are checked against finite differences elsewhere."""
    model, states, samples = mixed_model(), rgb_states(2), 4
    got = dqnviz.saliency(model, states, action=1, method="smoothgrad", samples=samples, noise=0.15,
                          value_range=255.0, seed=7)
    noise = np.random.default_rng(7).standard_normal((2, samples, 32, 32, 3), dtype=np.float32) * np.float32(0.15 * 255)
    noisy = (states[:, None] + noise).reshape(-1, 32, 32, 3)
    expected = dqnviz.saliency(model, noisy, action=1).reshape(2, samples, 32, 32, 3).mean(axis=1)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_perturbation_of_the_batch_norm_residual_model_at_each_centre_is_its_definition():
    """At each centre (y, x) the map is ½ ‖z(s) − z(s')‖², s' = s·(1 − M) + G_blur(s)·M with the
    Gaussian mask M of ``radius`` around (y, x): worked out here with scipy and the model's logits."""
    from scipy.ndimage import gaussian_filter

    model, states = mixed_model(), rgb_states(2)
    stride, radius, blur = 8, 5.0, 3.0
    got = dqnviz.saliency(model, states, method="perturbation", stride=stride, radius=radius, blur=blur)
    clean, blurred = _mixed_logits(model, states), gaussian_filter(states, sigma=(0, blur, blur, 0))
    rows, cols = np.mgrid[0:32, 0:32]
    for y in range(0, 32, stride):
        for x in range(0, 32, stride):
            mask = np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / (2 * radius ** 2)).astype(np.float32)[None, ..., None]
            moved = _mixed_logits(model, states * (1 - mask) + blurred * mask)
            expected = 0.5 * ((clean - moved) ** 2).sum(axis=1)
            for channel in range(3):
                np.testing.assert_allclose(got[:, y, x, channel], expected, rtol=1e-3, atol=1e-6)
    assert got.min() >= 0 and got.max() > 0


def test_top_activations_of_a_batch_norm_layer_use_the_moving_statistics():
    model = mixed_model()
    states = rgb_states(3)
    reference = keras.Model(model.inputs[0], model.get_layer("bn").output)(states, training=False)
    reference = keras.ops.convert_to_numpy(reference)
    for value, (state, (y, x), found) in zip(reference.max(axis=(0, 1, 2)), top_activations(model, states, "bn")):
        assert found == pytest.approx(value, rel=1e-5, abs=1e-5)
        assert reference[state, y, x].max() >= found - 1e-5


def test_batch_norm_and_dropout_are_in_inference_mode_in_gradients():
    # Linear after the input, so dQ/ds is the same for any state; in training mode the batch
    # statistics would make it depend on the batch, and Dropout would make it random.
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((6, 6, 3)), L.Conv2D(2, 3, name="c"), L.BatchNormalization(name="bn"),
        L.Dropout(0.5), L.Flatten(), L.Dense(2, name="q"),
    ])
    _set_batch_norm_statistics(model.get_layer("bn"), seed=4)
    states = rgb_states(2, (6, 6, 3), seed=5)
    gradient = dqnviz.saliency(model, states, action=0)
    one = dqnviz.saliency(model, states[:1], action=0)
    np.testing.assert_allclose(gradient[0], one[0], rtol=1e-5, atol=1e-7)
    # Finite differences of the model in inference mode, at a few pixels.
    base = keras.ops.convert_to_numpy(model(states[:1], training=False))[0, 0]
    for index in [(0, 0, 0), (2, 3, 1), (5, 5, 2)]:
        moved = states[:1].copy()
        moved[(0,) + index] += 1.0
        slope = keras.ops.convert_to_numpy(model(moved, training=False))[0, 0] - base
        assert gradient[(0,) + index] == pytest.approx(slope, rel=1e-3, abs=1e-4)


RECTIFIERS = {
    # name: (layers after the 1×1 conv "a", guided gradient at inputs 3, 8, −2)
    "fused relu6": (lambda: [], "relu6", [1.0, 0.0, 0.0]),
    "ReLU(max_value=6)": (lambda: [L.ReLU(max_value=6)], None, [1.0, 0.0, 0.0]),
    "Activation relu6": (lambda: [L.Activation("relu6")], None, [1.0, 0.0, 0.0]),
    "LeakyReLU": (lambda: [L.LeakyReLU(negative_slope=0.2)], None, [1.0, 1.0, 0.2]),
    "ReLU(negative_slope)": (lambda: [L.ReLU(negative_slope=0.2)], None, [1.0, 1.0, 0.2]),
    "fused leaky_relu": (lambda: [], "leaky_relu", [1.0, 1.0, 0.2]),
}


@pytest.mark.parametrize("name", sorted(RECTIFIERS))
def test_guided_rule_applies_to_capped_and_leaky_rectifiers(name):
    # a = (f(x), f(x)) then b = a₀ − a₁ = 0: the plain gradient of b is f'(x) − f'(x) = 0; the
    # guided rule stops the negative gradient into a₁ and leaves f'(x) · 1.
    extra, activation, expected = RECTIFIERS[name]
    model = keras.Sequential([
        keras.Input((1, 3, 1)),
        L.Conv2D(2, 1, use_bias=False, activation=activation, name="a"),
        *extra(),
        L.Conv2D(1, 1, use_bias=False, name="b"),
    ])
    model.get_layer("a").set_weights([np.ones((1, 1, 1, 2), np.float32)])
    model.get_layer("b").set_weights([np.array([1.0, -1.0], np.float32).reshape(1, 1, 2, 1)])
    states = np.tile(np.array([3.0, 8.0, -2.0], np.float32).reshape(1, 1, 3, 1), (3, 1, 1, 1))
    positions = np.array([[0, 0], [0, 1], [0, 2]])
    gradient = dqnviz.guided_backprop(model, states, "b", 0, position=positions)[:, 0, :, 0]
    np.testing.assert_allclose(gradient, np.diag(expected), atol=1e-6)


def _classifier(activation):
    keras.utils.set_random_seed(6)
    model = keras.Sequential([
        keras.Input((8, 8, 3)), L.Conv2D(3, 3, activation="relu", name="c"), L.Flatten(),
        L.Dense(4, activation=activation, name="out"),
    ])
    kernel, bias = model.get_layer("out").get_weights()
    model.get_layer("out").set_weights([kernel * 50, bias])  # a confident, saturated softmax
    return model


def test_saliency_of_a_softmax_classifier_is_that_of_its_logits():
    probabilities, logits = _classifier("softmax"), _classifier(None)
    states = rgb_states(2, (8, 8, 3), seed=7)
    assert np.allclose(keras.ops.convert_to_numpy(probabilities(states)).max(axis=1), 1.0)
    for method in ["gradient", "perturbation"]:
        got = dqnviz.saliency(probabilities, states, method=method)
        assert np.abs(got).max() > 0
        np.testing.assert_allclose(got, dqnviz.saliency(logits, states, method=method), rtol=1e-5, atol=1e-6)


@functools.lru_cache(maxsize=None)
def nested_and_flat_models():
    """A uint8 model calling a Sequential backbone, and the same layers as one flat model."""
    keras.utils.set_random_seed(8)
    backbone = keras.Sequential([
        keras.Input((12, 12, 4)), L.Conv2D(4, 3, activation="relu", name="inner1"),
        L.BatchNormalization(name="inner_bn"), L.Conv2D(4, 3, strides=2, name="inner2"), L.ReLU(max_value=6),
    ], name="backbone")
    _set_batch_norm_statistics(backbone.get_layer("inner_bn"), seed=9)
    inputs = keras.Input((12, 12, 4), dtype="uint8")
    x = L.Rescaling(1 / 255)(inputs)
    x = backbone(x)
    x = L.Conv2D(3, 2, activation="relu", name="outer")(x)
    x = L.Flatten()(x)
    nested = keras.Model(inputs, L.Dense(3, name="q")(x), name="nested")

    flat = keras.Sequential([keras.Input((12, 12, 4)), L.Rescaling(1 / 255)]
                            + [type(layer).from_config(layer.get_config()) for layer in backbone.layers]
                            + [L.Conv2D(3, 2, activation="relu", name="f_outer"), L.Flatten(), L.Dense(3)])
    sources = backbone.layers + [nested.get_layer("outer"), nested.get_layer("q")]
    targets = [layer for layer in flat.layers[1:] if layer.weights]
    for source, target in zip([s for s in sources if s.weights], targets):
        target.set_weights(source.get_weights())
    return nested, flat


def test_layers_of_a_nested_sequential_are_analysed_as_top_level_ones():
    nested, flat = nested_and_flat_models()
    states = np.random.default_rng(10).integers(0, 256, (3, 12, 12, 4)).astype(np.uint8)
    assert dqnviz.conv_layers(nested) == ["inner1", "inner2", "outer"]
    # inner1 3/1 → inner2 3 stride 2: 3 + 2 = 5, stride 2 → outer 2: 5 + 1·2 = 7, stride 2.
    assert dqnviz.receptive_field(nested, "inner1") == (3, 1)
    assert dqnviz.receptive_field(nested, nested.get_layer("backbone").get_layer("inner2")) == (5, 2)
    assert dqnviz.receptive_field(nested, "backbone") == (5, 2)
    assert dqnviz.receptive_field(nested, "outer") == (7, 2)

    flat_names = {"inner1": flat.layers[1].name, "inner2": flat.layers[3].name, "outer": "f_outer"}
    for layer, flat_layer in flat_names.items():
        found, expected = top_activations(nested, states, layer), top_activations(flat, states, flat_layer)
        assert [(n, yx) for n, yx, _ in found] == [(n, yx) for n, yx, _ in expected]
        assert [v for *_, v in found] == pytest.approx([v for *_, v in expected], rel=1e-5, abs=1e-6)
        strongest = int(np.argmax([v for *_, v in found]))
        guided = dqnviz.guided_backprop(nested, states, layer, strongest)
        assert np.abs(guided).max() > 0, (layer, found)
        np.testing.assert_allclose(guided, dqnviz.guided_backprop(flat, states, flat_layer, strongest),
                                   rtol=1e-4, atol=1e-4 * np.abs(guided).max())
    # several layers at once, nested and top-level: the nested ones on passes of their own
    together = dqnviz.top_activations_by_layer(nested, states, ["outer", "inner1", "inner2"])
    assert together == [top_activations(nested, states, layer) for layer in ["outer", "inner1", "inner2"]]
    np.testing.assert_allclose(dqnviz.saliency(nested, states), dqnviz.saliency(flat, states), rtol=1e-4, atol=1e-8)
    erf = dqnviz.effective_receptive_field(nested, states, "inner2")
    assert erf["theoretical"] == (5, 2) and 0 < erf["size"] <= 5


def test_a_nested_model_called_twice_is_a_clear_error():
    keras.utils.set_random_seed(11)
    backbone = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(2, 3, activation="relu", name="shared_conv")],
                                name="shared")
    inputs = keras.Input((8, 8, 1))
    both = L.Add()([backbone(inputs), backbone(L.Rescaling(-1.0)(inputs))])
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(both)))
    states = rgb_states(1, (8, 8, 1))
    assert dqnviz.conv_layers(model) == ["shared_conv"]
    assert dqnviz.saliency(model, states).shape == states.shape  # the model as a whole is fine
    with pytest.raises(UserError, match=r"nested model 'shared' is called 2 times"):
        dqnviz.guided_backprop(model, states, "shared_conv", 0)
    with pytest.raises(UserError, match=r"nested model 'shared' is called 2 times"):
        dqnviz.receptive_field(model, "shared_conv")


def test_a_layer_is_analysed_at_its_call_in_the_model_not_its_first_call_anywhere():
    keras.utils.set_random_seed(13)
    donor = keras.Sequential([keras.Input((16, 16, 4)), L.Conv2D(3, 3, activation="relu", name="taken")])
    inputs = keras.Input((16, 16, 4))
    taken = donor.get_layer("taken")(L.Conv2D(4, 5, name="stem")(inputs))  # its second call
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(taken)))
    assert dqnviz.receptive_field(model, "taken") == (5 + 2, 1)
    states = rgb_states(2, (16, 16, 4))
    by_hand = keras.Model(inputs, taken)  # the same call, as a model of its own
    found = top_activations(model, states, "taken")
    activations = np.asarray(by_hand(states))
    assert [v for *_, v in found] == pytest.approx(activations.max(axis=(1, 2)).max(axis=0), rel=1e-5)
    assert dqnviz.guided_backprop(model, states, "taken", 0).shape == states.shape

    # a Sequential model built with add() calls its layers again at each add
    grown = keras.Sequential([keras.Input((16, 16, 4))])
    for layer in (L.Conv2D(2, 3, activation="relu", name="first"), L.Conv2D(2, 3, name="second"), L.Flatten()):
        grown.add(layer)
    assert len(grown.get_layer("first")._inbound_nodes) > 1
    assert dqnviz.receptive_field(grown, "second") == (5, 1)
    assert dqnviz.guided_backprop(grown, states, "first", 1).shape == states.shape


def test_a_layer_called_twice_and_a_name_two_nested_layers_share_are_clear_errors():
    keras.utils.set_random_seed(14)
    shared = L.Conv2D(4, 3, padding="same", activation="relu", name="twice")
    inputs = keras.Input((16, 16, 4))
    twice = shared(L.Conv2D(4, 3, strides=2, padding="same")(shared(inputs)))
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(twice)))
    states = rgb_states(1, (16, 16, 4))
    for analysis in (lambda: dqnviz.receptive_field(model, "twice"),
                     lambda: dqnviz.guided_backprop(model, states, "twice", 0),
                     lambda: top_activations(model, states, "twice")):
        with pytest.raises(UserError, match=r"layer 'twice' is called 2 times in model"):
            analysis()

    first = keras.Sequential([keras.Input((16, 16, 2)), L.Conv2D(2, 3, padding="same", name="c1")], name="first")
    second = keras.Sequential([keras.Input((16, 16, 2)), L.Conv2D(2, 7, padding="same", name="c1")], name="second")
    inputs = keras.Input((16, 16, 2))
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(second(first(inputs)))))
    with pytest.raises(UserError, match=r"layer name 'c1' is ambiguous .*nested model 'first', nested model 'second'\); "
                                         r"name it by its path, 'first/c1' or 'second/c1', or pass the layer object"):
        dqnviz.receptive_field(model, "c1")
    assert dqnviz.receptive_field(model, second.get_layer("c1")) == (9, 1)
    assert dqnviz.conv_layers(model) == ["first/c1", "second/c1"]  # paths, which every analysis takes
    assert [dqnviz.receptive_field(model, name) for name in dqnviz.conv_layers(model)] == [(3, 1), (9, 1)]
    # a top-level layer of the name is the bare name's; the nested one goes by its path
    inputs = keras.Input((16, 16, 2))
    top = L.Conv2D(2, 5, padding="same", name="c1")(inputs)
    model_with_top = keras.Model(inputs, L.Dense(2)(L.Flatten()(first(top))))
    assert dqnviz.conv_layers(model_with_top) == ["c1", "first/c1"]
    assert [dqnviz.receptive_field(model_with_top, name) for name in ("c1", "first/c1")] == [(5, 1), (7, 1)]
    for wrong, said in (("third/c1", "'functional.*' has no nested model 'third'"),
                        ("first/c9", "nested model 'first' has no layer 'c9'")):
        with pytest.raises(UserError, match=said):
            dqnviz.receptive_field(model, wrong)


def test_unsupported_layers_are_clear_errors():
    keras.utils.set_random_seed(12)
    model = keras.Sequential([
        keras.Input((8, 8, 1)), L.Conv2D(2, 3, name="c"), L.UpSampling2D(2, name="up"),
        L.Conv2D(2, 3, name="after"), L.GlobalMaxPooling2D(keepdims=True, name="global"),
    ])
    with pytest.raises(UserError, match=r"through layer 'up' \(UpSampling2D\)"):
        dqnviz.receptive_field(model, "after")
    with pytest.raises(UserError, match=r"'global' has no spatial axes"):
        dqnviz.receptive_field(model, "global")
    assert dqnviz.receptive_field(model, "c") == (3, 1)
