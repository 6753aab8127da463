"""Acting with a Q-network: ε-greedy action choice and playing whole games for analysis.

Also the Nature evaluation protocol (:func:`evaluate`, what ``dqnviz test`` runs) and the
environment a snapshot's metadata describes (:func:`env_for_snapshot`).

The agent acts as in the Nature paper: with probability ε a uniformly random action, else
``argmax_a Q(s, a)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dqnviz.atari import AtariEnv, Rom, rom_for_game
from dqnviz.config import TEST_MAX_FRAMES


def draw_exploration(count: int, num_actions: int, epsilon: float, rng: np.random.Generator):
    """The random half of ε-greedy for ``count`` states: ``(explore, random_actions)``.

    ``explore[i]`` is true with probability ε; ``random_actions[i]`` is uniform over the actions.
    Drawing these before the network runs lets a caller skip the forward pass when every state
    explores: with one environment that is a fraction ε of the steps, most of them early in ε's decay.
    """
    explore = rng.random(count) < epsilon
    random_actions = rng.integers(0, num_actions, count)
    return explore, random_actions


def epsilon_greedy_later(q_values_of, count: int, num_actions: int, epsilon: float,
                         rng: np.random.Generator):
    """ε-greedy actions for ``count`` states, in two steps: the exploration draws and
    ``q_values_of()`` now, the actions when the returned function is called. ``q_values_of()`` is
    called only if a state acts greedily: the draws are :func:`epsilon_greedy`'s, so the actions are
    the same; only the forward pass is skipped when every state explores.

    ``q_values_of`` may return before the forward pass ends (a device array that ``np.asarray``
    waits for), so that the caller can launch other work on the device between the two steps.
    """
    explore, random_actions = draw_exploration(count, num_actions, epsilon, rng)
    if explore.all():
        return lambda: random_actions
    q_values = q_values_of()
    return lambda: np.where(explore, random_actions, np.argmax(np.atleast_2d(np.asarray(q_values)), axis=-1))


def epsilon_greedy(q_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """One action per row of ``q_values``: random with probability ε, else argmax_a Q(s, a)."""
    q_values = np.atleast_2d(q_values)
    return epsilon_greedy_later(lambda: q_values, len(q_values), q_values.shape[-1], epsilon, rng)()


class QFunction:
    """A compiled ``states -> Q-values`` wrapper around a Keras model (one trace per batch size)."""

    def __init__(self, model):
        from dqnviz.backend import make_predict

        self.model = model
        self._predict = make_predict(model)

    def __call__(self, states: np.ndarray, weights=None) -> np.ndarray:
        states = np.asarray(states)
        single = states.ndim == 3
        q = self._predict(states[None] if single else states, weights)
        return q[0] if single else q


@dataclass
class GameRecord:
    """States and decisions from played games, in order (T agent steps).

    Attributes:
        states: (T, 84, 84, history) uint8, the state each action was chosen on.
        actions: (T,) int64, indices into the minimal action set.
        q_values: (T, A) float32, the network's Q-values on each state.
        rewards: (T,) float32, raw (unclipped) rewards.
        game_index: (T,) int64, which game (0, 1, …) each step belongs to.
        scores: one per game played: its final score, or its score so far for a game that
            ``max_steps`` cut off.
        action_names: the ALE names of the A actions.
    """

    states: np.ndarray
    actions: np.ndarray
    q_values: np.ndarray
    rewards: np.ndarray
    game_index: np.ndarray
    scores: list = field(default_factory=list)
    action_names: list = field(default_factory=list)

    def __repr__(self) -> str:
        """Shapes and scores, not the arrays: a notebook cell that shows a record shows a line."""
        games = len(self.scores)
        return (f"GameRecord({len(self.states):,} steps of {games} game{'' if games == 1 else 's'}, scores "
                f"{[round(float(x), 2) for x in self.scores[:10]]}{' …' if games > 10 else ''}, states "
                f"{self.states.shape} {self.states.dtype}, actions {list(self.action_names)})")


def env_for_snapshot(meta: dict, seed: int = 0, **overrides) -> AtariEnv:
    """An :class:`AtariEnv` for evaluating a snapshot: its game and stored preprocessing, with the
    Nature test protocol's settings.

    The ROM is ``meta["rom"]["path"]`` where that file exists, else ale-py's bundled ROM for
    ``meta["game"]`` (checked against ``meta["rom_md5"]``). ``frame_skip``, ``history``,
    ``noop_max`` and ``repeat_action_probability`` come from ``meta["preprocessing"]`` (defaults
    4, 4, 30, 0). Games are cut off at :data:`~dqnviz.config.TEST_MAX_FRAMES` (18,000 frames,
    5 minutes) and a lost life is not terminal, whatever the run trained with.

    Args:
        meta: a snapshot's metadata (``Snapshot.meta``).
        seed: seeds the emulator and the no-op starts.
        **overrides: any :class:`AtariEnv` keyword, replacing the values above
            (``max_frames_per_episode=108_000``, …).

    Raises:
        KeyError: ``meta`` names no game.
        ValueError: the ROM's name is not ``meta["game"]``, or a preprocessing field is of the
            wrong kind or out of range.
        UserError: the game is unknown to this ale-py, or its bundled ROM has another MD5.
            (:func:`checked_env_for_snapshot`, which the commands use, makes all of these a
            one-line UserError and checks the network against the game.)
    """
    rom = Rom(**meta["rom"]) if "rom" in meta and _exists(meta["rom"].get("path")) else rom_for_game(meta["game"], meta.get("rom_md5"))
    if rom.name != meta["game"]:  # a hand-edited or mixed-up snapshot: which game would it be?
        raise ValueError(f"it names the game {meta['game']!r} but its ROM is {rom.name!r}")
    from dqnviz.atari import _unplayable, unplayable_roms

    if rom.name in unplayable_roms():  # loading it would end the process from C++
        raise _unplayable(rom.name, rom.md5)
    pre = _checked_preprocessing(meta.get("preprocessing", {}))
    options = dict(
        noop_max=pre.get("noop_max", 30),
        repeat_action_probability=pre.get("repeat_action_probability", 0.0),
        frame_skip=pre.get("frame_skip", 4),
        history=pre.get("history", 4),
        max_frames_per_episode=TEST_MAX_FRAMES,
        life_loss_terminal=False,
    )
    options.update(overrides)
    return AtariEnv(rom, seed=seed, **options)


# What a snapshot's preprocessing may hold: (kind, lowest, highest) per field; the CLI's bounds.
_PREPROCESSING = {"noop_max": ("whole", 0, 108_000), "frame_skip": ("whole", 1, 64), "history": ("whole", 1, 64),
                  "repeat_action_probability": ("number", 0.0, 0.999999)}


def _checked_preprocessing(pre) -> dict:
    """The metadata's ``preprocessing``, its fields checked: a hand-edited ``"four"`` or ``0`` would
    otherwise fail only once the game runs, deep in the emulator's loop.

    Raises:
        ValueError: not a dict, or a field of the wrong kind or out of range, named.
    """
    if not isinstance(pre, dict):
        raise ValueError(f"preprocessing is {type(pre).__name__}, not a dict")
    for key, (kind, lowest, highest) in _PREPROCESSING.items():
        if key not in pre:
            continue
        value = pre[key]
        whole = isinstance(value, int) and not isinstance(value, bool)
        number = whole or (isinstance(value, float) and value == value)
        if not (whole if kind == "whole" else number) or not lowest <= value <= highest:
            what = "a whole number" if kind == "whole" else "a number"
            raise ValueError(f"preprocessing.{key} is {value!r}, not {what} from {lowest:g} to {highest:g}")
    return dict(pre)


def checked_env_for_snapshot(snapshot, seed: int = 0, **overrides) -> AtariEnv:
    """:func:`env_for_snapshot` for a loaded snapshot, after checking that its metadata can build
    the game and that its network takes the game's states and has one output per action: what
    the commands play with, so that a hand-edited or mixed-up snapshot is one line, not a traceback.

    Raises:
        UserError: metadata without a game or with damaged fields, or a network that does not
            fit the game (a hand-edited or mixed-up snapshot), named in one line.
    """
    from dqnviz.errors import UserError

    path, meta = snapshot.path or snapshot.name, snapshot.meta
    if not isinstance(meta, dict) or not meta.get("game"):
        raise UserError(f"{path}: the snapshot's metadata (dqnviz.json) does not name a game; "
                        f"it is damaged or was not written by dqnviz train")
    try:
        env = env_for_snapshot(meta, seed=seed, **overrides)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{path}: the snapshot's metadata (dqnviz.json) is damaged "
                        f"({type(error).__name__}: {str(error)[:120]})") from None
    model = snapshot.model
    outputs = model.output_shape[-1]
    if env.num_actions != outputs:
        raise UserError(f"{path}: the model has {outputs} outputs but {env.rom.name} has {env.num_actions} actions")
    takes = tuple(model.inputs[0].shape[1:])
    made = tuple(env.state.shape)
    if len(takes) != len(made) or any(t is not None and t != m for t, m in zip(takes, made)):
        shown = "×".join("?" if t is None else str(t) for t in takes)
        raise UserError(f"{path}: the model takes {shown} states but the snapshot's preprocessing makes "
                        f"{'×'.join(map(str, made))} (history {env.history})")
    return env


def _exists(path) -> bool:
    import os

    return bool(path) and os.path.exists(path)


class _StateBlocks:
    """The states of a play, kept in uint8 blocks of :attr:`BLOCK` states and joined once at the
    end, a block at a time: at most one block more than the states themselves is held (a list of
    states joined by ``np.asarray`` held them twice, 4.5 GB for 30 games of Pong)."""

    BLOCK = 1024

    def __init__(self):
        self.blocks: list = []
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def append(self, state) -> None:
        at = self.count % self.BLOCK
        if at == 0:
            self.blocks.append(np.empty((self.BLOCK,) + np.shape(state), np.uint8))
        self.blocks[-1][at] = state
        self.count += 1

    def array(self, shape: tuple) -> np.ndarray:
        """All states as one ``(T, *shape)`` array; the blocks are given up as they are copied."""
        out = np.empty((self.count,) + tuple(shape), np.uint8)
        done = 0
        while self.blocks:
            block = self.blocks.pop(0)
            take = min(len(block), self.count - done)
            out[done:done + take] = block[:take]
            done += take
            del block
        return out


def play_games(model, env: AtariEnv, games: int = 1, epsilon: float = 0.05, seed: int = 0,
               max_steps: int | None = None, on_step=None) -> GameRecord:
    """Play ``games`` whole games (or until ``max_steps`` agent steps) and record every state.

    Args:
        model: a Keras Q-network taking ``env``'s uint8 states to (A,) Q-values.
        env: the environment (e.g. :func:`env_for_snapshot`), reset before each game; its own
            seed fixes the emulator and the no-op starts. Games end at game over or its frame cap.
        games: how many games to play.
        epsilon: ε of the ε-greedy policy (0.05 in the Nature evaluation).
        seed: seeds the ε-greedy draws (``np.random.default_rng(seed)``).
        max_steps: stop after this many agent steps in all (None: every game to its end); the
            game then running is cut off, and its score so far still goes into ``scores``.
        on_step: optional ``callback(steps_recorded, score_so_far)``, called after every step.

    Returns:
        A :class:`GameRecord` of the T agent steps played.
    """
    q_function = QFunction(model)
    rng = np.random.default_rng(seed)
    states = _StateBlocks()
    actions, q_all, rewards, game_index, scores = [], [], [], [], []
    for game in range(games):
        state = env.reset()
        while True:
            q = q_function(state)
            action = int(epsilon_greedy(q, epsilon, rng)[0])
            step = env.step(action)
            states.append(state)
            actions.append(action)
            q_all.append(q)
            rewards.append(step.reward)
            game_index.append(game)
            state = step.state
            if on_step:
                on_step(len(states), env.episode_score)
            if step.game_over or (max_steps and len(states) >= max_steps):
                break
        scores.append(env.episode_score)
        if max_steps and len(states) >= max_steps:
            break
    num_actions = env.num_actions
    return GameRecord(
        states=states.array(env.state.shape),
        actions=np.asarray(actions, np.int64),
        q_values=np.asarray(q_all, np.float32).reshape(-1, num_actions),
        rewards=np.asarray(rewards, np.float32),
        game_index=np.asarray(game_index, np.int64),
        scores=scores,
        action_names=list(env.action_names),
    )


def episode_seeds(seed: int, episode: int) -> tuple[int, np.random.Generator]:
    """What makes ``dqnviz test --seed seed``'s game ``episode`` (from 0): the emulator seed
    ``seed + episode`` and the ε stream ``default_rng([seed, episode])``. ``record`` and ``play``
    use it too, so that their game i is test's episode i."""
    return seed + episode, np.random.default_rng([seed, episode])


