"""The epoch loop's bookkeeping, on a scripted environment (no emulator)."""

import numpy as np
import pytest

from dqnviz import trainer
from dqnviz.config import TrainConfig
from tests.conftest import quiet_trainer


class ScriptedEnvs:
    """Every step scores 1; a game in environment i lasts ``lengths[i]`` steps. VectorAtariEnv's
    interface, with frame stacks (N, history, 84, 84) as the trainer asks for them."""

    num_actions = 4
    actions, action_names = [0, 1, 3, 4], ["NOOP", "FIRE", "RIGHT", "LEFT"]

    def __init__(self, length=10, lengths=None):
        self.lengths = np.array(lengths or [length])
        self.num_envs, self.t = len(self.lengths), 0

    def reset(self):
        self.t = 0
        return np.zeros((self.num_envs, 4, 84, 84), np.uint8)

    def send(self, actions):
        assert len(actions) == self.num_envs

    def recv(self):
        self.t += 1
        over = self.t % self.lengths == 0
        state = np.full((self.num_envs, 4, 84, 84), self.t % 250, np.uint8)
        return state, np.ones(self.num_envs, np.float32), over, over, np.zeros(self.num_envs)


def test_a_game_that_straddles_phases_is_counted_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(length=10))
    config = TrainConfig(replay_size=200, batch_size=4, validation_states=4, seed=0)
    run = quiet_trainer(tmp_path, config)
    random_phase = run.run_phase(0, "random", 6)  # the first game is 6 steps in
    train_phase = run.run_phase(1, "train", 10)  # it ends 4 steps later; the next one is 6 steps in
    assert random_phase.game_scores == [] and random_phase.partial_score == 6.0
    lines = []
    run.log = lines.append
    run.write_row(random_phase, 0.0)
    assert "6 steps, no game ended (score so far 6.00 on average)" in lines[-1]
    assert train_phase.game_scores == [10.0]
    assert train_phase.partial_score == 6.0
    assert train_phase.updates == 10 // config.train_frequency


def _trainer(tmp_path, monkeypatch, lengths, log=lambda *_: None):
    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(lengths=lengths))
    config = TrainConfig(replay_size=200, batch_size=4, validation_states=4, num_envs=len(lengths),
                         train_frequency=len(lengths), seed=0)
    return quiet_trainer(tmp_path, config, log=log)


def test_a_test_phase_plays_the_games_running_at_its_end_to_their_end(tmp_path, monkeypatch):
    lines = []
    run = _trainer(tmp_path, monkeypatch, lengths=[10], log=lines.append)
    run.run_phase(0, "random", 8)
    test = run.run_phase(1, "test", 25)  # two whole games, then the third, 5 steps in, is finished
    assert test.game_scores == [10.0, 10.0, 10.0] and test.steps == 30
    run.write_row(test, 0.0)
    assert "30 steps, 3 games, average 10.00" in lines[-1]
    exact = run.run_phase(2, "test", 20)  # ends exactly with the second game: no third is started
    assert exact.game_scores == [10.0, 10.0] and exact.steps == 20


def test_a_test_phase_is_not_biased_toward_short_games(tmp_path, monkeypatch):
    # Environment 0 plays 3-step games, environment 1 one 10-step game. Counting only the games
    # that end within 12 steps would give [3, 3] (average 3); the 10-step game started too.
    run = _trainer(tmp_path, monkeypatch, lengths=[3, 10])
    run.run_phase(0, "random", 8)
    test = run.run_phase(1, "test", 12)
    assert sorted(test.game_scores) == [3.0, 3.0, 10.0]
    assert test.steps == 12 + 4  # the long game's last 4 steps; environment 0's next game is not counted
    assert test.average_reward == (3 + 3 + 10) / 3


