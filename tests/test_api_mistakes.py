"""The Python API on models and arguments a researcher may bring: subclassed models, models of
any image size, and options of the wrong type or value, each a one-line UserError or a right result."""

import keras
import numpy as np
import pytest

import dqnviz
from dqnviz.errors import UserError

layers = keras.layers


class Subclassed(keras.Model):
    """A model whose ``call`` is Python code: no layer graph for the analyses to walk."""

    def __init__(self):
        super().__init__(name="sub")
        self.conv = layers.Conv2D(4, 8, strides=4, activation="relu", name="c1")
        self.flatten, self.head = layers.Flatten(), layers.Dense(3, name="q")

    def call(self, x):
        return self.head(self.flatten(self.conv(x / 255.0)))


def _subclassed():
    keras.utils.set_random_seed(2)
    model = Subclassed()
    model(np.zeros((1, 36, 36, 4), "float32"))  # built: called on data
    return model


def _states(shape, count=3, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (count, *shape), dtype=np.uint8)


def test_a_subclassed_model_is_named_as_such_not_called_unbuilt():
    model = _subclassed()
    for call in (lambda: dqnviz.conv_layers(model), lambda: dqnviz.saliency(model, _states((36, 36, 4)))):
        with pytest.raises(UserError, match="'sub' is a subclassed keras.Model.*functional API"):
            call()


def test_a_subclassed_model_inside_a_functional_one_is_run_as_it_is():
    """Its layers have no graph, so they are not listed; saliency needs none of them and works,
    equal to the input gradient of Q(s, a*) taken directly."""
    inner = _subclassed()
    x = keras.Input((36, 36, 4))
    wrapped = keras.Model(x, inner(x), name="wrapped")
    with pytest.raises(UserError, match="no Conv2D layers.*inside subclassed model 'sub' have no graph"):
        dqnviz.conv_layers(wrapped)
    states = _states((36, 36, 4))
    saliency = dqnviz.saliency(wrapped, states, action=1)
    finite_difference = np.zeros(3)
    for i in range(3):  # dQ/ds at one pixel per state, by central differences in float64 steps
        plus, minus = states[i:i + 1].astype(np.float32), states[i:i + 1].astype(np.float32)
        plus[0, 10, 12, 2] += 0.5
        minus[0, 10, 12, 2] -= 0.5
        finite_difference[i] = float(inner(plus)[0, 1] - inner(minus)[0, 1])
    assert np.abs(saliency).sum() > 0
    np.testing.assert_allclose(saliency[:, 10, 12, 2], finite_difference, rtol=2e-2, atol=1e-5)


def test_position_on_a_model_of_any_image_size_uses_these_states_size():
    keras.utils.set_random_seed(0)
    x = keras.Input((None, None, 3))
    y = layers.Conv2D(4, 3, strides=2, activation="relu", name="v1")(x)
    y = layers.Conv2D(5, 3, activation="relu", name="v2")(y)
    model = keras.Model(x, layers.Dense(2)(layers.GlobalAveragePooling2D()(y)))
    states = _states((40, 56, 3), count=2)
    # 40 → (40 − 3)//2 + 1 = 19 → 17 rows; 56 → 27 → 25 columns
    top = dqnviz.top_activations(model, states, "v2", filters=[1])[0]
    at_top = dqnviz.guided_backprop(model, states[top[0]], "v2", 1, position=top[1])
    np.testing.assert_array_equal(at_top, dqnviz.guided_backprop(model, states[top[0]], "v2", 1))
    with pytest.raises(UserError, match=r"position \(17, 3\) is outside layer 'v2', whose output is 17×25"):
        dqnviz.guided_backprop(model, states, "v2", 1, position=(17, 3))


@pytest.mark.parametrize("side, said", [
    (5, r"states of 5×5 pixels are too small for model 'any_size': computed output size would be zero or negative"),
    (1, r"states of 1×1 pixels are too small for model 'any_size'"),
    (0, r"states of shape \(0, 0, 3\) have no pixels"),
])
def test_states_too_small_for_a_model_of_any_size_are_one_line(side, said):
    keras.utils.set_random_seed(0)
    x = keras.Input((None, None, 3))
    y = layers.Conv2D(4, 3, strides=2, activation="relu", name="v1")(x)  # 5 → 2, then 3×3 "valid": none
    y = layers.Conv2D(5, 3, activation="relu", name="v2")(y)
    model = keras.Model(x, layers.Dense(2)(layers.GlobalAveragePooling2D()(y)), name="any_size")
    states = _states((side, side, 3), count=2)
    for analysis in (lambda: dqnviz.saliency(model, states), lambda: dqnviz.top_activations(model, states, "v2"),
                     lambda: dqnviz.guided_backprop(model, states, "v2", 0),
                     lambda: dqnviz.effective_receptive_field(model, states, "v1")):
        with pytest.raises(UserError, match=said):
            analysis()
    assert dqnviz.saliency(model, _states((7, 7, 3), count=2)).shape == (2, 7, 7, 3)  # 7 → 3 → 1: enough


