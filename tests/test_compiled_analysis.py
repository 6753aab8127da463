"""The analyses' compiled functions: built once per (model, layer), reading the current weights.

Under JAX each analysis is one ``jax.jit`` per model and target, reused across batches, filters
and calls, with the model's variables passed at each call (``backend.compile_input_gradient``).
These tests check what that could break: weights changed after a first call must be used (not
baked-in constants), a short last batch (padded to a compiled size) must give its own states'
results, and the compiled functions must go with their model.
"""

import gc
import weakref

import keras
import numpy as np
import pytest

from dqnviz.analysis import effective_receptive_field, guided_backprop, saliency, top_activations

try:
    from tests import models
except ImportError:  # pragma: no cover - tests/ on sys.path
    import models

jax_only = pytest.mark.skipif(keras.config.backend() != "jax", reason="jax.jit traces are the JAX backend's")


def fresh_model(seed):
    """A model of its own (not the session's cached ones: these tests change weights)."""
    return models.fused_uint8_model.__wrapped__(seed=seed)


def count_traces(monkeypatch, module) -> list:
    """Make ``module.graph_runner``'s functions note the input shape of each run in Python: under
    ``jax.jit`` that is a trace, so the returned list grows once per compilation (op by op, once per
    batch)."""
    traces = []
    graph_runner = module.graph_runner

    def counting_graph_runner(*args, **kwargs):
        run = graph_runner(*args, **kwargs)

        def counted(x):
            traces.append(x.shape)
            return run(x)

        return counted

    monkeypatch.setattr(module, "graph_runner", counting_graph_runner)
    return traces


def every_analysis(model, states):
    conv1 = top_activations(model, states, "conv1")
    livest = int(np.argmax([value for _, _, value in conv1]))  # a filter that fires, and where
    return {
        "guided": guided_backprop(model, states, "conv2", np.array([0, 1, 2, 3, 4, 5]), batch_size=4),
        "guided at a position": guided_backprop(model, states, "conv1", livest, position=conv1[livest][1],
                                                batch_size=4),
        "gradient saliency": saliency(model, states, batch_size=4),
        "saliency of action 1": saliency(model, states, action=1, batch_size=4),
        "smoothgrad": saliency(model, states, method="smoothgrad", samples=2, batch_size=4),
        "perturbation": saliency(model, states, method="perturbation", stride=4, batch_size=4),
        "effective receptive field": effective_receptive_field(model, states, "conv2", batch_size=4)["map"],
        "top activations": np.array([v for _, _, v in top_activations(model, states, "conv2", batch_size=4)]),
    }


def test_weights_set_after_a_first_call_are_the_ones_analysed():
    states = models.random_states(6, seed=3, dtype="uint8")
    model, other = fresh_model(11), fresh_model(12)
    before = every_analysis(model, states)
    model.set_weights(other.get_weights())
    after = every_analysis(model, states)
    expected = every_analysis(other, states)
    for name in before:
        assert np.abs(expected[name]).max() > 0, name
        assert not np.allclose(before[name], expected[name]), f"{name}: the two models give the same result"
        np.testing.assert_allclose(after[name], expected[name], rtol=1e-4, atol=1e-5 * np.abs(expected[name]).max(),
                                   err_msg=name)