def test_the_network_runs_only_when_some_state_acts_greedily(tmp_path, monkeypatch):
    from dqnviz.agent import draw_exploration, epsilon_greedy

    run = _trainer(tmp_path, monkeypatch, lengths=[10])
    real_q_values, calls = run.learner.q_values, []

    def counting_q_values(states, stacks=False, **options):
        calls.append(len(states))
        return real_q_values(states, stacks=stacks, **options)

    run.learner.q_values = counting_q_values
    states = np.random.default_rng(3).integers(0, 255, (1, 4, 84, 84), dtype=np.uint8)  # frame stacks
    run.rng = np.random.default_rng(7)
    chosen = [int(run._choose(states, 0.6)[0]) for _ in range(300)]
    reference_rng = np.random.default_rng(7)
    q = real_q_values(np.moveaxis(states, 1, -1))
    expected = [int(epsilon_greedy(q, 0.6, reference_rng)[0]) for _ in range(300)]
    assert chosen == expected  # the same exploration draws, so the same actions
    draws, greedy_steps = np.random.default_rng(7), 0
    for _ in range(300):
        explore, _ = draw_exploration(1, 4, 0.6, draws)
        greedy_steps += int(not explore[0])
    assert len(calls) == greedy_steps and 90 < greedy_steps < 150  # about (1 − ε) of 300
    calls.clear()
    run.rng = np.random.default_rng(7)
    run._choose(np.repeat(states, 8, axis=0), 0.6)  # with 8 states, one greedy state needs the network
    assert calls == [8]


def test_a_serial_profile_waits_for_each_update_and_an_overlapped_one_does_not(tmp_path, monkeypatch):
    import sys

    import pytest

    from dqnviz.learner import PendingUpdates

    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(lengths=[10, 7]))
    readers = []  # who read an update's results: where the loop waited for the device
    real_losses = PendingUpdates.losses

    def recording_losses(self):
        readers.append(sys._getframe(1).f_code.co_name)
        return real_losses(self)

    monkeypatch.setattr(PendingUpdates, "losses", recording_losses)
    config = TrainConfig(num_envs=2, replay_size=200, batch_size=4, train_frequency=2, validation_states=4, seed=0)
    seconds = {}
    for profile in (False, "serial", "overlapped"):
        readers.clear()
        run = quiet_trainer(tmp_path, config, run=f"p{profile}", profile=profile)
        run.run_phase(0, "random", 20)
        stats = run.run_phase(1, "train", 64)  # 32 iterations, one update each
        assert stats.updates == 32
        seconds[profile] = dict(run.timer.seconds)
        if profile == "serial":  # waited where dispatched, then read again for the costs
            assert readers.count("_start_updates") == 32 and readers.count("_finish_updates") == 32
        else:  # the loop's own reads only: the loss of every 16th call
            assert "_start_updates" not in readers and readers.count("_finish_updates") == 2
    assert seconds[False] == {}
    for profile in ("serial", "overlapped"):
        assert set(seconds[profile]) == {"act", "emulate", "learn", "sample", "replay"}
    with pytest.raises(ValueError, match="profile"):
        quiet_trainer(tmp_path, config, run="bad", profile="parallel")


def _record_draws_and_priorities(monkeypatch, events):
    """Log each draw of batches (its slots) and each priority write, in the order they happen."""
    from dqnviz.replay import ReplayMemory

    real_sample, real_update = ReplayMemory.sample_batches, ReplayMemory.update_priorities

    def sample_batches(self, *args, **kwargs):
        batches = real_sample(self, *args, **kwargs)
        events.append(("draw", np.concatenate([b["envs"] * 1000 + b["slots"] for b in batches])))
        return batches

    def update_priorities(self, *args, **kwargs):
        events.append(("priorities", None))
        return real_update(self, *args, **kwargs)

    monkeypatch.setattr(ReplayMemory, "sample_batches", sample_batches)
    monkeypatch.setattr(ReplayMemory, "update_priorities", update_priorities)


