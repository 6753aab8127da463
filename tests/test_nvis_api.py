"""``dqnviz.nvis_report``: the nvis page from Python for any Keras image model and the states a user
gives — a DQN's frame stacks or a classifier's RGB images — with nothing only a snapshot has, and
bad input failing in one line with no file."""

import json
import re

import numpy as np
import pytest

import dqnviz
from dqnviz.errors import UserError

CLASSES = ["cat", "dog", "ship"]


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def cards_of(html: str) -> list:
    return re.findall(r'<article class="card" data-layer="([^"]+)" data-filter="(\d+)"', html)


def header_of(html: str) -> str:
    return html[html.index('<div class="dq-header">'):html.index("</dl>")]


@pytest.fixture(scope="module")
def dqn(tmp_path_factory):
    """A Nature DQN built by dqnviz (random weights, seed 0) and 24 states of Breakout it played."""
    env = dqnviz.AtariEnv(dqnviz.resolve_rom("breakout"), seed=0)
    model = dqnviz.build_q_network(env.num_actions, seed=0)
    record = dqnviz.play_games(model, env, max_steps=24, seed=0)
    out = tmp_path_factory.mktemp("dqn") / "agent.html"
    path = dqnviz.nvis_report(model, record.states, out, filters=2, action_names=record.action_names)
    return path, out, model, record