def test_a_list_of_states_of_different_shapes_is_one_line():
    with pytest.raises(UserError, match=r"states must be one array \(N, 16, 16, 3\); the ones given differ in shape"):
        dqnviz.saliency(_classifier(), [np.zeros((16, 16, 3)), np.zeros((15, 16, 3))])


def _classifier():
    keras.utils.set_random_seed(3)
    x = keras.Input((16, 16, 3))
    y = layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    return keras.Model(x, layers.Dense(3)(layers.Flatten()(y)), name="cls")


@pytest.mark.parametrize("method, option, value, said", [
    ("smoothgrad", "samples", "a", "samples to be a whole number >= 1, got 'a'"),
    ("smoothgrad", "samples", 2.5, "samples to be a whole number >= 1, got 2.5"),
    ("smoothgrad", "samples", 0, "samples to be a whole number >= 1, got 0"),
    ("smoothgrad", "seed", -1, "seed to be a whole number >= 0, got -1"),
    ("smoothgrad", "seed", 1.5, "seed to be a whole number >= 0, got 1.5"),
    ("smoothgrad", "noise", float("nan"), "noise to be a finite number >= 0, got nan"),
    ("smoothgrad", "value_range", float("nan"), "value_range to be a finite number > 0, got nan"),
    ("smoothgrad", "value_range", 0, "value_range to be a finite number > 0, got 0"),
    ("perturbation", "stride", "a", "stride to be a whole number >= 1, got 'a'"),
    ("perturbation", "stride", 2.7, "stride to be a whole number >= 1, got 2.7"),
    ("perturbation", "radius", float("nan"), "radius to be a finite number > 0, got nan"),
    ("perturbation", "radius", 0.0, "radius to be a finite number > 0, got 0.0"),
    ("perturbation", "blur", float("nan"), "blur to be a finite number >= 0, got nan"),
    ("perturbation", "blur", True, "blur to be a finite number >= 0, got True"),
])
def test_saliency_options_of_the_wrong_type_or_value_are_one_line(method, option, value, said):
    with pytest.raises(UserError) as error:
        dqnviz.saliency(_classifier(), _states((16, 16, 3)), method=method, **{option: value})
    assert f"{method} saliency needs {said}" == str(error.value)


def test_saliency_options_in_range_still_work():
    model, states = _classifier(), _states((16, 16, 3))
    smooth = dqnviz.saliency(model, states, method="smoothgrad", samples=2, seed=np.int64(3), noise=0, value_range=1)
    # noise 0: every noisy copy is the state itself, so SmoothGrad is the plain gradient
    np.testing.assert_allclose(smooth, dqnviz.saliency(model, states), rtol=1e-5, atol=1e-7)
    blurred = dqnviz.saliency(model, states, method="perturbation", stride=np.int32(4), radius=2, blur=0)
    assert blurred.shape == states.shape and np.all(blurred == 0)  # blur 0: the "perturbed" state is the state


def test_top_activations_by_layer_wants_lists():
    model, states = _classifier(), _states((16, 16, 3))
    with pytest.raises(UserError, match="layers must be a list of layer names.*got 'conv'"):
        dqnviz.top_activations_by_layer(model, states, "conv")
    with pytest.raises(UserError, match=r"filters must be a list with one entry per layer \(1"):
        dqnviz.top_activations_by_layer(model, states, ["conv"], filters=3)
    with pytest.raises(UserError, match=r"one int or a flat list of ints, got shape \(1, 1\)"):
        dqnviz.top_activations(model, states, "conv", filters=[[1]])
    assert dqnviz.top_activations_by_layer(model, states, ["conv"], filters=[[1, 2]])[0] == \
        dqnviz.top_activations(model, states, "conv", filters=[1, 2])


def test_full_history_takes_batches_of_states():
    states = np.zeros((3, 4, 4, 2), np.uint8)
    states[1] = 1
    states[2, 0, 0, 0] = 1  # frame 1 blank
    assert dqnviz.full_history(states).tolist() == [False, True, False]
    assert dqnviz.full_history(states[:0]).shape == (0,)
    for wrong in (states[0], [1, 2, 3]):
        with pytest.raises(UserError, match="full_history takes states"):
            dqnviz.full_history(wrong)


def test_states_given_as_a_dict_are_told_to_be_an_array():
    with pytest.raises(UserError, match="not a dict: pass the image array itself"):
        dqnviz.guided_backprop(_classifier(), {"img": _states((16, 16, 3))}, "conv", 0)