def _train_with_and_without_sampling_ahead(tmp_path, monkeypatch, **options):
    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(lengths=[10, 7]))
    config = TrainConfig(num_envs=2, replay_size=200, batch_size=4, train_frequency=1, validation_states=4,
                         target_steps=12, seed=0, **options)  # two updates per iteration
    results, events = {}, []
    _record_draws_and_priorities(monkeypatch, events)
    for ahead in ("0", "1"):
        monkeypatch.setenv("DQNVIZ_SAMPLE_AHEAD", ahead)
        events.clear()
        run = quiet_trainer(tmp_path, config, run=f"ahead{ahead}")
        assert run.sample_ahead is (ahead == "1")
        run.run_phase(0, "random", 20)
        updates = [run.run_phase(1, "train", 16).updates, run.run_phase(1, "test", 6).updates,
                   run.run_phase(2, "train", 10).updates]
        results[ahead] = list(events), updates, run.learner.model().get_weights()
    return results


def test_uniform_replay_draws_the_same_batches_ahead_of_time(tmp_path, monkeypatch):
    """Drawn while the device runs the previous updates, the batches are those the loop would
    draw at the next iteration's start: same draws, same weights, and no draw is wasted at the
    end of a phase (a test phase comes between two train phases)."""
    results = _train_with_and_without_sampling_ahead(tmp_path, monkeypatch)
    (in_time, updates_in_time, weights_in_time), (ahead, updates_ahead, weights_ahead) = results["0"], results["1"]
    assert updates_in_time == updates_ahead == [16, 0, 10]  # 8 + 5 iterations of two updates
    assert len(in_time) == len(ahead) == 8 + 5  # a draw of two batches per iteration, none wasted
    for (kind, slots), (kind_ahead, slots_ahead) in zip(in_time, ahead):
        assert kind == kind_ahead == "draw"
        np.testing.assert_array_equal(slots, slots_ahead)
    for a, b in zip(weights_in_time, weights_ahead):
        np.testing.assert_array_equal(a, b)


def test_prioritized_replay_draws_ahead_before_the_priorities_of_the_updates_in_flight(tmp_path, monkeypatch):
    results = _train_with_and_without_sampling_ahead(tmp_path, monkeypatch, prioritized=True)
    in_time, ahead = [kind for kind, _ in results["0"][0]], [kind for kind, _ in results["1"][0]]
    # at each iteration's start, after the last iteration's |δ| reached the sum tree
    assert in_time == ["draw", "priorities"] * 8 + ["draw", "priorities"] * 5
    # the first draw of a train phase at its start; the next ones while the updates run
    phase = lambda iterations: ["draw"] + ["draw", "priorities"] * (iterations - 1) + ["priorities"]
    assert ahead == phase(8) + phase(5)
    assert results["0"][1] == results["1"][1] == [16, 0, 10]


class VaryingEnvs(ScriptedEnvs):
    """ScriptedEnvs whose states differ per environment and step, so that greedy actions follow
    the weights, and which logs the actions it is sent."""

    def __init__(self, events, **options):
        super().__init__(**options)
        self.events = events

    def send(self, actions):
        super().send(actions)
        self.events.append(("send", tuple(int(a) for a in actions)))

    def recv(self):
        state, *rest = super().recv()
        noise = np.random.default_rng(self.t).integers(0, 255, state.shape, dtype=np.uint8)
        return (noise, *rest)


def _launch_threads():
    """The launch thread's settings to test: JAX has one; TensorFlow's step runs in place."""
    import keras

    return ["0", "1"] if keras.config.backend() == "jax" else ["0"]


def test_updates_go_first_by_default_only_where_their_launch_does_not_hold_the_loop(tmp_path, monkeypatch):
    """TensorFlow's step runs on the calling thread: launched before the actions were sent, it
    would keep the emulators waiting for it, so there the actions go first. JAX on a CPU returns
    from the call at once, as it does from its launch thread on a GPU."""
    import keras

    monkeypatch.delenv("DQNVIZ_UPDATES_FIRST", raising=False)
    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(length=10))
    run = quiet_trainer(tmp_path, TrainConfig(replay_size=200, batch_size=4, validation_states=4, seed=0))
    assert run.learner.step.launches_asynchronously is (keras.config.backend() == "jax")
    assert run.updates_first is run.learner.step.launches_asynchronously
    monkeypatch.setenv("DQNVIZ_UPDATES_FIRST", "1")  # an A/B may ask for either order anywhere
    assert quiet_trainer(tmp_path, run.config, run="forced").updates_first is True


