"""The epoch loop's bookkeeping, on a scripted environment (no emulator)."""

import numpy as np

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

    def counting_q_values(states, stacks=False):
        calls.append(len(states))
        return real_q_values(states, stacks=stacks)

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