def small_classifier():
    """Not a DQN: float RGB input 16×20, a linear Conv2D → BatchNormalization (moving statistics
    away from 0 and 1) → ReLU, a strided "same" Conv2D, global pooling, a softmax head."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 20, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="tiny_classifier")
    bn = model.get_layer("bn1")
    rng = np.random.default_rng(4)
    bn.set_weights([np.ones(4, "float32"), np.zeros(4, "float32"),
                    rng.normal(0, 0.2, 4).astype("float32"), rng.uniform(0.5, 2.0, 4).astype("float32")])
    return model


def images(n=6, seed=5):
    return np.random.default_rng(seed).uniform(0, 1, (n, 16, 20, 3)).astype("float32")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    model, states = small_classifier(), images()
    out = tmp_path_factory.mktemp("classifier") / "classifier.html"
    path = dqnviz.nvis_report(model, states, out, filters="all", action_names=CLASSES, title="A tiny classifier")
    return path, model, states


def test_nvis_report_is_exported_lazily():
    import dqnviz.report.nvis

    assert "nvis_report" in dqnviz.__all__ and "nvis_report" in dqnviz.__doc__
    assert dqnviz.nvis_report is dqnviz.report.nvis.nvis_report


def test_a_dqn_page_has_its_cards_and_no_snapshot_facts(dqn):
    from dqnviz import analysis

    path, out, model, record = dqn
    assert path == out and path.exists()
    html = path.read_text()
    assert sorted(cards_of(html)) == sorted((layer, str(f)) for layer in ("conv1", "conv2", "conv3") for f in (0, 1))
    header = header_of(html)
    for absent in ("<dt>game</dt>", "<dt>epoch</dt>", "in-training test", "trained with", "<dt>snapshot</dt>"):
        assert absent not in header, absent
    text = text_of(html)
    assert "moved from the start" not in text and "How far training moved" not in text
    assert "24 states given from Python" in text and "84 × 84 × 4 uint8: a stack of 4 frames, oldest first" in text
    assert "colour trail" in text and "the first 2 per layer" in text
    # each card is the filter's strongest unit, sought outside a game's first states as nvis does
    states = record.states
    for layer in ("conv1", "conv3"):
        units = analysis.top_activations(model, states, layer, filters=[0, 1], prefer=analysis.full_history(states))
        assert len(units) == 2 and any(value > 0 for _, _, value in units), (layer, units)  # something to check
        for f, (state, (y, x), value) in enumerate(units):
            card = re.search(rf'id="{layer}-{f}">(.*?)</article>', html, re.S).group(1)
            if value > 0:
                assert f"activation {value:.4g}" in card
                assert f"state {state} · unit (y, x) = ({y}, {x})" in text_of(card)
                assert "(game" not in card  # states given from Python belong to no known game
            else:
                assert "never fires" in card and "activation " not in card
    strip_labels = re.findall(r'<div class="strip-labels"[^>]*>(.*?)</div>', html)
    assert strip_labels and all(re.findall(r"<span>(.*?)</span>", s) == ["t-3", "t-2", "t-1", "t"] for s in strip_labels)
    # the saliency section labels the bars with the names given
    figure = json.loads(re.search(r'<script type="application/json" id="fig-q-\d+">(.*?)</script>', html, re.S).group(1))
    assert figure["data"][0]["y"] == record.action_names
    assert "Saliency: where does the top score look?" in text


def test_a_classifier_page_reads_as_images_with_named_scores(classifier):
    import keras

    path, model, states = classifier
    html = path.read_text()
    text = text_of(html)
    assert sorted(cards_of(html)) == sorted([("c1", str(f)) for f in range(4)] + [("c2", str(f)) for f in range(6)])
    assert "<title>A tiny classifier</title>" in html and "A tiny classifier — what the network's filters look for" in text
    assert "16 × 20 × 3 float32: an RGB image" in text and "values 0..1 drawn as 0..255" in text
    assert "These inputs are 16×20 images, not stacks of frames" in text
    main = text_of(html[html.index("<main>"):html.index("</main>")])
    assert "colour trail" not in main and "blank frame" not in main and not re.search(r"\bDQN|Q-value|Atari", main)
    # an image classifier's states are images: its cards, saliency and header call them so
    assert "6 images given from Python" in text and "For a few telling images" in text
    assert not re.search(r"\bstates? \d", text), re.search(r".{40}\bstates? \d.{40}", text).group(0)
    strip_labels = re.findall(r'<div class="strip-labels"[^>]*>(.*?)</div>', html)
    assert strip_labels and all(re.findall(r"<span>(.*?)</span>", s) == ["R", "G", "B"] for s in strip_labels)
    # the image slots know the input's size; a non-square one keeps its aspect
    assert 'data-width="20" data-height="16" style="aspect-ratio: 20 / 16"' in html and 'data-width="84"' not in html
    # "same" padding: a 3×3 unit at (y, x) looks at x-1..x+1, cut at the image's edges
    fields = re.findall(r"unit \(y, x\) = \((\d+), (\d+)\) · field at x (\d+), y (\d+), (\d+)×(\d+) px",
                        text_of(html[html.index('id="c1-0"'):html.index('id="c2-0"')]))
    assert len(fields) == 4  # one per c1 card
    for y, x, x0, y0, w, h in fields:
        y, x = int(y), int(x)
        assert (int(x0), int(y0)) == (max(x - 1, 0), max(y - 1, 0))
        assert (int(w), int(h)) == (min(x + 2, 20) - max(x - 1, 0), min(y + 2, 16) - max(y - 1, 0))
    # saliency explains the logits z of softmax(z), the scores the bars show under the names given
    features = keras.Model(model.input, model.get_layer("probs").input)
    head = model.get_layer("probs")
    logits = keras.ops.convert_to_numpy(keras.ops.matmul(features(states), head.kernel) + head.bias)
    best = int(logits.max(axis=1).argmax())
    heading = re.search(rf"<h3>image {best}: ([^<]*)<span[^>]*>([^<]*)</span></h3>", html)
    assert heading and "highest top score" in heading.group(1)
    assert f"top score {logits[best].max():.4g}" in heading.group(2)
    assert f"k* = {CLASSES[int(logits[best].argmax())]}" in heading.group(2)
    figure = json.loads(re.search(rf'id="fig-q-{best}">(.*?)</script>', html, re.S).group(1))
    assert figure["data"][0]["y"] == CLASSES
    np.testing.assert_allclose(figure["data"][0]["x"], logits[best], atol=1e-4)  # a dot at each score
    np.testing.assert_allclose([v for v, _ in figure["data"][0]["customdata"]], logits[best], atol=1e-4)
    assert "a softmax: its scores are the logits before it" in text and "with the names given" in text
    nav = html[html.index("<nav"):html.index("</nav>")]
    assert '<a href="#layer-c1">c1</a><a href="#layer-c2">c2</a>' in nav and "<select" not in nav


def test_a_grey_image_is_drawn_grey_and_a_wide_range_is_stretched(tmp_path):
    """One channel of values in -1..1: grey images of (v + 1) · 127.5, no per-channel strip."""
    import keras

    from dqnviz.report.nvis import state_view

    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 10, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    states = np.random.default_rng(0).uniform(-1, 1, (3, 10, 10, 1)).astype("float32")
    states[0, 0, 0, 0], states[1, 0, 0, 0] = -1.0, 1.0
    view = state_view(states)
    rgb = view.rgb(states)
    assert rgb.shape == (3, 10, 10, 3) and (rgb == rgb[..., :1]).all()
    np.testing.assert_array_equal(rgb[..., 0], np.rint((states[..., 0].astype(np.float64) + 1) * 127.5).astype(np.uint8))
    path = dqnviz.nvis_report(model, states, tmp_path / "grey.html")
    text = text_of(path.read_text())
    assert "a one-channel image" in text and "shown in grey" in text
    assert "values -1..1 drawn as 0..255" in text and 'class="strip"' not in path.read_text()
    assert "output 0" in text and "numbered" in text


def test_a_page_says_which_layers_guided_backprop_cannot_see_into(tmp_path):
    import keras

    from dqnviz.analysis import UnguidedCodeWarning
    from tests import models

    keras.utils.set_random_seed(8)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="first")(inputs)
    x = keras.layers.Conv2D(3, 3, activation="relu", name="after")(models.ReluInside(name="inside")(x))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.warns(UnguidedCodeWarning, match="layer 'inside'"):
        states = np.random.default_rng(2).uniform(0, 1, (3, 12, 12, 3)).astype("float32")
        path = dqnviz.nvis_report(model, states, tmp_path / "custom.html", filters=1)
    text = text_of(path.read_text())
    assert "Not guided inside: inside (ReluInside) runs code of its own, where a ReLU keeps its plain derivative" in text
    assert "7×7 px, stride 1" in text  # the layer table: after's field measured through it, 3 + 2 + 2


def test_two_nested_layers_of_one_name_get_a_card_each_under_their_paths(tmp_path):
    import keras

    keras.utils.set_random_seed(9)
    first = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(3, 3, padding="same", activation="relu",
                                                                              name="c1")], name="first")
    second = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(3, 7, padding="same", activation="relu",
                                                                               name="c1")], name="second")
    inputs = keras.Input((12, 12, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(second(first(inputs)))))
    states = np.random.default_rng(3).uniform(0, 1, (4, 12, 12, 3)).astype("float32")
    html = dqnviz.nvis_report(model, states, tmp_path / "paths.html", filters=1).read_text()
    assert sorted(layer for layer, _ in cards_of(html)) == ["first/c1", "second/c1"]
    text = text_of(html)
    assert "first/c1 — 1 of 3 filters, receptive field 3×3 px" in text
    assert "second/c1 — 1 of 3 filters, receptive field 9×9 px" in text


@pytest.mark.parametrize("channels, stack, expected", [
    (1, False, False), (3, False, False), (3, True, True), (4, False, True), (6, True, True)])
def test_which_states_are_frame_stacks(channels, stack, expected):
    """C ≥ 4 is a stack; C = 3 only when consecutive states share frames, as a game's do."""
    from dqnviz.report.nvis import shares_frames, state_view

    rng = np.random.default_rng(channels)
    if stack:
        frames = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8)
        states = np.stack([np.moveaxis(frames[i:i + channels], 0, -1) for i in range(12 - channels)])
    else:
        states = rng.integers(0, 256, (8, 8, 8, channels), dtype=np.uint8)
    assert shares_frames(states) == (stack and channels > 1)
    view = state_view(states)
    assert view.frame_stack == expected and (view.low, view.high) == (0.0, 255.0)
    assert view.labels == ([f"t-{k}" if k else "t" for k in range(channels - 1, -1, -1)] if expected
                           else ["R", "G", "B"] if channels == 3 else [])


