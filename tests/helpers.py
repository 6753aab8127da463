"""Helpers that several test modules share: import them as ``from tests.helpers import ...``.

(pyproject.toml's pytest ``pythonpath`` puts the project root on ``sys.path``, so ``tests``
imports under ``pytest`` and ``python -m pytest`` alike.)
"""

from __future__ import annotations

import numpy as np

from dqnviz.cli import main as run_cli  # the real command line: parser, UserError → exit 2

__all__ = ["TINY", "make_history_snapshot", "random_batch", "run_cli"]

# A tiny `dqnviz train` run: a few dozen agent steps per phase, a small replay memory and batch,
# and every game cut at 400 emulator frames (100 agent steps). A test phase plays its games to
# their end, and an untrained agent's Pong game lasts 800–1,000 agent steps: without the cut, the
# test phases were nine tenths of a tiny run's steps.
TINY = ["--random-steps", "64", "--train-steps", "48", "--test-steps", "40", "--replay-size", "500",
        "--batch-size", "8", "--target-steps", "20", "--validation-states", "16", "--quiet",
        "--max-frames-per-episode", "400"]


def random_batch(rng, size=8, actions=3):
    """A replay batch of random 84×84×4 states as the learner takes it (uniform weights, γ = 0.99)."""
    return {
        "states": rng.integers(0, 255, (size, 84, 84, 4), dtype=np.uint8),
        "actions": rng.integers(0, actions, size).astype(np.int32),
        "returns": rng.normal(size=size).astype(np.float32),
        "discounts": np.full(size, 0.99, np.float32),
        "next_states": rng.integers(0, 255, (size, 84, 84, 4), dtype=np.uint8),
        "weights": np.ones(size, np.float32),
    }


def make_history_snapshot(path, history, game="pong", epoch=1, seed=0):
    """A randomly initialised snapshot whose states stack ``history`` frames (``dqnviz train
    --history N --frame-skip 1``), saved with dqnviz's own network builder and snapshot writer."""
    from dqnviz.atari import AtariEnv, resolve_rom
    from dqnviz.config import TrainConfig
    from dqnviz.network import build_q_network
    from dqnviz.snapshot import save_snapshot
    from dqnviz.resume import snapshot_meta

    rom = resolve_rom(game)
    env = AtariEnv(rom, seed=seed, history=history, frame_skip=1)
    config = TrainConfig(history=history, frame_skip=1, seed=seed)
    model = build_q_network(env.num_actions, history=history, seed=seed)
    save_snapshot(path, model, snapshot_meta(rom, env, config, run=game, epoch=epoch, total_steps=1000 * epoch))
    return str(path)


def interrupt_on_update(monkeypatch, update: int):
    """Make the trainer's ``update``-th start of updates raise KeyboardInterrupt (Ctrl-C mid-phase);
    returns the original method, to put back with ``monkeypatch.setattr``."""
    from dqnviz import trainer

    original, calls = trainer.Trainer._start_updates, [0]

    def interrupting(self, stats, transitions):
        calls[0] += 1
        if calls[0] == update:
            raise KeyboardInterrupt
        return original(self, stats, transitions)

    monkeypatch.setattr(trainer.Trainer, "_start_updates", interrupting)
    return original