def test_a_short_last_batch_gives_its_own_states_results():
    """6 states in batches of 4: the last batch of 2 runs padded to 4 under JAX."""
    model = fresh_model(13)
    states = models.random_states(6, seed=4, dtype="uint8")
    filters = np.array([0, 1, 2, 3, 1, 0])
    got = guided_backprop(model, states, "conv2", filters, batch_size=4)
    _, ref = models.numpy_input_gradient(model, states, "conv2", models.max_filter_seed(filters), guided=True)
    assert np.abs(ref[4:]).max() > 0
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    one_at_a_time = np.concatenate([guided_backprop(model, states[i:i + 1], "conv2", filters[i:i + 1]) for i in range(6)])
    np.testing.assert_allclose(got, one_at_a_time, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


@jax_only
def test_one_trace_per_model_and_layer(monkeypatch):
    """Later calls, filters, states and the last short batch reuse the first call's compilation."""
    import dqnviz.analysis.guided as guided

    traces = count_traces(monkeypatch, guided)
    model = fresh_model(14)
    states = models.random_states(10, seed=5, dtype="uint8")
    guided_backprop(model, states, "conv2", 1, batch_size=4)  # batches of 4, 4 and 2 (padded to 4)
    guided_backprop(model, states[:7], "conv2", np.arange(7) % 6, batch_size=4)
    guided_backprop(model, states[3:], "conv2", 5, batch_size=4)
    assert len(traces) == 1, traces
    guided_backprop(model, states, "conv1", 1, batch_size=4)  # another layer: its own function
    assert len(traces) == 2, traces


def test_compiled_functions_go_with_their_model():
    model = fresh_model(15)
    states = models.random_states(3, seed=6, dtype="uint8")
    guided_backprop(model, states, "conv2", 1)
    saliency(model, states)
    top_activations(model, states, "conv1")
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None, "a compiled analysis keeps its model alive"


@jax_only
def test_a_deep_model_runs_op_by_op_and_gives_the_same_images(monkeypatch):
    """Past MAX_COMPILED_OPERATIONS a layer's pass is not compiled (its compilation, repeated for
    every layer's prefix, would cost more than it saves); the images are the same either way."""
    import dqnviz.analysis._model as model_helpers
    import dqnviz.analysis.guided as guided

    keras.utils.set_random_seed(16)
    layers = [keras.Input((10, 10, 3))]
    for i in range(12):
        layers += [keras.layers.Conv2D(4, 3, padding="same", name=f"conv{i}"), keras.layers.ReLU()]
    model = keras.Sequential(layers + [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    assert model_helpers.graph_size(model, model.get_layer("conv11").output) > model_helpers.MAX_COMPILED_OPERATIONS
    assert model_helpers.graph_size(model, model.get_layer("conv2").output) <= model_helpers.MAX_COMPILED_OPERATIONS
    runs = count_traces(monkeypatch, guided)
    states = np.random.default_rng(7).random((6, 10, 10, 3)).astype(np.float32)
    deep = [guided_backprop(model, states, "conv11", 1, batch_size=4) for _ in range(2)]
    assert len(runs) == 4  # two calls of two batches, each run in Python: op by op
    shallow = [guided_backprop(model, states, "conv2", 1, batch_size=4) for _ in range(2)]
    assert len(runs) == 5  # traced once, then compiled
    monkeypatch.setattr(model_helpers, "MAX_COMPILED_OPERATIONS", 1000)
    vars(model).pop("_dqnviz_compiled")
    np.testing.assert_allclose(guided_backprop(model, states, "conv11", 1, batch_size=4), deep[1], rtol=1e-4,
                               atol=1e-5 * np.abs(deep[1]).max())
    assert np.abs(deep[0]).max() > 0 and np.abs(shallow[0]).max() > 0


def test_every_layers_strongest_units_from_one_pass_are_each_layers_own():
    """``top_activations_by_layer`` reads every layer from the same passes: the same units and values
    as one layer at a time, with filters, a preferred-states mask, a short last batch and a layer asked
    twice."""
    from dqnviz.analysis import full_history, top_activations_by_layer

    model = fresh_model(15)
    states = models.random_states(11, seed=6, dtype="uint8")
    states[:3, ..., :2] = 0  # blank early frames: not full history
    prefer = full_history(states)
    layers = ["conv1", "conv2", "fc", "conv1"]
    filters = [None, [5, 0, 3], None, [2]]
    found = top_activations_by_layer(model, states, layers, filters=filters, batch_size=4, prefer=prefer)
    assert len(found) == len(layers)
    for layer, chosen, units in zip(layers, filters, found):
        alone = top_activations(model, states, layer, filters=chosen, batch_size=4, prefer=prefer)
        assert [(n, yx) for n, yx, _ in units] == [(n, yx) for n, yx, _ in alone], layer
        assert [v for *_, v in units] == pytest.approx([v for *_, v in alone], rel=1e-5, abs=1e-6)
    assert len(found[0]) == 4 and len(found[3]) == 1 and found[3][0] == found[0][2]


def test_a_wrong_number_of_filter_entries_is_a_clear_error():
    from dqnviz.analysis import top_activations_by_layer
    from dqnviz.errors import UserError

    model = fresh_model(15)
    with pytest.raises(UserError, match="one entry per layer"):
        top_activations_by_layer(model, models.random_states(2), ["conv1", "conv2"], filters=[[0]])


@jax_only
def test_every_layer_is_read_from_one_compiled_pass(monkeypatch):
    """One trace for all of a model's own layers; a second call reuses it."""
    import dqnviz.analysis._model as model_module
    from dqnviz.analysis import top_activations_by_layer

    traces = count_traces(monkeypatch, model_module)
    model = fresh_model(16)
    states = models.random_states(10, seed=7, dtype="uint8")
    top_activations_by_layer(model, states, ["conv1", "conv2", "fc"], batch_size=4)
    top_activations_by_layer(model, states[:6], ["conv1", "conv2", "fc"], batch_size=4)
    assert len(traces) == 1, traces