def test_frame_stack_must_be_a_bool_or_none(tmp_path):
    with pytest.raises(UserError, match="frame_stack must be True, False or None"):
        dqnviz.nvis_report(_classifier(), _states((16, 16, 3)), tmp_path / "x.html", frame_stack="no")
    assert not any(tmp_path.iterdir())


def _conv_bn_relu():
    """The ResNet/MobileNet block: a conv without activation, BatchNormalization, then ReLU; BN's
    negative scale on filter 0 makes that filter's strongest raw unit silent after the ReLU."""
    keras.utils.set_random_seed(4)
    x = keras.Input((16, 16, 3))
    y = layers.Conv2D(4, 3, padding="same", name="conv_a")(x)
    y = layers.BatchNormalization(name="bn_a")(y)
    y = layers.ReLU(name="relu_a")(y)
    y = layers.MaxPooling2D(name="pool_a")(y)
    y = layers.Conv2D(4, 3, activation="relu", name="conv_b")(y)
    branch = layers.Conv2D(4, 1, name="conv_c")(y)  # linear, then used twice: no rectifier of its own
    y = layers.Add(name="add")([y, branch])
    model = keras.Model(x, layers.Dense(2)(layers.Flatten()(y)), name="block")
    model.get_layer("bn_a").gamma.assign([-1.0, 1.0, 1.0, 1.0])
    return model


def test_layers_after_a_conv_can_be_analysed_and_a_linear_conv_names_its_rectifier():
    from dqnviz.analysis import image_layers, rectified_by

    model = _conv_bn_relu()
    assert image_layers(model) == ["conv_a", "bn_a", "relu_a", "pool_a", "conv_b", "conv_c", "add"]
    assert rectified_by(model, "conv_a") == ["bn_a", "relu_a"]
    assert rectified_by(model, "conv_b") == [] and rectified_by(model, "conv_c") == []
    states = _states((16, 16, 3), count=6)
    after = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("relu_a").output)(states.astype("float32")))
    for f, (state, (y, x), value) in enumerate(dqnviz.top_activations(model, states, "relu_a")):
        assert value == pytest.approx(after[..., f].max(), rel=1e-5)  # the unit after BN and ReLU
        assert after[state, y, x, f] == pytest.approx(value, rel=1e-5)
    raw_state, (y, x), _ = dqnviz.top_activations(model, states, "conv_a", filters=[0])[0]
    assert after[raw_state, y, x, 0] == 0  # filter 0's strongest raw unit is silenced by BN's −1 and the ReLU


def test_nvis_report_takes_a_layer_after_a_conv_and_notes_a_linear_conv(tmp_path):
    model, states = _conv_bn_relu(), _states((16, 16, 3), count=6)
    out = tmp_path / "block.html"
    dqnviz.nvis_report(model, states, out, layers="conv_a,relu_a", filters=2)
    text = out.read_text()
    assert 'id="layer-relu_a"' in text and 'id="layer-conv_a"' in text
    assert text.count('class="rectified-note"') == 1 and 'data-rectified-by="bn_a,relu_a"' in text
    assert 'layers="relu_a"</code>' in text
    with pytest.raises(UserError, match=r"unknown layer 'dense'; the conv layers of this network are: conv_a, "
                                        r"conv_b, conv_c \(also any layer with an image output after them: bn_a, "
                                        r"relu_a, pool_a, add\)"):
        dqnviz.nvis_report(model, states, tmp_path / "x.html", layers="conv_a,dense")


def test_in_a_notebook_a_mistake_is_one_line_and_records_print_as_a_line(breakout_snapshot):
    """Jupyter showed a UserError as a 16-43 line traceback through dqnviz, a GameRecord as 356
    lines of zeros and a Snapshot as its whole metadata: now a line each."""
    import numpy as np

    from dqnviz.agent import GameRecord
    from dqnviz.errors import UserError
    from dqnviz.snapshot import load_snapshot

    assert UserError("layer 'conv9' not found")._render_traceback_() == ["UserError: layer 'conv9' not found"]
    text = repr(load_snapshot(breakout_snapshot))
    assert "\n" not in text and len(text) < 200 and "'breakout_1': breakout, epoch 1" in text
    record = GameRecord(states=np.zeros((3, 84, 84, 4), np.uint8), actions=np.zeros(3, np.int64),
                        q_values=np.zeros((3, 4), np.float32), rewards=np.zeros(3, np.float32),
                        game_index=np.zeros(3, np.int64), scores=[2.0], action_names=["NOOP", "FIRE"])
    assert repr(record) == ("GameRecord(3 steps of 1 game, scores [2.0], states (3, 84, 84, 4) uint8, "
                            "actions ['NOOP', 'FIRE'])")