@pytest.mark.parametrize("launch_thread", _launch_threads())
@pytest.mark.parametrize("prioritized", [False, True])
def test_updates_launched_before_the_actions_are_read_change_nothing_but_the_order(
        tmp_path, monkeypatch, launch_thread, prioritized):
    """DQNVIZ_UPDATES_FIRST: each train iteration dispatches its forward pass, launches its updates,
    then reads its actions. The actions come from the weights of the iteration before, as when they
    are read first, so the actions sent, the batches drawn and the weights are the same, bit for
    bit; only the order of the updates and the actions differs (with the launch thread too). θ⁻ is
    copied after the send in both orders, after the iteration's updates."""
    from dqnviz.replay import ReplayMemory

    events = []
    monkeypatch.setenv("DQNVIZ_LAUNCH_THREAD", launch_thread)
    monkeypatch.setattr(trainer, "make_envs",
                        lambda rom, config, training, seed: VaryingEnvs(events, lengths=[9, 6]))
    real_sample = ReplayMemory.sample_batches

    def sample_batches(self, *args, **kwargs):
        batches = real_sample(self, *args, **kwargs)
        events.append(("draw", tuple(np.concatenate([b["envs"] * 1000 + b["slots"] for b in batches]))))
        return batches

    monkeypatch.setattr(ReplayMemory, "sample_batches", sample_batches)
    config = TrainConfig(num_envs=2, replay_size=200, batch_size=4, train_frequency=1, validation_states=4,
                         target_steps=6, epsilon_start=0.3, epsilon_end=0.3, learning_rate=0.01, seed=0,
                         double=True, prioritized=prioritized)
    results = {}
    for first in ("0", "1"):
        monkeypatch.setenv("DQNVIZ_UPDATES_FIRST", first)
        run = quiet_trainer(tmp_path, config, run=f"first{first}")
        assert run.updates_first is (first == "1")
        real_train = run.learner.train_transitions

        def train_transitions(replay, transitions):
            events.append(("updates", len(transitions)))
            return real_train(replay, transitions)

        run.learner.train_transitions = train_transitions
        run.run_phase(0, "random", 12)
        events.clear()
        run.run_phase(1, "train", 16)
        run.run_phase(1, "test", 4)
        run.run_phase(2, "train", 8)
        results[first] = list(events), run.learner.model().get_weights()
    (read_first, weights_read_first), (updates_first, weights_updates_first) = results["0"], results["1"]
    kinds = lambda log: [kind for kind, _ in log]
    # 8 + 4 train iterations of two updates (a test phase between), one draw each
    assert kinds(read_first).count("updates") == kinds(updates_first).count("updates") == 12
    of = lambda log, kind: [e for e in log if e[0] == kind]
    assert of(read_first, "send") == of(updates_first, "send")  # the same actions, in the same order
    assert of(read_first, "draw") == of(updates_first, "draw")  # the same batches
    train = lambda log: [kind for kind in kinds(log) if kind != "draw"]
    assert train(read_first)[:4] == ["send", "updates", "send", "updates"]
    assert train(updates_first)[:4] == ["updates", "send", "updates", "send"]
    # (the actions are ε-greedy at ε = 0.3: reading them with the weights after the iteration's
    # updates instead changes them, and this test then fails at the sends)
    for a, b in zip(weights_read_first, weights_updates_first):
        np.testing.assert_array_equal(a, b)


