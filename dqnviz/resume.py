"""A run's record in its snapshots, and the checks that a resume goes on with the same run.

Each snapshot carries :func:`snapshot_meta`: the game and ROM, the preprocessing, the options, the
run's name and epoch, the versions that made it. ``dqnviz train --resume`` reads it back: the
network it loads into must have the same weight shapes (:func:`check_same_network`), a run that
goes on under its own name the same task (:func:`check_same_task`), and an epoch whose test phase
is still owed records the replay memory's count that its snapshot was saved with
(:func:`replay_count_at`).
"""

from __future__ import annotations

import datetime

import keras

from dqnviz.atari import Rom
from dqnviz.config import RMSPROP_EPSILON_UNITS, TrainConfig
from dqnviz.errors import UserError
from dqnviz.progress import plural
from dqnviz.statistics import is_digits


def snapshot_meta(rom: Rom, env, config: TrainConfig, run: str, epoch: int, total_steps: int,
                  test_score: dict | None = None, **extra) -> dict:
    """The metadata stored with each snapshot."""
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
        "initialisation": "independent",  # build_q_network's; a resumed older run passes "shared"
        "rmsprop_epsilon_units": RMSPROP_EPSILON_UNITS,  # what config.rmsprop_epsilon means (config.stored_config)
        **extra,
    }


def network_options(snapshot) -> dict:
    """The options that shaped a snapshot's network, read from its weights: ``history`` (the
    input's channels) and ``dueling`` (whether it has the dueling head's ``value`` stream)."""
    return {"history": snapshot.history, "dueling": any(layer.name == "value" for layer in snapshot.model.layers)}


def check_same_network(snapshot, config: TrainConfig, num_actions: int | None = None) -> None:
    """Refuse to resume ``snapshot`` with options that change its network's weight shapes.

    The resumed weights are loaded into networks built from ``config``: the target network is
    ``build_q_network(num_actions, dueling, history)``, and the first copy θ⁻ ← θ fails if any
    kernel's shape differs. The snapshot's own model is the reference (older snapshots may lack
    a stored config): ``history`` is its input's channels, ``dueling`` whether it has the
    dueling head's ``value`` stream, the action count its outputs. Other options (learning
    rate, ε, epochs, …) change no shape and may change on a resume.

    Raises:
        UserError: one line naming the option, its value in the snapshot and the value asked for.
    """
    dueling = network_options(snapshot)["dueling"]
    if bool(config.dueling) != dueling:
        raise UserError(f"--dueling cannot change on --resume: the snapshot was trained "
                        f"{'with' if dueling else 'without'} it (its weights have "
                        f"{'a' if dueling else 'no'} dueling head)")
    if int(config.history) != snapshot.history:
        raise UserError(f"--history {config.history} cannot change on --resume: the snapshot was trained with "
                        f"--history {snapshot.history} (its first layer takes {snapshot.history} frames)")
    outputs = int(snapshot.model.output_shape[-1])
    if num_actions is not None and outputs != int(num_actions):
        raise UserError(f"the snapshot's network has {outputs} {plural('output', outputs)}, but this game's "
                        f"minimal action set has {num_actions} {plural('action', num_actions)}: "
                        f"resume it with the ROM it was trained on")


# What a run's environments are: each changes what its phases' rows measure (the agent's step,
# how a game starts, the emulator's dynamics, where a game is cut off), so the run's CSV would mix
# two tasks. The snapshot records them under "preprocessing" (and "config").
TASK_OPTIONS = {
    "frame_skip": "--frame-skip", "noop_max": "--noop-max",
    "repeat_action_probability": "--repeat-action-probability", "max_frames_per_episode": "--max-frames-per-episode",
}


def trained_task(meta: dict) -> dict:
    """The :data:`TASK_OPTIONS` a snapshot's run was trained with, from its metadata: those it
    records as numbers (an older or hand-edited snapshot may lack some)."""
    recorded = {}
    for source in (meta.get("config"), meta.get("preprocessing")):  # preprocessing's, if both
        if isinstance(source, dict):
            recorded.update({name: source[name] for name in TASK_OPTIONS if name in source
                             and isinstance(source[name], (int, float)) and not isinstance(source[name], bool)})
    return recorded


def check_same_task(meta: dict, config: TrainConfig) -> None:
    """Refuse to go on with a run (appending to its CSV) with another task than it was trained on:
    a changed --frame-skip, --noop-max, --repeat-action-probability or --max-frames-per-episode.
    A resume given a new --name is a new run, with a CSV of its own, and may change them.

    Raises:
        UserError: one line naming the option, its value in the snapshot and the value asked for.
    """
    for name, value in trained_task(meta).items():
        asked = getattr(config, name)
        if float(asked) != float(value):
            flag = TASK_OPTIONS[name]
            raise UserError(f"{flag} {asked:g} cannot change on --resume: the run was trained with {flag} {value:g}, "
                            f"and its statistics would mix the two; to train on from this snapshot with {flag} "
                            f"{asked:g}, start a new run with --name")


def replay_count_at(meta: dict, rows, epoch: int) -> int | None:
    """The replay memory's count when a snapshot with ``meta`` was saved after ``epoch``'s train
    phase: from its metadata, or for a snapshot older than that field from the train row in the
    run's statistics ``rows``; None if neither says."""
    count = meta.get("replay_memory_count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    trained = next((row for row in reversed(rows or []) if (row.get("epoch"), row.get("phase")) == (str(epoch), "train")),
                   {})
    count = str(trained.get("replay_memory_count", ""))
    return int(count) if is_digits(count) else None
