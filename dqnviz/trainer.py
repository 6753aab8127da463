"""The epoch loop: random, train and test phases; statistics; snapshots."""

from __future__ import annotations

import datetime

from dqnviz.atari import Rom
from dqnviz.config import TrainConfig


def snapshot_meta(rom: Rom, env, config: TrainConfig, run: str, epoch: int, total_steps: int,
                  test_score: dict | None = None, **extra) -> dict:
    """The metadata stored with each snapshot."""
    import keras

    from dqnviz import __version__

    return {
        "game": rom.name,
        "rom_md5": rom.md5,
        "rom": {"name": rom.name, "path": rom.path, "md5": rom.md5},
        "actions": [int(getattr(a, "value", a)) for a in env.actions],
        "action_names": list(env.action_names),
        "preprocessing": {
            "frame_shape": [84, 84], "grayscale": True, "resize": "area",
            "frame_skip": config.frame_skip, "max_pool_last_two": True, "history": config.history,
            "noop_max": config.noop_max, "repeat_action_probability": config.repeat_action_probability,
            "reward_clip": [-1.0, 1.0], "life_loss_terminal_in_training": True,
            "max_frames_per_episode": config.max_frames_per_episode,
        },
        "run": run,
        "epoch": int(epoch),
        "total_steps": int(total_steps),
        "config": config.to_dict(),
        "backend": keras.config.backend(),
        "keras_version": keras.__version__,
        "dqnviz_version": __version__,
        "test_score": test_score,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