def test_a_train_phase_without_updates_says_why(tmp_path, monkeypatch):
    lines = []
    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(length=10))
    config = TrainConfig(replay_size=200, batch_size=64, validation_states=4, seed=0)
    run = quiet_trainer(tmp_path, config, log=lines.append)
    run.started = 0.0
    run.write_row(run.run_phase(0, "random", 20), 0.0)
    stats = run.run_phase(1, "train", 8)  # 28 transitions stored, fewer than a batch of 64
    run.write_row(stats, 0.0)
    assert stats.updates == 0
    assert lines[-1].strip().startswith("warning: no update was made") and "--batch-size 64" in lines[-1]
    stats = run.run_phase(1, "train", 60)  # now the memory can fill a batch
    run.write_row(stats, 0.0)
    assert stats.updates > 0 and "warning" not in lines[-1]
    # a memory that can fill a batch, but one update per 1,000 agent steps in a phase of 8
    run.config = run.config.replace(train_frequency=1000)
    run.write_row(run.run_phase(2, "train", 8), 0.0)
    assert lines[-1].strip() == ("warning: no update was made: --train-frequency 1,000 asks for one update per "
                                 "1,000 agent steps, and the phase played 8")


def test_fewer_validation_states_than_asked_are_reported(tmp_path, monkeypatch):
    lines = []
    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(length=10))
    run = quiet_trainer(tmp_path, TrainConfig(replay_size=200, batch_size=4, validation_states=500, seed=0),
                        log=lines.append)
    run.run_phase(0, "random", 20)
    run._keep_validation_states()
    assert len(run.validation) == run.replay.num_sampleable() < 500
    assert lines == [f"meanq is measured on {len(run.validation)} validation states, fewer than "
                     f"--validation-states 500: the random phase stored no more"]


def _count_copies_of_update_results(monkeypatch, copies):
    """Record in ``copies`` each device→host read of the results of updates (losses, |δ|) while
    the trainer reads them (at dispatch or at finish): dqnviz.learner's numpy conversions of
    tensors, its ``keras.ops.convert_to_numpy`` calls and its ``jax.device_get`` calls. Under
    TensorFlow the results are taken to be on an accelerator (on a CPU they need no copy)."""
    import keras

    from dqnviz import learner as learner_module

    reading = []

    def tensors_in(value):
        leaves = value if isinstance(value, (list, tuple)) else [value]
        return any(not isinstance(leaf, (np.ndarray, np.generic, int, float)) for leaf in leaves)

    class CountingNumpy:  # numpy as dqnviz.learner sees it
        def __getattr__(self, name):
            return getattr(np, name)

        def asarray(self, value, *args, **kwargs):
            if reading and tensors_in(value):
                copies.append("np.asarray")
            return np.asarray(value, *args, **kwargs)

        def array(self, value, *args, **kwargs):
            if reading and tensors_in(value):
                copies.append("np.array")
            return np.array(value, *args, **kwargs)

    def counting(name, real):
        def call(*args, **kwargs):
            if reading:
                copies.append(name)
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(learner_module, "np", CountingNumpy())
    monkeypatch.setattr(learner_module.ops, "convert_to_numpy", counting("convert_to_numpy", keras.ops.convert_to_numpy))
    if keras.config.backend() == "jax":
        import jax

        monkeypatch.setattr(jax, "device_get", counting("device_get", jax.device_get))
    else:
        from dqnviz.backend import tensorflow as tensorflow_backend

        monkeypatch.setattr(tensorflow_backend, "_on_device", lambda tensors: True)
    for name in ("_start_updates", "_finish_updates"):
        real = getattr(trainer.Trainer, name)

        def while_reading(self, *args, real=real):
            reading.append(True)
            try:
                return real(self, *args)
            finally:
                reading.pop()

        monkeypatch.setattr(trainer.Trainer, name, while_reading)


