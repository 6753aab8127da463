"""The JAX learner's and actor's convolutions as matrix products (backend/jax.py, matmul_convolutions)."""

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(keras.config.backend() != "jax",
                                reason="matrix-product convolutions are the JAX backend's compiled calls")

if keras.config.backend() == "jax":
    import jax
    from jax import lax

    from dqnviz.backend import jax as jax_backend

    CONV_AS_MATMUL = jax_backend.conv_as_matmul


@pytest.mark.parametrize("input_shape, kernel_size, strides", [
    ((84, 84, 4), (8, 8), (4, 4)),    # the Nature network's conv1
    ((20, 20, 32), (4, 4), (2, 2)),   # conv2
    ((9, 9, 64), (3, 3), (1, 1)),     # conv3
    ((11, 13, 3), (3, 3), (2, 2)),    # a kernel that is no multiple of the stride: zero taps
    ((17, 16, 2), (5, 2), (3, 1)),    # non-square kernel and strides, input not whole blocks
    ((10, 10, 1), (2, 2), (3, 3)),    # a stride longer than the kernel: skipped pixels
])
def test_a_convolution_as_one_matrix_product_equals_xla_convolution(input_shape, kernel_size, strides):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3,) + input_shape).astype(np.float32)
    kernel = rng.normal(size=kernel_size + (input_shape[-1], 5)).astype(np.float32)
    expected = lax.conv_general_dilated(x, kernel, strides, "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    got = jax_backend.conv_as_matmul(x, kernel, strides)
    assert got.shape == expected.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-4)


def _convolutions_in(fn, *args) -> int:
    """Convolutions in a fresh trace of ``fn`` (JAX caches a function's traces, so wrap it anew)."""
    return str(jax.make_jaxpr(lambda *a: fn(*a))(*args)).count("conv_general_dilated")


def test_only_plain_conv2d_layers_are_computed_as_matrix_products_and_only_inside_the_context():
    inputs = keras.Input((16, 16, 2))
    x = keras.layers.Conv2D(4, 3, strides=2, name="plain")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="same")(x)
    x = keras.layers.Conv2D(4, 2, dilation_rate=2, name="dilated")(x)
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    variables = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    x = np.random.default_rng(1).normal(size=(2, 16, 16, 2)).astype(np.float32)

    def run(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x)[0]

    assert _convolutions_in(run, *variables, x) == 3
    with jax_backend.convolutions_as_matmuls(model, enabled=True):
        assert _convolutions_in(run, *variables, x) == 2  # "same" and dilated keep XLA's convolution
        with jax_backend.convolutions_as_matmuls(model, enabled=True):  # a call traced inside another
            pass
        assert _convolutions_in(run, *variables, x) == 2  # the inner exit left the outer's layers alone
        inside = np.asarray(jax.jit(lambda *a: run(*a))(*variables, x))
    assert "convolution_op" not in model.get_layer("plain").__dict__
    assert _convolutions_in(run, *variables, x) == 3  # a call traced afterwards (an analysis) is as before
    np.testing.assert_allclose(inside, np.asarray(run(*variables, x)), rtol=1e-5, atol=1e-5)
    with jax_backend.convolutions_as_matmuls(model, enabled=False):
        assert _convolutions_in(run, *variables, x) == 3


def test_the_plain_conv2d_layers_of_nested_models_are_found_in_order():
    """Through Keras's public ``layers``: a Sequential inside a functional model inside another."""
    inner = keras.Sequential([keras.Input((7, 7, 4)), keras.layers.Conv2D(4, 3, name="inner_plain"),
                              keras.layers.Conv2D(4, 3, padding="same", name="inner_same")], name="inner")
    inputs = keras.Input((16, 16, 2))
    middle_in = keras.Input((16, 16, 2))
    middle = keras.Model(middle_in, inner(keras.layers.Conv2D(4, 3, strides=2, name="middle_plain")(middle_in)),
                         name="middle")
    x = keras.layers.Conv2D(4, 1, name="outer_plain")(middle(inputs))
    model = keras.Model(inputs, x)
    assert [layer.name for layer in jax_backend._plain_conv2d_layers(model)] == [
        "middle_plain", "inner_plain", "outer_plain"]


def _learners(monkeypatch, choice, calls):
    from dqnviz.config import TrainConfig
    from dqnviz.learner import Learner

    monkeypatch.setenv("DQNVIZ_MATMUL_CONVOLUTIONS", choice)
    monkeypatch.setattr(jax_backend, "conv_as_matmul", lambda *args: calls.append(args[2]) or CONV_AS_MATMUL(*args))
    return Learner(4, TrainConfig(seed=2, double=True, dueling=True, optimizer="adam", learning_rate=1e-3))


def test_the_learner_and_the_actor_make_the_same_updates_and_values_either_way(monkeypatch):
    from tests.helpers import random_batch

    batch = random_batch(np.random.default_rng(5))
    results = {}
    for choice in ("0", "1"):
        calls = []
        learner = _learners(monkeypatch, choice, calls)
        td = [np.asarray(learner.train(batch)[1]) for _ in range(3)]
        predict = jax_backend.make_predict(learner.online)
        q = predict(batch["states"], learner.step.weights)
        results[choice] = (learner.model().get_weights(), td, q, calls)
    (off_weights, off_td, off_q, off_calls), (on_weights, on_td, on_q, on_calls) = results["0"], results["1"]
    assert off_calls == []
    # traced once each: the step (target, online s and s' passes: 3 × 3 layers) and the actor (3)
    assert sorted(set(on_calls)) == [(1, 1), (2, 2), (4, 4)] and len(on_calls) == 12
    for a, b in zip(off_weights, on_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(off_td, on_td, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(off_q, on_q, rtol=1e-4, atol=1e-4)
    first = _learners(monkeypatch, "1", []).model().get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(first, on_weights))  # the updates did something


def test_matrix_product_convolutions_are_an_accelerator_default_that_the_environment_overrides(monkeypatch):
    monkeypatch.delenv("DQNVIZ_MATMUL_CONVOLUTIONS", raising=False)
    assert jax_backend.matmul_convolutions() is (jax.default_backend() != "cpu")
    for choice, expected in (("1", True), ("0", False)):
        monkeypatch.setenv("DQNVIZ_MATMUL_CONVOLUTIONS", choice)
        assert jax_backend.matmul_convolutions() is expected