def test_display_range():
    from dqnviz.report.nvis import display_range

    assert display_range(np.zeros((1, 2, 2, 3), np.uint8)) == (0.0, 255.0)
    assert display_range(np.full((1, 2, 2, 3), 0.5)) == (0.0, 1.0)
    assert display_range(np.array([0.0, 200.0])) == (0.0, 255.0)
    assert display_range(np.array([-2.0, 3.0])) == (-2.0, 3.0)
    assert display_range(np.array([-2.0, -2.0])) == (-2.0, -1.0)


def _two_outputs():
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, name="conv")(inputs))
    return keras.Model(inputs, [keras.layers.Dense(2, name="policy")(x), keras.layers.Dense(1, name="value")(x)],
                       name="two_heads")


def _image_output():
    import keras

    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, keras.layers.Conv2D(2, 3, name="conv")(inputs), name="segmenter")


def _not_rebuildable():
    """Any image size, through a layer that cannot be rebuilt from its config."""
    import keras

    class Doubling(keras.layers.Layer):
        def call(self, x):
            return 2 * x

        def get_config(self):
            raise NotImplementedError("no config")

    inputs = keras.Input((None, None, 3))
    x = keras.layers.GlobalMaxPooling2D()(keras.layers.Conv2D(2, 3, name="conv")(Doubling()(inputs)))
    return keras.Model(inputs, keras.layers.Dense(2)(x), name="custom")