def test_the_losses_and_td_errors_of_updates_come_to_the_host_in_one_copy(tmp_path, monkeypatch):
    """Prioritized replay reads |δ| and the losses of every group of updates: one device→host
    read for both (not one each), also where a serial profile has read the losses already; the
    priorities and the mean loss are those of the updates made."""
    import keras

    from dqnviz.replay import ReplayMemory

    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(lengths=[10, 7]))
    config = TrainConfig(num_envs=2, replay_size=200, batch_size=4, train_frequency=1, validation_states=4,
                         prioritized=True, seed=0)  # two updates per iteration
    written = []
    real_update = ReplayMemory.update_priorities

    def update_priorities(self, envs, slots, td_abs):
        written.append(np.asarray(td_abs).shape)
        return real_update(self, envs, slots, td_abs)

    monkeypatch.setattr(ReplayMemory, "update_priorities", update_priorities)
    copies = []
    _count_copies_of_update_results(monkeypatch, copies)
    one_read = "device_get" if keras.config.backend() == "jax" else "convert_to_numpy"
    for profile in (False, "serial"):
        copies.clear(), written.clear()
        run = quiet_trainer(tmp_path, config, run=f"copies{profile}", profile=profile)
        run.run_phase(0, "random", 20)
        stats = run.run_phase(1, "train", 16)  # 8 iterations of two updates
        assert stats.updates == 16 and written == [(2, 4)] * 8  # |δ| of both batches of 4, at each iteration
        assert len(stats.costs) == 16 and np.isfinite(stats.meancost) and stats.meancost > 0
        assert copies == [one_read] * 8, f"{profile}: {copies}"


def _diverged_trainer(tmp_path, monkeypatch, bad_value):
    """A trainer whose network has one weight ``bad_value`` (None: all finite)."""
    from dqnviz.learner import Learner
    from dqnviz.network import build_q_network

    run = _trainer(tmp_path, monkeypatch, lengths=[10])
    model = build_q_network(4, seed=0)
    if bad_value is not None:
        kernel = model.get_layer("conv2").kernel
        values = kernel.numpy()
        values[1, 2, 3, 4] = bad_value
        kernel.assign(values)
    run.learner = Learner(4, run.config, model=model)
    return run


def test_divergence_is_found_on_the_device_without_copying_the_weights(tmp_path, monkeypatch):
    """_check_diverged: a NaN or ±inf weight stops the run with its one-line message, as a
    non-finite meancost or meanq does; the weights are reduced on the device, not copied to the
    host (neither get_weights nor a write-back through Learner.model)."""
    import keras
    import pytest

    from dqnviz.errors import UserError
    from dqnviz.learner import Learner

    runs = {value: _diverged_trainer(tmp_path, monkeypatch, value) for value in (None, np.nan, np.inf, -np.inf)}

    def copied(*args, **kwargs):
        raise AssertionError("the weights were copied to the host to check them")

    monkeypatch.setattr(keras.Model, "get_weights", copied)
    monkeypatch.setattr(Learner, "model", copied)
    finite = {"epoch": 3, "meancost": 0.25, "meanq": ""}  # no validation states: the weights tell
    runs[None]._check_diverged(finite)
    runs[None]._check_diverged({**finite, "meanq": 1.5})
    for value in (np.nan, np.inf, -np.inf):
        with pytest.raises(UserError) as raised:
            runs[value]._check_diverged(finite)
        assert str(raised.value) == ("the network diverged at epoch 3 (weights not finite): no snapshot saved; "
                                     "try a lower --learning-rate than 0.00025")
    with pytest.raises(UserError, match=r"diverged at epoch 3 \(meancost nan, meanq inf\): no snapshot saved"):
        runs[None]._check_diverged({**finite, "meancost": float("nan"), "meanq": float("inf")})


def _train_on_given_batches(tmp_path, monkeypatch, num_envs, batches, source):
    """A train phase of 32 agent steps with ``num_envs`` scripted environments whose every update
    takes the next of ``batches`` (drawn from ``source``); returns (events, weights)."""
    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(lengths=[10] * num_envs))
    config = TrainConfig(replay_size=400, batch_size=4, validation_states=4, num_envs=num_envs, train_frequency=4,
                         target_steps=8, seed=0)
    run = quiet_trainer(tmp_path / f"envs{num_envs}", config)
    run.run_phase(0, "random", 32)
    given, events = iter(batches), []
    run._draw = lambda count, train_steps_done=None: [next(given) for _ in range(count)]
    real_train, real_sync = run.learner.train_transitions, run.learner.sync_target

    def train_transitions(replay, transitions):
        events.append(f"{len(transitions)} update(s) after {run.train_steps_done} steps")
        return real_train(source, transitions)

    def sync_target():
        events.append(f"θ⁻ ← θ after {run.train_steps_done} steps")
        real_sync()

    run.learner.train_transitions, run.learner.sync_target = train_transitions, sync_target
    run.run_phase(1, "train", 32)
    return events, [w.copy() for w in run.learner.model().get_weights()]