def evaluate(model, make_env, episodes: int, epsilon: float = 0.05, seed: int = 0, parallel: int = 8,
             progress=None) -> list[dict]:
    """Play ``episodes`` independent games, ``parallel`` at a time, with one batched Q call per step.

    Game ``i`` (counting from 0) runs in its own environment ``make_env(seed + i)`` with its own
    exploration stream ``default_rng([seed, i])``, so the scores depend on the seed but not on
    ``parallel``: batching only saves time (one network call for up to ``parallel`` states).

    Args:
        make_env: ``seed -> AtariEnv`` for one evaluation game.
        progress: optional ``callback(games_done, score)`` called as each game ends.

    Returns:
        ``[{episode, score, frames}]`` in episode order (episodes numbered from 1).
    """
    q_function = QFunction(model)
    results: list[dict | None] = [None] * episodes
    active: list[tuple[int, AtariEnv, np.random.Generator, np.ndarray]] = []
    next_episode, done = 0, 0

    def start(episode):
        emulator_seed, rng = episode_seeds(seed, episode)
        env = make_env(emulator_seed)
        return episode, env, rng, env.reset()

    while next_episode < min(parallel, episodes):
        active.append(start(next_episode))
        next_episode += 1
    while active:
        q_values = q_function(np.stack([state for *_, state in active]))
        still_playing = []
        for (episode, env, rng, _), q in zip(active, q_values):
            step = env.step(int(epsilon_greedy(q, epsilon, rng)[0]))
            if not step.game_over:
                still_playing.append((episode, env, rng, step.state))
                continue
            results[episode] = {"episode": episode + 1, "score": env.episode_score, "frames": env.episode_frames}
            done += 1
            if progress:
                progress(done, env.episode_score)
            if next_episode < episodes:
                still_playing.append(start(next_episode))
                next_episode += 1
        active = still_playing
    return results