def _huge_layer():
    """2,048 cards of 160 × 160 images; strided, so that the model itself is cheap to run."""
    import keras

    inputs = keras.Input((160, 160, 3))
    x = keras.layers.GlobalMaxPooling2D()(keras.layers.Conv2D(2048, 1, strides=16, name="wide")(inputs))
    return keras.Model(inputs, keras.layers.Dense(2)(x), name="wide_model")


def _no_conv():
    import keras

    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)], name="flat")


def _two_channels():
    import keras

    inputs = keras.Input((8, 8, 2))
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(inputs))))


@pytest.mark.parametrize("case, message", [
    (dict(states=np.zeros((2, 16, 16, 3), "float32")), "states of shape (2, 16, 16, 3) do not fit model 'tiny_classifier'"),
    (dict(layers="c1,c9"), "unknown layer 'c9'; the conv layers of this network are: c1, c2"),
    # a Dense layer is no image layer; BatchNormalization after a conv is one (and is listed)
    (dict(layers=["probs"]), "unknown layer 'probs'; the conv layers of this network are: c1, c2 (also any layer "
                             "with an image output after them: bn1, "),
    (dict(layers=[]), "layers names nothing"),
    (dict(filters="3,5"), "filters 3,5: filter 5 does not exist in c1, which has 4 filters"),
    (dict(filters=0), "filters 0 is out of range"),
    (dict(filters="many"), "filters must be"),
    (dict(action_names=["cat", "dog"]), "action_names must be a list naming each of the model's 3 outputs"),
    (dict(action_names="cat"), "action_names must be a list"),
    (dict(model=_no_conv, states=np.zeros((2, 8, 8, 3), "float32")), "model 'flat' has no Conv2D layers"),
    (dict(model=_two_outputs, states=np.zeros((2, 8, 8, 3), "float32")),
     "'two_heads' has 2 (0: policy (None, 2), 1: value (None, 1)): pass keras.Model(model.input, model.outputs[0])"),
    (dict(model=_image_output, states=np.zeros((2, 8, 8, 3), "float32")), "(N, outputs); 'segmenter' outputs (None, 6, 6, 2)"),
    (dict(model=_not_rebuildable, states=np.zeros((2, 8, 8, 3), "float32")),
     "'custom' takes images of any size and could not be rebuilt at the states' size (8, 8, 3)"),
    # card_megabytes: count·H·W·(3 RGB + C strip)·4/3 (base64) / 1e6 = 2048·160·160·(3 + 3)·4/3 / 1e6 = 419.4
    (dict(model=_huge_layer, states=np.zeros((1, 160, 160, 3), "float32"), filters="all"),
     "filters='all' would draw 2,048 filter cards (wide: 2,048), a page of up to 419 MB that no browser opens well"),
    (dict(model=_two_channels, states=np.zeros((2, 8, 8, 2), "float32")), "states have 2 channels"),
    (dict(frame_stack=True, model=_two_channels, states=np.zeros((2, 8, 8, 2), "float32")), "2 channels"),
    (dict(states=np.full((2, 16, 20, 3), np.nan, "float32")), "NaN or infinite"),
    (dict(out="folder"), "is a folder"),
])
def test_bad_input_fails_in_one_line_and_writes_nothing(tmp_path, monkeypatch, case, message):
    import dqnviz.report.nvis.api

    def analyse(*args, **kwargs):  # "before any work": a check that lets a case through fails here
        raise AssertionError("the states were analysed")

    monkeypatch.setattr(dqnviz.report.nvis.api, "analyse", analyse)  # where nvis_report looks it up
    case = dict(case)
    model = case.pop("model", small_classifier)()
    states = case.pop("states", images(2))
    out = tmp_path / case.pop("out", "r.html")
    if out.name == "folder":
        out.mkdir()
    with pytest.raises(UserError) as error:
        dqnviz.nvis_report(model, states, out, action_names=case.pop("action_names", None), **case)
    assert "\n" not in str(error.value) and message in str(error.value), str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["folder"] if out.name == "folder" else [])