def test_vectorised_and_classic_training_make_identical_updates_for_identical_batches(tmp_path, monkeypatch):
    """Classic mode (one environment, an update every 4th step) and vectorised mode (4
    environments, an update every iteration of all four): the standard ratio, one batch per 4
    agent steps, and θ⁻ ← θ every 8 agent steps, in the same order. Given the same batches,
    the trainer loop makes the same updates, so the weights agree bit for bit."""
    from dqnviz.replay import ReplayMemory

    source = ReplayMemory(200, seed=5)
    rng = np.random.default_rng(5)
    for t in range(120):
        source.add(rng.integers(0, 255, (1, 84, 84), dtype=np.uint8), rng.integers(0, 4, 1),
                   rng.normal(size=1).astype(np.float32), [t % 40 == 39], [t % 40 == 0])
    batches = [source.sample_transitions(4) for _ in range(8)]
    classic, classic_weights = _train_on_given_batches(tmp_path, monkeypatch, 1, batches, source)
    vectorised, vectorised_weights = _train_on_given_batches(tmp_path, monkeypatch, 4, batches, source)
    expected = []  # an update every 4 agent steps, then θ⁻ ← θ whenever 8 more steps have passed
    for steps in range(4, 33, 4):
        expected += [f"1 update(s) after {steps} steps"] + [f"θ⁻ ← θ after {steps} steps"] * (steps % 8 == 0)
    assert classic == vectorised == expected
    for a, b in zip(classic_weights, vectorised_weights):
        np.testing.assert_array_equal(a, b)
    fresh = quiet_trainer(tmp_path / "fresh", TrainConfig(replay_size=400, batch_size=4, validation_states=4, seed=0))
    assert any(not np.array_equal(a, b) for a, b in zip(fresh.learner.model().get_weights(), classic_weights))


