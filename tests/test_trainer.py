"""The epoch loop's bookkeeping, on a scripted environment (no emulator)."""

import numpy as np

from dqnviz import trainer
from dqnviz.atari import resolve_rom
from dqnviz.config import TrainConfig


class ScriptedEnvs:
    """Every step scores 1; a game lasts ``length`` steps. Same interface as VectorAtariEnv."""

    num_envs, num_actions = 1, 4
    actions, action_names = [0, 1, 3, 4], ["NOOP", "FIRE", "RIGHT", "LEFT"]

    def __init__(self, length):
        self.length, self.t = length, 0

    def reset(self):
        self.t = 0
        return np.zeros((1, 84, 84, 4), np.uint8)

    def send(self, actions):
        pass

    def recv(self):
        self.t += 1
        over = self.t % self.length == 0
        state = np.full((1, 84, 84, 4), self.t % 250, np.uint8)
        return state, np.ones(1, np.float32), np.array([over]), np.array([over]), np.array([0])


def test_a_game_that_straddles_phases_is_counted_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(length=10))
    config = TrainConfig(replay_size=200, batch_size=4, validation_states=4, seed=0)
    run = trainer.Trainer(resolve_rom("pong"), config, run="t", snapshot_dir=tmp_path, report_dir=tmp_path,
                          show_progress=False, log=lambda *_: None)
    run.started = 0.0
    random_phase = run.run_phase(0, "random", 6)  # the first game is 6 steps in
    train_phase = run.run_phase(1, "train", 10)  # it ends 4 steps later; the next one is 6 steps in
    assert random_phase.game_scores == [] and random_phase.partial_score == 6.0
    assert train_phase.game_scores == [10.0]
    assert train_phase.partial_score == 6.0
    assert train_phase.updates == 10 // config.train_frequency


def test_a_test_phase_reports_the_games_it_cut_off(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "make_envs", lambda rom, config, training, seed: ScriptedEnvs(length=10))
    config = TrainConfig(replay_size=200, batch_size=4, validation_states=4, seed=0)
    lines = []
    run = trainer.Trainer(resolve_rom("pong"), config, run="t", snapshot_dir=tmp_path, report_dir=tmp_path,
                          show_progress=False, log=lines.append)
    run.started = 0.0
    run.run_phase(0, "random", 8)
    cut = run.run_phase(1, "test", 25)  # two whole games, the third is 5 steps in
    assert cut.game_scores == [10.0, 10.0] and cut.unfinished == 1
    run.write_row(cut, 0.0)
    assert "2 games (1 unfinished, not counted)" in lines[-1]
    whole = run.run_phase(2, "test", 20)  # ends exactly with the second game
    assert whole.game_scores == [10.0, 10.0] and whole.unfinished == 0
    run.write_row(whole, 0.0)
    assert "2 games, average" in lines[-1]
