"""The device-resident replay (--device-replay) samples exactly what the host replay samples."""

import functools

import keras
import numpy as np
import pytest
from scipy import stats

from dqnviz.replay import DeviceReplay, ReplayMemory


def fill_both(memories, steps=600, num_envs=2, seed=0):
    rng = np.random.default_rng(seed)
    for t in range(steps):
        # frame value = time step (mod 250) + 1, so a sampled state tells which transition it is
        frames = np.broadcast_to(((t % 250) + 1 + 0 * np.arange(num_envs))[:, None, None], (num_envs, 84, 84)).astype(np.uint8)
        actions = rng.integers(0, 4, num_envs)
        rewards = rng.choice([-1.0, 0.0, 1.0], num_envs)
        terminals = rng.random(num_envs) < 0.05
        starts = rng.random(num_envs) < 0.05
        for memory in memories:
            memory.add(frames, actions, rewards, terminals, starts)


def test_same_seed_gives_identical_batches():
    for prioritized in (False, True):
        host = ReplayMemory(400, num_envs=2, n_step=3, prioritized=prioritized, seed=11)
        device = DeviceReplay(400, num_envs=2, n_step=3, prioritized=prioritized, seed=11)
        fill_both([host, device])
        for _ in range(5):
            a, b = host.sample(32), device.sample(32)
            for key in a:
                np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
            if prioritized:
                td = np.random.default_rng(0).random(32)
                host.update_priorities(a["envs"], a["slots"], td)
                device.update_priorities(b["envs"], b["slots"], td)


def test_device_and_host_sample_the_same_distribution():
    """Independent seeds: a chi-square test cannot tell the two samplers' transitions apart."""
    host = ReplayMemory(400, num_envs=2, seed=1)
    device = DeviceReplay(400, num_envs=2, seed=2)
    fill_both([host, device])
    counts = []
    for memory in (host, device):
        newest = np.concatenate([np.asarray(memory.sample(64)["states"])[:, 0, 0, -1] for _ in range(60)])
        counts.append(np.bincount(newest, minlength=256)[1:251])
    table = np.array(counts)
    table = table[:, table.sum(0) > 0]
    _, p_value, _, _ = stats.chi2_contingency(table)
    assert p_value > 0.001
    # and both are close to uniform over the sampleable transitions
    _, p_uniform = stats.chisquare(table.sum(0))
    assert p_uniform > 0.001


def test_device_frames_match_host_frames_after_wraparound():
    host = ReplayMemory(120, num_envs=2, seed=0)
    device = DeviceReplay(120, num_envs=2, seed=0)
    fill_both([host, device], steps=500)
    np.testing.assert_array_equal(host.frames, device.buffer.to_numpy())
    assert host.nbytes == device.nbytes