@pytest.mark.parametrize("num_envs, train_frequency, target_steps", [(1, 5, 7), (4, 8, 6), (2, 2, 5)])
def test_updates_and_target_copies_keep_their_period_over_the_run_not_per_phase(tmp_path, monkeypatch, num_envs,
                                                                                train_frequency, target_steps):
    """Train phases of 8 agent steps with an update every 5 (or 8) steps and θ⁻ ← θ every 7 (or 6):
    neither divides a phase, so a clock that restarted each phase would make ⌊8/5⌋ = 1 update a
    phase, 3 in 24 steps instead of ⌊24/5⌋ = 4, and copy θ⁻ late. Counted over the run, after D
    train steps the run has made ⌊D / f⌋ sets of updates and ⌊D / C⌋ copies, each where D passes
    a multiple (DeepMind's numSteps % update_freq)."""
    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(lengths=[10] * num_envs))
    config = TrainConfig(replay_size=400, batch_size=4, validation_states=4, num_envs=num_envs,
                         train_frequency=train_frequency, target_steps=target_steps, seed=0)
    run = quiet_trainer(tmp_path, config)
    run.run_phase(0, "random", 40)
    updates, copies = [], []
    real_train, real_sync = run.learner.train_transitions, run.learner.sync_target
    run.learner.train_transitions = lambda replay, transitions: (updates.append((run.train_steps_done, len(transitions)))
                                                                 or real_train(replay, transitions))
    run.learner.sync_target = lambda: copies.append(run.train_steps_done) or real_sync()
    for epoch in (1, 2, 3):
        run.run_phase(epoch, "train", 8)
    steps = range(num_envs, 25, num_envs)  # the run's train steps after each iteration
    per_iteration = max(1, num_envs // train_frequency)
    assert updates == [(d, per_iteration) for d in steps if d // train_frequency > (d - num_envs) // train_frequency]
    assert sum(count for _, count in updates) == 24 // train_frequency
    assert copies == [d for d in steps if d // target_steps > (d - num_envs) // target_steps]
    assert len(copies) == 24 // target_steps


def test_each_phase_acts_with_its_own_epsilon(tmp_path, monkeypatch):
    """Random: ε = 1. Train: ε(t) = ε_end + (ε_start − ε_end)·max(0, 1 − t/T), t counting train steps
    only, carried across epochs. Test: --test-epsilon, in environments built for testing."""
    built = []
    monkeypatch.setattr(trainer, "make_envs",
                        lambda rom, config, training, seed: built.append(training) or ScriptedEnvs(length=10))
    config = TrainConfig(replay_size=200, batch_size=4, validation_states=4, seed=0, epsilon_start=1.0,
                         epsilon_end=0.1, epsilon_decay_steps=40, test_epsilon=0.07)
    run = quiet_trainer(tmp_path, config)
    used = []
    real_choose = run._choose_later
    run._choose_later = lambda states, epsilon: used.append(epsilon) or real_choose(states, epsilon)

    def phase(epoch, name, steps):
        used.clear()
        stats = run.run_phase(epoch, name, steps)
        return list(used), stats

    assert phase(0, "random", 8)[0] == [1.0] * 8
    first, stats = phase(1, "train", 20)
    assert first == pytest.approx([0.1 + 0.9 * (1 - t / 40) for t in range(20)])  # 1.0, 0.9775, …
    assert run.write_row(stats, 0.0)["last_exploration_rate"] == pytest.approx(0.1 + 0.9 * (1 - 19 / 40))
    second, _ = phase(2, "train", 30)  # t goes on from 20; from t = 40 on, ε stays at ε_end
    assert second == pytest.approx([0.1 + 0.9 * max(0.0, 1 - t / 40) for t in range(20, 50)])
    tested, stats = phase(2, "test", 10)
    assert tested == [0.07] * 10 and stats.epsilon == 0.07
    assert built == [True, False]  # the training environments, then (once) the test environments


@pytest.mark.parametrize("num_envs", [1, 2])
def test_test_environments_end_games_as_the_nature_test_does(monkeypatch, num_envs):
    """Training: a lost life is terminal and games stop at --max-frames-per-episode. Testing: only
    game over is terminal, and games stop at 18,000 frames (5 minutes)."""
    from dqnviz import atari
    from dqnviz.atari import resolve_rom

    real, vector_caps = atari._vector_interface(), []

    def recording(**options):
        vector_caps.append(options["max_episode_steps"])  # ale-py counts this cap in frames
        return real(**options)

    monkeypatch.setattr(atari, "_vector_interface", lambda: recording)
    config = TrainConfig(num_envs=num_envs, max_frames_per_episode=50_000)
    caps = []
    for training in (True, False):
        envs = atari.make_envs(resolve_rom("breakout"), config, training=training, seed=0)
        single = getattr(envs, "env", None)  # one environment: an AtariEnv inside a batch of one
        assert (single or envs).life_loss_terminal is training
        caps.append(single.max_frames_per_episode if single else vector_caps[-1])
    assert caps == [50_000, 18_000]


def test_prioritized_replay_beta_anneals_to_one_over_the_run(tmp_path, monkeypatch):
    """β = β₀ + (1 − β₀)·min(1, t / (epochs · train_steps)): 0.4 at the start, 0.7 half-way, then 1."""
    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(length=10))
    config = TrainConfig(replay_size=200, batch_size=4, validation_states=4, seed=0, prioritized=True,
                         priority_beta=0.4, epochs=2, train_steps=50)
    run = quiet_trainer(tmp_path, config)
    run.run_phase(0, "random", 16)
    betas = []
    real = run.replay.sample_batches
    run.replay.sample_batches = lambda batch_size, count, beta: betas.append(beta) or real(batch_size, count, beta)
    for done in (0, 50, 100, 150):
        run._draw(1, train_steps_done=done)
    assert betas == pytest.approx([0.4, 0.7, 1.0, 1.0])
    run.train_steps_done = 25  # without an explicit count: the steps trained so far
    run._draw(1)
    assert betas[-1] == pytest.approx(0.4 + 0.6 * 25 / 100)
