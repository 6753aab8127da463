"""Shared fixtures: tiny snapshots made on the fly (fixed seeds), so no test needs a download."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


def make_snapshot(path, game="breakout", epoch=1, dueling=False, seed=0, test_score=None, scale=None, run=None):
    """Save a randomly initialised Nature-CNN snapshot for ``game`` with full metadata.

    ``scale`` maps layer names to a factor c: that layer's kernel is saved as c·W₀, so it has
    moved ‖W − W₀‖ / ‖W₀‖ = |c − 1| from its start, with cos(W, W₀) = sign(c).
    """
    from dqnviz.atari import AtariEnv, resolve_rom
    from dqnviz.network import build_q_network
    from dqnviz.snapshot import save_snapshot
    from dqnviz.trainer import snapshot_meta
    from dqnviz.config import TrainConfig

    rom = resolve_rom(game)
    env = AtariEnv(rom, seed=seed)
    model = build_q_network(env.num_actions, dueling=dueling, seed=seed)
    for name, factor in (scale or {}).items():
        kernel = model.get_layer(name).kernel
        kernel.assign(kernel.numpy() * factor)
    config = TrainConfig(dueling=dueling, seed=seed)
    meta = snapshot_meta(rom, env, config, run=run or game, epoch=epoch, total_steps=1000 * epoch,
                         test_score=test_score or {"average": 1.5, "std": 0.5, "min": 1.0, "max": 2.0, "episodes": 2})
    save_snapshot(path, model, meta)
    return path


def quiet_trainer(folder, config, game="pong", run="t", log=lambda *_: None, **options):
    """A :class:`~dqnviz.trainer.Trainer` writing into ``folder``, with no progress and no log, ready
    to run phases (its clock started)."""
    from dqnviz.atari import resolve_rom
    from dqnviz.trainer import Trainer

    made = Trainer(resolve_rom(game), config, run=run, snapshot_dir=folder, report_dir=folder,
                   show_progress=False, log=log, **options)
    made.started = 0.0
    return made


@pytest.fixture
def breakout_snapshot(tmp_path):
    return str(make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1))


@pytest.fixture
def pong_snapshot(tmp_path):
    return str(make_snapshot(tmp_path / "pong_2.keras", "pong", 2, seed=1))


def stop_in_phase(monkeypatch, phase: str) -> None:
    """Make the trainer's ``phase`` (random, refill, train or test) raise KeyboardInterrupt as it
    begins, as Ctrl-C there would."""
    from dqnviz import trainer

    original = trainer.Trainer.run_phase

    def stopped(self, epoch, name, steps, progress_label=None):
        if name == phase:
            raise KeyboardInterrupt
        return original(self, epoch, name, steps, progress_label)

    monkeypatch.setattr(trainer.Trainer, "run_phase", stopped)
