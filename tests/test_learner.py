"""The DQN update: targets by hand, Huber loss, a real gradient step, the ε schedule."""

import keras
import numpy as np
import pytest
from keras import ops

from dqnviz.config import TrainConfig, epsilon_schedule
from dqnviz.learner import Learner, dqn_loss, huber, td_targets
from tests.helpers import random_batch


def test_dqn_target_uses_max_of_target_network():
    q_next = np.array([[1.0, 5.0, 2.0], [3.0, -1.0, 0.0]], np.float32)
    y = ops.convert_to_numpy(td_targets(np.array([1.0, 0.5], np.float32), np.array([0.99, 0.0], np.float32), q_next, q_next))
    assert y.tolist() == pytest.approx([1.0 + 0.99 * 5.0, 0.5])


def test_double_dqn_target_picks_action_with_online_net_and_values_it_with_target_net():
    q_next_online = np.array([[9.0, 1.0, 2.0], [0.0, 0.0, 7.0]], np.float32)  # argmax 0 and 2
    q_next_target = np.array([[1.0, 5.0, 2.0], [3.0, -1.0, 4.0]], np.float32)  # max would be 5 and 4
    y = ops.convert_to_numpy(td_targets(np.array([1.0, 2.0], np.float32), np.array([0.5, 0.25], np.float32),
                                        q_next_online, q_next_target))
    assert y.tolist() == pytest.approx([1.0 + 0.5 * 1.0, 2.0 + 0.25 * 4.0])


def test_bootstrap_epsilon_values_the_next_state_under_the_epsilon_greedy_policy():
    q_next_online = np.array([[9.0, 1.0, 2.0], [0.0, 0.0, 7.0]], np.float32)  # a* = 0 and 2
    q_next_target = np.array([[1.0, 5.0, 3.0], [3.0, -1.0, 4.0]], np.float32)  # means 3 and 2
    returns, discounts = np.array([1.0, 2.0], np.float32), np.array([0.5, 0.0], np.float32)
    y = ops.convert_to_numpy(td_targets(returns, discounts, q_next_online, q_next_target, bootstrap_epsilon=0.25))
    # V(s') = 0.75 · Q_target(s', a*) + 0.25 · mean_a Q_target(s', a); a terminal (discount 0) stays R
    assert y.tolist() == pytest.approx([1.0 + 0.5 * (0.75 * 1.0 + 0.25 * 3.0), 2.0])
    greedy = ops.convert_to_numpy(td_targets(returns, discounts, q_next_target, q_next_target, bootstrap_epsilon=1.0))
    assert greedy.tolist() == pytest.approx([1.0 + 0.5 * 3.0, 2.0])  # ε_b = 1: the uniform policy's value


def test_bootstrap_epsilon_reaches_the_compiled_update():
    """The learner's compiled step uses the run's ε_b: its |δ| equal the loss computed by hand."""
    batch = random_batch(np.random.default_rng(3))
    for epsilon in (0.0, 0.5):
        learner = Learner(3, TrainConfig(double=True, bootstrap_epsilon=epsilon, seed=0))
        online, target = learner.model(), learner.target
        q_next_online = online.predict(batch["next_states"], verbose=0)
        q_next_target = target.predict(batch["next_states"], verbose=0)
        q = online.predict(batch["states"], verbose=0)
        _, expected = dqn_loss(q, q_next_online, q_next_target, batch, bootstrap_epsilon=epsilon)
        _, td_abs = learner.train(batch)
        np.testing.assert_allclose(np.asarray(td_abs), ops.convert_to_numpy(expected), rtol=1e-4, atol=1e-5)
    _, other = dqn_loss(q, q_next_online, q_next_target, batch, bootstrap_epsilon=0.0)
    assert not np.allclose(ops.convert_to_numpy(other), np.asarray(td_abs), atol=1e-4)  # ε_b changes δ