def test_training_with_device_replay(tmp_path):
    """Uniform sampling from the device replay in a whole run (test_vectorised.py's device case is a
    prioritized one: the trainer reads losses and writes priorities differently for each)."""
    import csv

    from dqnviz.cli import main
    from dqnviz.snapshot import load_snapshot

    argv = ["train", "pong", "--device-replay", "--num-envs", "2", "--epochs", "1", "--random-steps", "40",
            "--train-steps", "32", "--test-steps", "16", "--replay-size", "200", "--batch-size", "8",
            "--validation-states", "8", "--quiet", "--snapshot-dir", str(tmp_path), "--report-dir", str(tmp_path)]
    assert main(argv) == 0
    with open(tmp_path / "pong.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["phase"] for r in rows] == ["random", "train", "test"]
    # 32 train steps at one update per 4 steps: 8 updates; the replay holds the 40 random and 32 train steps
    assert int(rows[1]["weight_updates"]) == 32 // 4 and int(rows[1]["replay_memory_count"]) == 40 + 32
    assert float(rows[1]["meancost"]) > 0  # the losses were read back from the device
    meta = load_snapshot(tmp_path / "pong_1.keras").meta
    assert meta["config"]["device_replay"] and not meta["config"]["prioritized"] and meta["weight_updates"] == 8


def _twin_learners(prioritized=True):
    from dqnviz.config import TrainConfig
    from dqnviz.learner import Learner

    config = TrainConfig(num_envs=2, seed=5, double=True, dueling=True, n_step=3, prioritized=prioritized)
    return Learner(4, config), Learner(4, config)


@pytest.mark.parametrize("fewer_passes", ["0", pytest.param("1", marks=pytest.mark.skipif(
    keras.config.backend() != "jax", reason="fewer passes are the JAX update's (backend/jax.py)"))])
def test_updates_on_device_frames_equal_updates_on_host_batches(monkeypatch, fewer_passes):
    """One fused call of K updates, states stacked on the device from frames written in that
    same call, makes the same K updates as K ordinary steps on batches stacked on the host;
    under JAX also in fewer, bigger passes (a GPU's default): the K batches' target values in
    one pass, and Double DQN's online passes over s and s' in one."""
    monkeypatch.setenv("DQNVIZ_FEWER_PASSES", "0")  # the reference: a pass per network and batch
    _, stepwise = _twin_learners()
    monkeypatch.setenv("DQNVIZ_FEWER_PASSES", fewer_passes)
    fused, _ = _twin_learners()
    host = ReplayMemory(400, num_envs=2, n_step=3, prioritized=True, seed=3)
    device = DeviceReplay(400, num_envs=2, n_step=3, prioritized=True, seed=3)
    fill_both([host, device], steps=300)
    assert device.buffer.staged_count > 0  # the newest frames are still on the host: the fused call writes them first
    transitions = [device.sample_transitions(16, beta=0.5) for _ in range(3)]
    pending = fused.train_transitions(device, transitions)
    losses, td_abs = [], []
    for t in transitions:
        loss, td = stepwise.train(host.stack_transitions(t))
        losses.append(float(loss))
        td_abs.append(np.asarray(td))
    np.testing.assert_allclose(pending.losses(), losses, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pending.td_abs(), np.stack(td_abs), rtol=1e-4, atol=1e-5)
    assert fused.updates == stepwise.updates == 3
    for a, b in zip(fused.model().get_weights(), stepwise.model().get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(device.buffer.to_numpy(), host.frames)
    # and the updates changed the weights (a call that did nothing would also "match")
    fresh, _ = _twin_learners()
    assert any(not np.allclose(a, b) for a, b in zip(fresh.model().get_weights(), fused.model().get_weights()))


def test_host_replay_updates_through_the_same_call():
    """Without device frames, ``train_transitions`` stacks each batch on the host: same results."""
    host = ReplayMemory(400, num_envs=2, n_step=3, prioritized=True, seed=4)
    fill_both([host], steps=300)
    batched, stepwise = _twin_learners()
    transitions = [host.sample_transitions(16) for _ in range(2)]
    pending = batched.train_transitions(host, transitions)
    expected = [np.asarray(stepwise.train(host.stack_transitions(t))[1]) for t in transitions]
    np.testing.assert_array_equal(pending.td_abs(), np.stack(expected))
    assert pending.losses().shape == (2,)


@pytest.mark.skipif(keras.config.backend() != "jax", reason="the launch thread is the JAX update's (backend/jax.py)")
def test_updates_launched_from_the_worker_thread_equal_updates_launched_in_place(monkeypatch):
    """The loop as the trainer runs it (launch, stage the next frames, read |δ|, act, now and
    then θ⁻ ← θ), with the fused call launched from the worker thread (a GPU's default) and
    in place: the same losses, |δ|, weights and device frames, bit for bit."""
    import threading

    launched_from, results = [], []
    for threaded in ("0", "1"):
        monkeypatch.setenv("DQNVIZ_LAUNCH_THREAD", threaded)
        learner, _ = _twin_learners()
        assert learner.step.threaded is (threaded == "1")
        call = learner.step._train_batches

        def recording(*arguments, call=call):
            launched_from.append((threaded, threading.current_thread() is threading.main_thread()))
            return call(*arguments)

        learner.step._train_batches = recording
        replay = DeviceReplay(400, num_envs=2, n_step=3, prioritized=True, seed=3)
        fill_both([replay], steps=300)
        rng, seen = np.random.default_rng(1), []
        for iteration in range(5):
            pending = learner.train_transitions(replay, replay.sample_batches(16, 2, beta=0.5))
            # while the call is in flight: the next frames are staged, as the loop adds them
            replay.add(rng.integers(0, 256, (2, 84, 84), np.uint8), rng.integers(0, 4, 2), np.ones(2),
                       np.zeros(2, bool), np.zeros(2, bool))
            seen += [pending.losses(), pending.td_abs()]
            replay.update_priorities(np.concatenate([t["envs"] for t in pending.transitions]),
                                     np.concatenate([t["slots"] for t in pending.transitions]), pending.td_abs())
            seen.append(learner.q_values(replay.stack(*replay.sample_indices(4)[:2])))
            if iteration == 2:
                learner.sync_target()
        results.append((seen, learner.model().get_weights(), replay.buffer.to_numpy()))
    assert {entry for entry in launched_from if entry[0] == "0"} == {("0", True)}
    assert {entry for entry in launched_from if entry[0] == "1"} == {("1", False)}
    (seen_in_place, weights_in_place, frames_in_place), (seen_threaded, weights_threaded, frames_threaded) = results
    import jax

    # bit for bit on a CPU; a GPU's reductions may round differently from one run to the next
    same = np.testing.assert_array_equal if jax.default_backend() == "cpu" else functools.partial(
        np.testing.assert_allclose, rtol=1e-4, atol=1e-5)
    for a, b in zip(seen_in_place + weights_in_place, seen_threaded + weights_threaded):
        same(a, b)
    np.testing.assert_array_equal(frames_in_place, frames_threaded)


@pytest.mark.skipif(keras.config.backend() != "jax", reason="the fused call over device frames is the JAX update's")
@pytest.mark.parametrize("num_envs, train_frequency, random_steps, batch_size, threaded", [
    (4, 4, 4 * 23, 4, "0"),  # each iteration updates; the random phase leaves 7 frames staged
    (4, 4, 4 * 32, 4, "0"),  # ... and none (it wrote 16 at a time)
    (4, 4, 4 * 23, 4, "1"),  # ... launched from the worker thread, as on a GPU
    (1, 4, 45, 4, "0"),  # an update every 4 iterations: 4 frames a call
    (2, 4, 2 * 23, 4, "0"),  # every 2
    (3, 4, 3 * 23, 4, "0"),  # every 1 or 2 iterations (3 does not divide 4): 1 or 2 frames, padded to 2
    (1, 4, 3, 8, "0"),  # the first updates wait for the memory to hold a batch: frames pile up meanwhile
])
def test_the_fused_update_is_called_with_one_shape_so_it_compiles_once(tmp_path, monkeypatch, num_envs, train_frequency,
                                                                       random_steps, batch_size, threaded):
    """The fused call writes the frames staged since the last one, and XLA compiles it once per
    count: each count is a compilation of the run's largest call, 30 s or more on a GPU. Whatever
    was staged before (a random phase, updates that waited for a batch), every call takes the
    same count: the frames of the iterations between two updates, ⌈f / n⌉ to a power of two."""
    from dqnviz.config import TrainConfig
    from tests.conftest import quiet_trainer
    from tests.test_trainer import ScriptedEnvs

    monkeypatch.setattr("dqnviz.trainer.make_envs", lambda rom, config, training, seed: ScriptedEnvs(
        lengths=[7 + i for i in range(config.num_envs if training else 1)]))
    monkeypatch.setenv("DQNVIZ_LAUNCH_THREAD", threaded)
    between = -(-train_frequency // num_envs)  # iterations per update (at most)
    steady = 1 << (between - 1).bit_length()  # frames a call takes, to a power of two
    config = TrainConfig(num_envs=num_envs, replay_size=400, batch_size=batch_size, train_frequency=train_frequency,
                         validation_states=4, device_replay=True, seed=0, epochs=2, random_steps=random_steps,
                         train_steps=14 * num_envs * between, test_steps=8)
    run = quiet_trainer(tmp_path, config)
    assert run.learner.step.threaded is (threaded == "1")
    shapes, call = [], run.learner.step._train_batches

    def recording(*arguments):
        shapes.append(tuple(np.shape(arguments[6])))  # the staged frames (num_envs, P, 84, 84)
        return call(*arguments)

    run.learner.step._train_batches = recording
    # validation states already at hand, as a resumed run reads them: none drawn from the memory
    # after the random phase (drawing reads the device buffer, which writes every staged frame first)
    run.validation = np.zeros((4, 84, 84, 4), np.uint8)
    run.train()  # random phase, then two epochs of train and test phases
    assert len(shapes) >= 20 and set(shapes) == {(num_envs, steady, 84, 84)}, sorted(set(shapes))
    assert run.learner.step.call_shapes == {(max(1, num_envs // train_frequency), steady)}  # what --profile counts
    # and every frame reached its slot: slot t holds the newest frame of the state before step t + 1,
    # which ScriptedEnvs fills with t (the first, from reset, with 0)
    written = run.replay.written
    assert written == random_steps // num_envs + 28 * between < run.replay.per_env
    frames = run.replay.buffer.to_numpy()[:, :written]
    expected = np.broadcast_to(np.arange(written, dtype=np.uint8)[None, :, None, None], frames.shape)
    np.testing.assert_array_equal(frames, expected)