def test_a_model_of_any_image_size_is_analysed_at_the_states_size(tmp_path):
    """keras.Input((None, None, C)), here also inside a nested Sequential: the analyses index the
    layers' positions, so they run on a copy built at the states' size, with the same weights."""
    import keras

    from dqnviz import analysis
    from dqnviz.report.nvis import at_states_size

    keras.utils.set_random_seed(6)
    backbone = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 3, activation="relu", name="inner")],
                                name="backbone")
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="outer")(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalMaxPooling2D()(x)), name="any_size")
    states = images(4)  # 16 × 20
    sized = at_states_size(model, states.shape[1:])
    assert sized is not model and at_states_size(sized, states.shape[1:]) is sized
    assert [layer.name for layer in sized.layers] == [layer.name for layer in model.layers]
    assert tuple(sized.get_layer("outer").output.shape) == (None, 6, 8, 4)  # 16×20 → 14×18 → 6×8
    np.testing.assert_allclose(keras.ops.convert_to_numpy(sized(states)), keras.ops.convert_to_numpy(model(states)),
                               atol=1e-6)

    path = dqnviz.nvis_report(model, states, tmp_path / "any.html", filters=2)
    html = path.read_text()
    assert sorted(cards_of(html)) == [("inner", "0"), ("inner", "1"), ("outer", "0"), ("outer", "1")]
    assert "16 × 20 × 3 float32" in text_of(html)
    for f, (state, (y, x), value) in enumerate(analysis.top_activations(sized, states, "outer", filters=[0, 1])):
        card = text_of(re.search(rf'id="outer-{f}">(.*?)</article>', html, re.S).group(1))
        assert f"activation {value:.4g}" in card and f"image {state} · unit (y, x) = ({y}, {x})" in card


def test_scores_of_any_magnitude_are_written_and_drawn():
    """An untrained classifier's logits of 1e-12 were written "0.0000" and drawn at 0; Q-values
    keep their 4 decimals."""
    import plotly.graph_objects as go

    from dqnviz.report.nvis import _q_figure, value_format

    q = np.array([5.186e-12, -2.35e-12, 9.18e-12])
    figure = json.loads(_q_figure(go, q, CLASSES, 2, choice="k*"))
    dots = figure["data"][0]
    assert dots["text"] == ["5.186e-12", "-2.35e-12", "9.18e-12"] and "customdata[0]:.4g" in dots["hovertemplate"]
    np.testing.assert_allclose(dots["x"], q, rtol=1e-6)
    np.testing.assert_allclose([v for v, _ in dots["customdata"]], q, rtol=1e-6)
    assert dots["customdata"][0][1] == "3.994e-12 below k*"
    low, high = figure["layout"]["xaxis"]["range"]
    assert low < q.min() and q.max() < high < 1e-10
    assert value_format([1.6744, -0.5]) == ".4f" and value_format([0.004]) == ".4g"
    assert value_format([12345.6]) == ".4g" and value_format([0.0, 0.0]) == ".4g"


def test_by_default_each_layer_shows_its_strongest_filters(tmp_path):
    """Without ``filters`` the page showed each layer's first 8, dead ones among them (2 of the first
    8 conv1 filters of the shipped pong-h100-10min_6): it shows the 8 that fire most, strongest
    first, and counts the dead ones in the layer's summary; a layer of fewer shows all of its own."""
    import keras

    from dqnviz import analysis
    from dqnviz.report.nvis import default_filters

    keras.utils.set_random_seed(11)
    inputs = keras.Input((12, 12, 1))
    wide = keras.layers.Conv2D(12, 3, activation="relu", name="wide")(inputs)
    narrow = keras.layers.Conv2D(3, 3, activation="relu", name="narrow")(wide)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(narrow)), name="small")
    kernel, bias = model.get_layer("wide").get_weights()
    bias[[0, 3, 6]] = -1e4  # three of the first 8 can never fire
    kernel[..., 9] *= 5  # filters past the first 8 fire most
    kernel[..., 11] *= 3
    model.get_layer("wide").set_weights([kernel, bias])
    states = np.random.default_rng(11).uniform(0, 1, (4, 12, 12, 1)).astype("float32")
    html = dqnviz.nvis_report(model, states, tmp_path / "default.html").read_text()
    shown = {}
    for layer, f in cards_of(html):
        shown.setdefault(layer, []).append(int(f))
    values = [v for _, _, v in analysis.top_activations(model, states, "wide")]
    assert len(shown["wide"]) == 8 and not {0, 3, 6} & set(shown["wide"]) and {9, 11} <= set(shown["wide"])
    assert [values[f] for f in shown["wide"]] == sorted(values, reverse=True)[:8]
    assert sorted(shown["narrow"]) == [0, 1, 2]
    assert "the 8 strongest per layer" in text_of(header_of(html))
    assert "<b>3 of 12</b> wide filters never fire" in html
    assert default_filters({"a": 32, "b": 64}) == "top8" and default_filters({"a": 3, "b": 5}) == "top5"