def test_n_step_discount_enters_the_target():
    gamma, n = 0.9, 3
    rewards = [1.0, 0.0, 2.0]
    R = sum(gamma**k * r for k, r in enumerate(rewards))
    q_next = np.array([[2.0, 4.0]], np.float32)
    y = ops.convert_to_numpy(td_targets(np.array([R], np.float32), np.array([gamma**n], np.float32), q_next, q_next))
    assert y[0] == pytest.approx(1.0 + 0.0 + 0.81 * 2.0 + 0.729 * 4.0)


def test_huber_is_quadratic_then_linear():
    x = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 2.0], np.float32)
    assert ops.convert_to_numpy(huber(x)).tolist() == pytest.approx([2.5, 0.5, 0.125, 0.0, 0.125, 1.5])


def test_loss_weights_and_td_errors():
    q = np.array([[1.0, 2.0], [0.0, 3.0]], np.float32)
    q_next = np.zeros((2, 2), np.float32)
    batch = {"returns": np.array([2.0, 3.5], np.float32), "discounts": np.zeros(2, np.float32),
             "actions": np.array([0, 1], np.int32), "weights": np.array([1.0, 0.5], np.float32)}
    loss, td_abs = dqn_loss(q, q_next, q_next, batch)
    assert ops.convert_to_numpy(td_abs).tolist() == pytest.approx([1.0, 0.5])
    assert float(loss) == pytest.approx((0.5 * 1.0 + 0.5 * 0.125) / 2)