def test_a_deep_network_gets_a_layer_menu_and_a_wide_field_chart(tmp_path):
    """52 layer links (MobileNetV2) filled seven rows of the sticky bar, and the field chart's
    names were cut: past 12 layers the bar has a menu, the chart grows and makes room."""
    import keras

    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((4, 4, 1))] + [keras.layers.Conv2D(2, 1, activation="relu", name=f"c{i}")
                                                          for i in range(20)]
                             + [keras.layers.Flatten(), keras.layers.Dense(2)], name="deep")
    states = np.random.default_rng(7).uniform(0, 1, (2, 4, 4, 1)).astype("float32")
    html = dqnviz.nvis_report(model, states, tmp_path / "deep.html", filters=1).read_text()
    nav = html[html.index("<nav"):html.index("</nav>")]
    assert '<select class="layer-menu"' in nav and 'href="#layer-' not in nav
    assert re.findall(r'<option value="layer-(\w+)">', nav) == [f"c{i}" for i in range(20)]
    assert all(f'id="layer-c{i}"' in html for i in range(20))
    assert 'style="width:500px"><div class="dq-fig" data-kind="json" data-figure="fig-erf-chart"' in html  # 60 + 22·20
    chart = json.loads(re.search(r'id="fig-erf-chart">(.*?)</script>', html, re.S).group(1))
    assert chart["layout"]["xaxis"]["automargin"] is True


def test_a_page_of_many_large_cards_warns_in_one_line():
    """MobileNetV2's Conv_1 at 96 px with filters="all": 1,280 cards, an 81 MB page after 250 s
    (JAX, 2 CPU cores). The estimate warns before the work; a few cards pass quietly."""
    import warnings

    from dqnviz.report.nvis import check_page_size, parse_filters

    channels = {"Conv_1": 1280}
    with pytest.warns(UserWarning) as record:
        check_page_size(parse_filters("all", channels), (96, 96, 3), "all")
    message = str(record[0].message)
    # card_megabytes: count·H·W·(3 RGB + C strip)·4/3 (base64) / 1e6 = 1280·96·96·(3 + 3)·4/3 / 1e6 = 94.4
    assert "\n" not in message and "draws 1,280 filter cards (Conv_1: 1,280): a page of up to 94 MB" in message
    assert "'top16'" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_page_size(parse_filters("top8", channels), (96, 96, 3), "top8")


def test_perturbation_patches_grow_with_larger_images(classifier):
    """Saliency's patch (radius 5 px every 5 px) is sized for Atari's 84 px: a 224-pixel image is
    probed at 18 × 18 positions of the same relative size, not 45 × 45 specks."""
    from dqnviz.analysis.saliency import _OPTIONS
    from dqnviz.report.nvis import perturbation_settings

    defaults = {key: _OPTIONS["perturbation"][key] for key in ("stride", "radius", "blur")}
    assert perturbation_settings(84, 84) == defaults == perturbation_settings(16, 20)
    large = perturbation_settings(224, 160)
    assert large == {"stride": 13, "radius": 13.33, "blur": 8.0} and len(range(0, 224, large["stride"])) == 18
    assert "a Gaussian of radius 5 px, one every 5 px" in text_of(classifier[0].read_text())


def test_the_page_draws_in_chromium(classifier):
    from tests.browser import all_plots_drawn, open_report

    path, _, _ = classifier
    with open_report(path, width=1300, height=900) as check:
        page = check.page
        expected = page.evaluate("dqnviz.figureCount()")
        # 2 per card + ERF chart + 2 ERF maps + per saliency state 3 images and the bars
        assert expected >= 10 * 2 + 3 + 4
        assert page.evaluate("dqnvizDrawAll()") == expected
        assert tuple(all_plots_drawn(page)) == (expected, expected)
        ranges = page.evaluate("""() => { const gd = document.querySelector('#c2-0 .js-plotly-plot');
                                          return [gd._fullLayout.xaxis.range, gd._fullLayout.yaxis.range]; }""")
        assert ranges == [[-0.5, 19.5], [15.5, -0.5]]  # the whole 20×16 image
        assert check.errors == [] and check.requests == []