@pytest.mark.parametrize("double", [False, True])
def test_training_step_reduces_the_loss_on_a_fixed_batch(double):
    config = TrainConfig(double=double, optimizer="adam", learning_rate=1e-3, seed=0)
    learner = Learner(3, config)
    batch = random_batch(np.random.default_rng(0))
    first, _ = learner.train(batch)
    for _ in range(20):
        loss, _ = learner.train(batch)
    assert float(loss) < 0.5 * float(first)
    # the target network does not move until it is synced
    target_q = learner.target.predict(batch["states"], verbose=0)
    learner.sync_target()
    synced = learner.target.predict(batch["states"], verbose=0)
    online = learner.model().predict(batch["states"], verbose=0)
    assert not np.allclose(target_q, online, atol=1e-4)
    np.testing.assert_allclose(synced, online, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(learner.q_values(batch["states"]), online, rtol=1e-4, atol=1e-4)
    # the trainer's frame stacks (N, history, 84, 84) are transposed inside the compiled call
    stacks = np.ascontiguousarray(np.moveaxis(batch["states"], -1, 1))
    np.testing.assert_allclose(learner.q_values(stacks, stacks=True), online, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_a_restored_optimizer_continues_exactly(tmp_path, optimizer):
    from dqnviz.snapshot import load_optimizer_state, load_snapshot, save_optimizer_state, save_snapshot

    config = TrainConfig(optimizer=optimizer, learning_rate=1e-3, seed=0)
    rng = np.random.default_rng(1)
    batches = [random_batch(rng) for _ in range(4)]
    original = Learner(3, config)
    for batch in batches[:3]:
        original.train(batch)
    original.sync_target()  # a resumed learner's target network starts as a copy of the online one
    save_snapshot(tmp_path / "s.keras", original.model(), {"game": "t"})
    save_optimizer_state(tmp_path / "s.npz", original.optimizer_state(), train_steps_done=12)
    assert load_optimizer_state(tmp_path / "s.npz", train_steps_done=13) is None  # another point of the run

    def resumed(with_state):
        learner = Learner(3, config, model=load_snapshot(tmp_path / "s.keras").model)
        if with_state:
            learner.restore_optimizer_state(load_optimizer_state(tmp_path / "s.npz", train_steps_done=12))
        learner.train(batches[3])
        return [np.array(w) for w in learner.model().get_weights()]

    original.train(batches[3])
    expected = [np.array(w) for w in original.model().get_weights()]
    for got, want in zip(resumed(with_state=True), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # a fresh optimizer takes a different step (no moments, step count 0)
    assert any(not np.allclose(got, want, rtol=1e-5, atol=1e-6) for got, want in zip(resumed(False), expected))


def test_an_optimizer_state_of_another_shape_is_refused():
    learner = Learner(3, TrainConfig(optimizer="adam", seed=0))
    state = learner.optimizer_state()
    assert "iteration" in state and "learning_rate" not in state  # a resumed run may set a new rate
    faster = Learner(3, TrainConfig(optimizer="adam", learning_rate=1e-3, seed=0))
    faster.restore_optimizer_state(state)
    assert float(faster.optimizer.learning_rate) == pytest.approx(1e-3)
    name = next(n for n, v in state.items() if v.ndim == 4)
    with pytest.raises(ValueError, match="does not match"):
        learner.restore_optimizer_state({**state, name: state[name][..., :1]})
    other = Learner(3, TrainConfig(optimizer="rmsprop", seed=0))
    with pytest.raises(ValueError, match="does not match"):
        other.restore_optimizer_state(state)


def test_epsilon_schedule_is_linear_then_flat():
    config = TrainConfig(epsilon_start=1.0, epsilon_end=0.1, epsilon_decay_steps=1000)
    assert epsilon_schedule(0, config) == 1.0
    assert epsilon_schedule(500, config) == pytest.approx(0.55)
    assert epsilon_schedule(1000, config) == pytest.approx(0.1)
    assert epsilon_schedule(10_000, config) == pytest.approx(0.1)


def test_default_optimizer_is_deepminds_centred_rmsprop():
    learner = Learner(2, TrainConfig())
    optimizer = learner.optimizer
    assert isinstance(optimizer, keras.optimizers.RMSprop)
    assert optimizer.centered and optimizer.rho == 0.95 and optimizer.epsilon == pytest.approx(0.01 / 32 ** 2)
    assert float(optimizer.learning_rate) == pytest.approx(0.00025)


@pytest.mark.parametrize("batch_size", [32, 8])
def test_rmsprop_takes_deepminds_steps_on_the_batch_mean_loss(batch_size):
    """DeepMind's update (their Lua NeuralQLearner), written out in numpy on the gradient G of the
    loss summed over the batch: m ← ρm + (1−ρ)G, v ← ρv + (1−ρ)G², θ ← θ − ηG/√(v − m² + 0.01).
    The learner's optimizer, stepping on the batch mean's gradient G/B, must move θ the same."""
    from dqnviz.learner import make_optimizer

    config = TrainConfig(batch_size=batch_size)
    optimizer = make_optimizer(config)
    rng = np.random.default_rng(3)
    start = rng.normal(scale=1e-3, size=(5,)).astype("float32")  # small: float32 resolves the steps
    weight = keras.Variable(start)
    optimizer.build([weight])
    theta, m, v = start.astype("float64"), np.zeros(5), np.zeros(5)
    for _ in range(4):
        summed = rng.normal(scale=0.05, size=(5,))  # G: gradients of this size make ε dominate
        optimizer.apply_gradients([(keras.ops.convert_to_tensor((summed / batch_size).astype("float32")), weight)])
        m = 0.95 * m + 0.05 * summed
        v = 0.95 * v + 0.05 * summed ** 2
        theta = theta - 0.00025 * summed / np.sqrt(v - m ** 2 + 0.01)
    moved, wanted = np.asarray(weight) - start, theta - start
    np.testing.assert_allclose(moved, wanted, rtol=2e-3, atol=1e-8)
    assert np.abs(wanted).max() > 1e-4  # the steps are not vanishingly small


def test_jax_compiler_options_are_used_where_xla_knows_them_and_dropped_where_not(monkeypatch):
    # The JAX module is importable under either Keras backend (CI installs jax for both runs).
    from dqnviz.backend import jax as jax_backend

    monkeypatch.delenv("DQNVIZ_COMPILER_OPTIONS", raising=False)
    jax_backend.compiler_options.cache_clear()
    try:
        import jax

        # all the options where this XLA knows them (CPU XLA too: they are DebugOptions fields), none
        # only where it refuses them
        def compile_with(options):
            return jax.jit(lambda x: x + 1, compiler_options=options).lower(np.float32(0)).compile()

        options = jax_backend.compiler_options()
        if options:
            assert options == jax_backend.GPU_COMPILER_OPTIONS and compile_with(options) is not None
        else:
            with pytest.raises(Exception):
                compile_with(jax_backend.GPU_COMPILER_OPTIONS)
        # an option this XLA does not know is dropped, and functions still compile and run
        monkeypatch.setattr(jax_backend, "GPU_COMPILER_OPTIONS", {"xla_no_such_option_anywhere": 1})
        jax_backend.compiler_options.cache_clear()
        assert jax_backend.compiler_options() == {}
        assert float(jax_backend._jit(lambda x: x * 2)(np.float32(3))) == 6.0
        # without options, jax.jit is called without the keyword, which JAX < 0.4.36 lacks
        seen = []
        monkeypatch.setattr(jax_backend.jax, "jit", lambda fn, **options: seen.append(options) or fn)
        jax_backend._jit(abs, donate_argnums=0)
        assert seen == [{"donate_argnums": 0}]
        # and DQNVIZ_COMPILER_OPTIONS=0 turns known ones off
        monkeypatch.undo()
        monkeypatch.setenv("DQNVIZ_COMPILER_OPTIONS", "0")
        jax_backend.compiler_options.cache_clear()
        assert jax_backend.compiler_options() == {}
    finally:
        jax_backend.compiler_options.cache_clear()


def test_fewer_bigger_passes_are_an_accelerator_default_that_the_environment_overrides(monkeypatch):
    from dqnviz.backend import jax as jax_backend

    monkeypatch.delenv("DQNVIZ_FEWER_PASSES", raising=False)
    assert jax_backend.fewer_passes() is (jax_backend.jax.default_backend() != "cpu")
    monkeypatch.setenv("DQNVIZ_FEWER_PASSES", "1")
    assert jax_backend.fewer_passes() is True
    monkeypatch.setenv("DQNVIZ_FEWER_PASSES", "0")
    assert jax_backend.fewer_passes() is False


@pytest.mark.skipif(keras.config.backend() != "jax", reason="the joint pass is the JAX update's (backend/jax.py)")
def test_double_dqn_in_one_online_pass_makes_the_same_updates(monkeypatch):
    """Q(s) and Q(s') in one pass over 2B states (a GPU's default) gives the updates of two passes."""
    rng = np.random.default_rng(7)
    batch = random_batch(rng)
    weights = []
    for choice in ("0", "1"):
        monkeypatch.setenv("DQNVIZ_FEWER_PASSES", choice)
        learner = Learner(4, TrainConfig(seed=2, double=True, dueling=True))
        results = [learner.train(batch) for _ in range(3)]
        weights.append((learner.model().get_weights(), [np.asarray(td) for _, td in results]))
    (separate, td_separate), (joint, td_joint) = weights
    for a, b in zip(separate, joint):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(td_separate, td_joint, rtol=1e-4, atol=1e-5)
    fresh = Learner(4, TrainConfig(seed=2, double=True, dueling=True)).model().get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(fresh, joint))  # and the updates did something


@pytest.mark.parametrize("on_device", [False, True])
def test_the_results_of_updates_read_in_one_go_are_those_of_each_update(monkeypatch, on_device):
    """results_to_host: the losses (K,) and |δ| (K, B), from a result per update or one for all,
    and under TensorFlow packed on the device (as on an accelerator) or read as they are (a CPU)."""
    import keras

    from dqnviz.backend import results_to_host as to_host
    from dqnviz.learner import PendingUpdates

    if keras.config.backend() == "tensorflow":
        from dqnviz.backend import tensorflow as tensorflow_backend

        monkeypatch.setattr(tensorflow_backend, "_on_device", lambda tensors: on_device)
    rng = np.random.default_rng(5)
    losses = rng.random(3).astype(np.float32)
    td_abs = rng.random((3, 8)).astype(np.float32)
    each = [ops.convert_to_tensor(v) for v in losses], [ops.convert_to_tensor(v) for v in td_abs]
    for result in (each, (ops.convert_to_tensor(losses), ops.convert_to_tensor(td_abs)), (each[0][:1], each[1][:1])):
        got_losses, got_td = to_host(*result)
        count = len(got_losses)
        assert got_losses.dtype == got_td.dtype == np.float32 and got_td.shape == (count, 8)
        np.testing.assert_array_equal(got_losses, losses[:count])
        np.testing.assert_array_equal(got_td, td_abs[:count])
    pending = PendingUpdates([], *each)
    assert pending.losses() is pending.results()[0] and pending.td_abs() is pending.results()[1]  # read once
    np.testing.assert_array_equal(pending.td_abs(), td_abs)


def test_an_older_snapshots_rmsprop_epsilon_is_read_so_that_its_steps_stay_the_same():
    """Before ε was in DeepMind's units, a snapshot's ε went to Keras as it was: read as ε·B², the
    optimizer gets (ε·B²)/B² = ε, the same steps. A snapshot that says its units is read as is."""
    from dqnviz.config import RMSPROP_EPSILON_UNITS, stored_config
    from dqnviz.learner import make_optimizer

    old = {"config": TrainConfig(batch_size=16, rmsprop_epsilon=0.01).to_dict()}
    config, said = stored_config(old)
    assert config.rmsprop_epsilon == pytest.approx(0.01 * 16 ** 2) and config.batch_size == 16
    assert make_optimizer(config).epsilon == pytest.approx(0.01)  # what Keras got before
    assert "its ε 0.01 is kept as --rmsprop-epsilon 2.56, the same steps" in said
    new, said = stored_config({**old, "rmsprop_epsilon_units": RMSPROP_EPSILON_UNITS})
    assert new.rmsprop_epsilon == 0.01 and said is None
    adam, said = stored_config({"config": TrainConfig(optimizer="adam").to_dict()})
    assert said is None  # nothing to say where RMSProp is not used (its ε is still read anew)
    assert stored_config({})[0] == TrainConfig()  # no stored config: the defaults, as before


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="called_directly wraps TensorFlow's tf.function")
def test_called_directly_traces_once_per_signature_and_refuses_what_is_no_tensor():
    import tensorflow as tf

    from dqnviz.backend.tensorflow import called_directly

    traced = []

    def make(any_batch):
        @called_directly(any_batch=any_batch)
        @tf.function
        def doubled(x, extra):
            traced.append(tuple(x.shape))
            return 2 * x + extra["bias"]
        return doubled

    bias = {"bias": np.float32(1.0)}
    doubled = make(any_batch=True)
    for batch in (1, 5, 3):  # one graph, its batch left open, serves every size
        x = np.arange(batch * 2, dtype=np.float32).reshape(batch, 2)
        np.testing.assert_array_equal(doubled(x, bias).numpy(), 2 * x + 1)
    assert traced == [(None, 2)]
    doubled(np.zeros((2, 2), np.int32) + 1, {"bias": np.int32(0)})  # another dtype: a second graph
    assert len(traced) == 2

    traced.clear()
    exact = make(any_batch=False)
    for batch in (4, 4, 2):  # a graph per exact shape
        exact(np.ones((batch, 2), np.float32), bias)
    assert traced == [(4, 2), (2, 2)]

    for wrong in ([1.0, 2.0], (1.0,), None, True):  # a structure or no tensor at all: refused
        with pytest.raises(TypeError, match="called_directly takes tensors or arrays"):
            doubled(wrong, bias)
        with pytest.raises(TypeError, match="called_directly takes tensors or arrays"):
            doubled(np.ones((1, 2), np.float32), {"bias": wrong})
