"""ROMs and the emulator: ROM lookup by path or name, Nature preprocessing, vectorised emulators,
and the environments of a training or test phase as one batch (:func:`make_envs`).

The pipeline from the emulator to a state, as in Mnih et al. (2015):

1. Each agent step repeats the action for ``frame_skip`` = 4 emulator frames and sums the reward.
2. The observed frame is the pixel-wise max of the last two greyscale frames (Atari sprites flicker).
3. The screen (210×160 in most games; 214 to 250 rows in a few) is resized to 84×84 by area
   averaging: ``out = round(H · frame · Wᵀ)`` with H (84×210) and W (84×160) the area-overlap
   shares (rows summing to 1; :func:`resize_frame` has the integer form), and where that is within a hair of x.5, OpenCV's float32 arithmetic, which ale-py's
   C++ ``AtariVectorEnv`` uses. This reproduces the vector environment bit for bit, which is what
   lets the single-environment loop and the vectorised loop feed the same network
   (``tests/test_atari.py`` checks it on games with and without such ties).
4. The last ``history`` = 4 frames are stacked, oldest first, into a (84, 84, 4) uint8 state;
   frames from before the game started are zero.
5. Rewards are clipped to [-1, 1] for learning; the raw score is kept for statistics.

A game starts with up to ``noop_max`` = 30 NOOP emulator frames. In training a lost life is a terminal for
the learner (no bootstrapping past it), but the game goes on; in evaluation only game over counts.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dqnviz.config import TEST_MAX_FRAMES, TrainConfig, env_switch
from dqnviz.errors import UserError

SCREEN_SHAPE = (210, 160)
"""The screen of most games, (height, width); a game's own is :attr:`AtariEnv.screen_shape`."""
FRAME_SHAPE = (84, 84)


def _ale():
    import ale_py
    import ale_py.roms  # noqa: F401  (not imported by ale_py itself unless gymnasium is installed)

    return ale_py


def _vector_interface():
    """ale-py's C++ vector interface (behind ``AtariVectorEnv``), which takes a ROM path."""
    ale_py = _ale()
    try:
        return ale_py.ALEVectorInterface  # exported when gymnasium is installed
    except AttributeError:
        from ale_py._ale_py import ALEVectorInterface

        return ALEVectorInterface


@dataclass(frozen=True)
class Rom:
    """A supported Atari ROM: its ale-py name, file path and MD5."""

    name: str
    path: str
    md5: str


def _md5(path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def shipped_roms() -> dict[str, str]:
    """ale-py's bundled ROMs that its emulator can play, as ``{name: path}``.

    ale-py ships a few ROMs it cannot load (0.12 ships combat, joust, maze_craze and warlords,
    and has no settings for them): loading one ends the process from C++, with no exception to
    catch, so they are left out here (:func:`unplayable_roms`)."""
    return {name: path for name, path in _bundled_roms().items() if name not in unplayable_roms()}


@functools.lru_cache(maxsize=1)
def _bundled_roms() -> dict[str, str]:
    roms = _ale().roms
    result = {}
    for name in roms.get_all_rom_ids():
        path = roms.get_rom_path(name)
        if path is not None and os.path.exists(path):
            result[name] = str(path)
    return result


@functools.lru_cache(maxsize=1)
def unplayable_roms() -> frozenset[str]:
    """The bundled ROMs that ale-py's emulator has no settings for (``ALEInterface.isSupportedROM``
    returns None: it checks without loading)."""
    check = _ale().ALEInterface.isSupportedROM
    return frozenset(name for name, path in _bundled_roms().items() if check(path) is None)


def _unplayable(name: str, md5: str) -> UserError:
    import ale_py

    return UserError(f"{name}: ale-py {ale_py.__version__} ships this ROM (MD5 {md5}) but its emulator has no "
                     f"settings for it and cannot play it; `dqnviz games` lists the games it can")


@functools.lru_cache(maxsize=1)
def supported_md5s() -> dict[str, str]:
    """``{md5: name}`` for every game ale-py supports (from its ROM list, or by hashing its ROMs)."""
    roms = _ale().roms
    try:
        expected = roms._get_expected_bin_hashes()  # {name.bin: md5}, where this ale-py has it
        table = {md5: Path(name).stem for name, md5 in expected.items()}
        if table:
            return table
    except Exception:
        pass
    return {_md5(path): name for name, path in _bundled_roms().items()}


# Gymnasium's and Gym's environment ids: ALE/Pong-v5, PongNoFrameskip-v4, BreakoutDeterministic-v4
_ENVIRONMENT_ID = re.compile(r"(?:ALE/)?(?P<game>[A-Za-z0-9]+?)(?:NoFrameskip|Deterministic)?-v\d+")


def game_key(name: str) -> str:
    """ale-py's name for a game as a user may write it: ``Space Invaders``, ``space-invaders``,
    ``SpaceInvaders`` and the environment id ``ALE/SpaceInvaders-v5`` are all ``space_invaders``."""
    name = name.strip()
    environment_id = _ENVIRONMENT_ID.fullmatch(name)
    if environment_id:
        name = environment_id["game"]
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)  # CamelCase words
    return re.sub(r"[\s-]+", "_", name).lower()


def resolve_rom(spec: str | os.PathLike) -> Rom:
    """Find the ROM a user means: a path to a ROM file, or a game name such as ``breakout``.

    A file is identified by its MD5 against the games ale-py supports. A name may use any case,
    spaces, hyphens or CamelCase, or be a Gymnasium environment id (see :func:`game_key`).

    Raises:
        UserError: the file is missing, is no supported ROM, or the name is unknown (with the
            closest names as suggestions).
    """
    text = str(spec)
    looks_like_path = os.path.exists(text) or (not _ENVIRONMENT_ID.fullmatch(text.strip()) and (
        os.sep in text or (os.altsep and os.altsep in text) or text.endswith((".bin", ".a26", ".rom"))))
    if looks_like_path:
        if not os.path.exists(text):
            raise UserError(f"ROM file not found: {text}")
        if os.path.isdir(text):
            raise UserError(f"{text} is a folder, not a ROM file")
        md5 = _md5(text)
        name = supported_md5s().get(md5)
        if name is None:
            raise UserError(
                f"{text} is not a ROM that ale-py supports (MD5 {md5} matches none of its "
                f"{len(shipped_roms())} games)"
            )
        if name in unplayable_roms():
            raise _unplayable(name, md5)
        return Rom(name=name, path=os.path.abspath(text), md5=md5)
    key = game_key(text)
    roms = shipped_roms()
    if key not in roms:  # written without ale-py's underscores: TicTacToe3D, UpNDown
        key = {name.replace("_", ""): name for name in roms}.get(key.replace("_", ""), key)
    if key in unplayable_roms():
        raise _unplayable(key, _md5(_bundled_roms()[key]))
    if key not in roms:
        close = difflib.get_close_matches(key, list(roms), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `dqnviz games` lists them"
        raise UserError(f"unknown game {text!r}{hint}")
    return Rom(name=key, path=roms[key], md5=_md5(roms[key]))


def rom_for_game(name: str, md5: str | None = None) -> Rom:
    """The bundled ROM for a snapshot's game; warns nothing, but checks the MD5 when given."""
    rom = resolve_rom(name)
    if md5 and rom.md5 != md5:
        raise UserError(
            f"this ale-py ships a different {name} ROM (MD5 {rom.md5}) than the snapshot was trained on ({md5})"
        )
    return rom


@functools.lru_cache(maxsize=None)
def _area_weights(n_in: int, n_out: int) -> tuple[np.ndarray, int]:
    """Integer area-overlap weights and their row sum.

    ``W[i, j] / total`` is the share of input pixel j inside output pixel i. Pixel edges sit at
    multiples of ``n_in / n_out``, so the overlaps are exact multiples of ``1 / denominator``.
    """
    from fractions import Fraction

    scale = Fraction(n_in, n_out)
    weights = np.zeros((n_out, n_in), np.int64)
    for i in range(n_out):
        low, high = i * scale, (i + 1) * scale
        for j in range(int(low), min(n_in, -int(-high // 1))):
            overlap = min(high, j + 1) - max(low, j)
            weights[i, j] = int(overlap * scale.denominator)
    return weights, int(scale.numerator)


@functools.lru_cache(maxsize=None)
def _area_blocks(n_in: int, n_out: int) -> tuple[int, np.ndarray, int]:
    """The area weights of one repeating block: ``n_in → n_out`` is ``g`` blocks of
    ``n_in / g → n_out / g`` pixels (g = gcd), each with the same weights.

    Returns:
        ``(g, W, total)``: W is (n_out / g, n_in / g) float32 holding the integer weights of
        :func:`_area_weights` for one block, ``total`` their row sum.
    """
    from math import gcd

    blocks = gcd(n_in, n_out)
    weights, total = _area_weights(n_in // blocks, n_out // blocks)
    return blocks, weights.astype(np.float32), total


def channels_last(frames: np.ndarray) -> np.ndarray:
    """Stacked frames (N, history, H, W), as ale-py's vector interface and the replay memory hold
    them, as states (N, H, W, history), contiguous: ``states[n, y, x, k] = frames[n, k, y, x]``.

    One strided copy per frame index: 3.2 times faster than ``np.ascontiguousarray`` of the
    transposed view, which numpy copies byte by byte (64 states: 0.54 against 1.76 ms on the
    2-core development CPU, ``benchmarks/emulator.py``).
    """
    states = np.empty(frames.shape[:1] + frames.shape[2:] + frames.shape[1:2], np.uint8)
    for k in range(frames.shape[1]):
        states[..., k] = frames[:, k]
    return states


def resize_frame(frame: np.ndarray, shape=FRAME_SHAPE) -> np.ndarray:
    """Area-average an (H, W) uint8 frame to ``shape`` exactly as ale-py's C++ resize (OpenCV's
    ``INTER_AREA``) does.

    out = round(H · frame · Wᵀ / (h · w)), with H and W the integer area weights. Both sides repeat
    in blocks (210 → 84 is 42 blocks of 5 → 2 rows, 160 → 84 four blocks of 40 → 21 columns), so
    each product is one small matrix product per block. The products are sums of integers below
    2²⁴ (255 · 5 · 40 here), exact in float32: their quotient by h · w rounds as the true mean does.
    OpenCV computes the mean in float32 instead, whose rounding error (about 1e-5 of a grey level)
    decides a true tie (x.5) either way: so the pixels within 1/1000 of a grey level of x.5 are
    computed again as OpenCV does (:func:`_opencv_area_at`). In Pong and Breakout none is; in
    Skiing four in ten frames have one. 5 times faster than gathering each output pixel's taps
    (0.05 against 0.26 ms on the 2-core development CPU).
    """
    (height, width), (out_height, out_width) = frame.shape, shape
    row_blocks, rows_w, row_total = _area_blocks(height, out_height)
    col_blocks, cols_w, col_total = _area_blocks(width, out_width)
    dtype = np.float32 if 255 * row_total * col_total < 2**24 else np.float64  # exact sums either way
    pixels = frame.astype(dtype).reshape(row_blocks, height // row_blocks, width)
    rows = np.matmul(rows_w.astype(dtype, copy=False), pixels).reshape(out_height, col_blocks, width // col_blocks)
    sums = np.matmul(rows, cols_w.T.astype(dtype, copy=False)).reshape(out_height, out_width)
    mean = sums / dtype(row_total * col_total)
    out = np.rint(mean)
    near_tie = np.flatnonzero(np.abs(mean - out) > 0.499)  # within 1/1000 of a grey level of x.5
    if near_tie.size:
        out.flat[near_tie] = _opencv_area_at(frame, near_tie, shape)
    return out.astype(np.uint8)


@functools.lru_cache(maxsize=None)
def _opencv_area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's ``computeResizeAreaTab``: each output pixel's source pixels and float32 weights,
    in the order OpenCV adds them, as (n_out, taps) arrays (unused taps: weight 0).

    Output pixel i covers [i·s, (i+1)·s) of the input, s = n_in / n_out; each source pixel it
    overlaps weighs overlap / s (the last cell: / its width inside the frame)."""
    import math

    scale = n_in / n_out
    taps = []
    for i in range(n_out):
        start, end = i * scale, i * scale + scale
        cell = min(scale, n_in - start)
        first, last = math.ceil(start), math.floor(end)
        last = min(last, n_in - 1)
        first = min(first, last)
        pixel_taps = []
        if first - start > 1e-3:
            pixel_taps.append((first - 1, (first - start) / cell))
        pixel_taps += [(j, 1.0 / cell) for j in range(first, last)]
        if end - last > 1e-3:
            pixel_taps.append((last, min(end - last, 1.0, cell) / cell))
        taps.append(pixel_taps)
    index = np.zeros((n_out, max(map(len, taps))), np.intp)
    weight = np.zeros(index.shape, np.float32)
    for i, pixel_taps in enumerate(taps):
        for k, (j, alpha) in enumerate(pixel_taps):
            index[i, k], weight[i, k] = j, np.float32(alpha)
    return index, weight


def _opencv_area_at(frame: np.ndarray, flat_indices: np.ndarray, shape) -> np.ndarray:
    """OpenCV ``INTER_AREA``'s float32 result at some output pixels (flat indices into ``shape``),
    rounded half to even as its ``saturate_cast`` does: per source row, the row's taps weighted and
    added in order (``buf``); then the rows, weighted and added in order. A weight-0 tap adds an
    exact 0, so padding changes nothing."""
    rows, cols = np.unravel_index(flat_indices, shape)
    row_index, row_weight = _opencv_area_taps(frame.shape[0], shape[0])
    col_index, col_weight = _opencv_area_taps(frame.shape[1], shape[1])
    # (pixels, row taps, column taps): every product a float32 multiply, as OpenCV's
    products = frame[row_index[rows][:, :, None], col_index[cols][:, None, :]].astype(np.float32)
    products *= col_weight[cols][:, None, :]
    buf = products[:, :, 0]
    for j in range(1, products.shape[2]):
        buf = buf + products[:, :, j]
    buf *= row_weight[rows]
    total = buf[:, 0]
    for k in range(1, buf.shape[1]):
        total = total + buf[:, k]
    return np.rint(total)


def action_names(actions) -> list[str]:
    """ALE names (NOOP, FIRE, RIGHT, …) for a list of ALE actions or action ids."""
    ale = _ale()
    return [a.name if isinstance(a, ale.Action) else ale.Action(int(a)).name for a in actions]


@dataclass
class Step:
    """What :meth:`AtariEnv.step` returns.

    Attributes:
        state: (84, 84, history) uint8, the state after the step. After a game over it is the
            ended game's last state: an AtariEnv does not restart by itself (call
            :meth:`AtariEnv.reset`); :class:`VectorAtariEnv` and :class:`SingleEnvBatch`
            do, and return the next game's first state instead.
        reward: the raw game score of the step, summed over its frames (clip it for learning).
        terminal: no bootstrapping past this step: game over, the frame cap, or (with
            ``life_loss_terminal``, in training) a lost life.
        game_over: the game ended, or was cut off at ``max_frames_per_episode``.
        lives: lives left after the step (0 in games without lives).
    """

    state: np.ndarray
    reward: float
    terminal: bool
    game_over: bool
    lives: int


class AtariEnv:
    """One emulator with Nature preprocessing: the classic loop, and what ``play``/``record`` watch.

    Args:
        rom: the ROM to play (see :func:`resolve_rom`).
        seed: seeds the emulator and the no-op starts.
        noop_max: at most this many NOOP emulator frames (not agent steps) at the start of a game
            (0 for none).
        life_loss_terminal: report a lost life as ``terminal`` (training) or not (evaluation).
        repeat_action_probability: sticky actions (Machado et al. 2018).
        max_frames_per_episode: emulator frames after which a game is cut off (``game_over``),
            counted from the end of its no-op start, as ale-py's vector environment counts them
            (ALE's own cap would count the no-ops, and the frames some games' reset plays: 134 in
            Name This Game).
        frame_skip, history: see the module docstring.

    Attributes:
        actions, action_names, num_actions: the game's minimal action set (ALE actions, their
            names, how many); :meth:`step` takes an index into it.
        state: the current (84, 84, history) uint8 state (a copy).
        lives, game_over: as the emulator says now (``game_over`` also at the frame cap).
        episode_score, episode_frames: the running game's raw score and emulator frames played
            since its no-op start.
        screen_shape: the emulator's (height, width): (210, 160) in most games, up to (250, 160).

    Raises:
        ValueError: ``frame_skip`` or ``history`` below 1, or ``noop_max`` below 0.
    """

    def __init__(self, rom: Rom, seed: int = 0, noop_max: int = 30, life_loss_terminal: bool = False,
                 repeat_action_probability: float = 0.0, max_frames_per_episode: int = 108_000,
                 frame_skip: int = 4, history: int = 4):
        if int(frame_skip) < 1 or int(history) < 1 or int(noop_max) < 0:
            raise ValueError(f"frame_skip and history must be 1 or more and noop_max 0 or more, got frame_skip "
                             f"{frame_skip}, history {history}, noop_max {noop_max}")
        ale_py = _ale()
        self.rom = rom
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale = ale_py.ALEInterface()
        self.ale.setInt("random_seed", int(seed) % (2**31))
        self.ale.setFloat("repeat_action_probability", float(repeat_action_probability))
        self.ale.setInt("frame_skip", 1)
        self.ale.loadROM(rom.path)
        self.max_frames_per_episode = int(max_frames_per_episode)
        self.actions = list(self.ale.getMinimalActionSet())
        self.action_names = action_names(self.actions)
        self.num_actions = len(self.actions)
        self.noop_max, self.life_loss_terminal = noop_max, life_loss_terminal
        self.frame_skip, self.history = frame_skip, history
        self.rng = np.random.default_rng(seed)
        self._stack = np.zeros(FRAME_SHAPE + (history,), np.uint8)
        self.screen_shape = tuple(int(d) for d in self.ale.getScreenDims())  # (height, width)
        self._buffer = np.zeros((2,) + self.screen_shape, np.uint8)
        self.episode_score = 0.0
        self.episode_frames = 0

    @property
    def state(self) -> np.ndarray:
        return self._stack.copy()

    @property
    def lives(self) -> int:
        return self.ale.lives()

    @property
    def game_over(self) -> bool:
        """The game ended, or was cut off at ``max_frames_per_episode`` frames."""
        return bool(self.ale.game_over()) or self.episode_frames >= self.max_frames_per_episode

    def screen_rgb(self) -> np.ndarray:
        """The full-resolution (height, width, 3) colour screen: (210, 160, 3) in most games."""
        return self.ale.getScreenRGB()

    def _push(self, frame: np.ndarray) -> None:
        """Drop the oldest frame of the state and append ``frame`` (resized) as the newest."""
        resized = resize_frame(frame)
        if self.history == 4 and sys.byteorder == "little":
            # A pixel's 4 frames are the 4 bytes of one uint32, oldest lowest: shifting right by a
            # byte drops the oldest. Ten times faster than the strided copy below.
            packed = self._stack.view(np.uint32)[..., 0]
            packed >>= 8
            packed |= resized.astype(np.uint32) << 24
            return
        self._stack[..., :-1] = self._stack[..., 1:]
        self._stack[..., -1] = resized

    def reset(self) -> np.ndarray:
        """Start a new game with up to ``noop_max`` NOOPs; return its first state."""
        self.ale.reset_game()
        self._stack[:] = 0
        self.episode_score, self.episode_frames = 0.0, 0
        noops = int(self.rng.integers(0, self.noop_max + 1)) if self.noop_max else 0
        for _ in range(noops):
            self.ale.act(self.actions[0])
            if self.ale.game_over():
                self.ale.reset_game()
        self._push(self.ale.getScreenGrayscale())
        return self.state

    def _after_frame(self, k: int, reward: float) -> None:
        """Called after emulator frame ``k`` of a step (``reward`` so far); a hook for viewers."""

    def step(self, action: int) -> Step:
        """Play ``action`` (an index into the minimal action set) for ``frame_skip`` frames."""
        lives_before = self.ale.lives()
        reward = 0.0
        ale_action = self.actions[int(action)]
        for k in range(self.frame_skip):
            reward += self.ale.act(ale_action)
            self.episode_frames += 1
            self._after_frame(k, reward)
            if k >= self.frame_skip - 2:
                self.ale.getScreenGrayscale(self._buffer[k - self.frame_skip + 2])
            if self.game_over:
                # The last two frames may not both exist: pool what there is.
                if k < self.frame_skip - 1:
                    self._buffer[1] = self.ale.getScreenGrayscale()
                    if k < self.frame_skip - 2:
                        self._buffer[0] = self._buffer[1]
                break
        self._push(np.maximum(self._buffer[0], self._buffer[1]))
        self.episode_score += reward
        game_over = self.game_over
        lives = self.ale.lives()
        terminal = game_over or (self.life_loss_terminal and lives < lives_before)
        return Step(self.state, reward, terminal, game_over, lives)


def default_emulator_threads(num_envs: int, cpus: int | None = None) -> int:
    """C++ emulator threads when none are asked for: ``min(num_envs, cpus − ⌊cpus / 4⌋)``.

    A quarter of the cores stays with the training loop, which samples the replay memory and
    launches the learner's kernels while the emulators step. On the H100 host (16 cores, 64
    environments) 12 threads trained at 6,254 agent steps/s against 5,724 with 16
    (benchmarks/results/h100-2026-11-26b/). Up to 3 cores keep all of theirs.
    """
    cpus = cpus or os.cpu_count() or 1
    return max(1, min(num_envs, cpus - cpus // 4))


class VectorAtariEnv:
    """``num_envs`` emulators stepped together in C++ threads (ale-py's ``ALEVectorInterface``).

    Same preprocessing as :class:`AtariEnv`. Games restart by themselves ("same-step" autoreset):
    after a game over the returned state is the next game's first state.

    States are channels last, (num_envs, 84, 84, history), like :class:`AtariEnv`'s, or with
    ``stacks=True`` the frame stacks (num_envs, history, 84, 84) as the emulators write them. The
    trainer takes the stacks: its network transposes them on the device, and the replay memory
    stores ``stacks[:, -1]``, so no state is transposed on the host (1.1 ms an iteration for 128
    environments on the 2-core development machine, :func:`channels_last`).
    """

    def __init__(self, rom: Rom, num_envs: int, seed: int = 0, noop_max: int = 30,
                 life_loss_terminal: bool = False, repeat_action_probability: float = 0.0,
                 max_frames_per_episode: int = 108_000, frame_skip: int = 4, history: int = 4,
                 num_threads: int = 0, stacks: bool = False):
        self.rom = rom
        self.num_envs = num_envs
        self.stacks = stacks
        self.life_loss_terminal = life_loss_terminal
        self.vector = _vector_interface()(
            rom_path=rom.path, num_envs=num_envs, frame_skip=frame_skip, stack_num=history,
            img_height=FRAME_SHAPE[0], img_width=FRAME_SHAPE[1], grayscale=True, maxpool=True,
            # ale-py draws 0 … noop_max − 1 no-ops (0.11 and 0.12); AtariEnv, 0 … noop_max
            noop_max=noop_max + 1, use_fire_reset=False, episodic_life=False, life_loss_info=False,
            reward_clipping=False, max_episode_steps=max_frames_per_episode,
            repeat_action_probability=repeat_action_probability, full_action_space=False,
            batch_size=0, num_threads=num_threads or default_emulator_threads(num_envs),
            thread_affinity_offset=-1, autoreset_mode="SameStep",
        )
        self.actions = list(self.vector.get_action_set())
        self.action_names = action_names(self.actions)
        self.num_actions = len(self.actions)
        self.seed = seed
        self._resets = 0
        self._ones = np.ones(num_envs, np.float32)
        self._lives = np.zeros(num_envs, np.int64)

    def reset(self) -> np.ndarray:
        """Start every game; return the states (see the class docstring for their layout).

        The r-th reset (r = 0, 1, …) seeds emulator i with ``seed + r·num_envs + i``: each reset
        starts other games (other no-op starts), as :class:`AtariEnv`'s generator goes on from one
        game to the next, so that a training run's test phases, which reset their environments, do
        not play the same starts every epoch.
        """
        # the emulators take C ints, as AtariEnv's seed (seeds up to 2³² − 1 are accepted)
        seeds = (np.arange(self.num_envs) + self.seed + self._resets * self.num_envs) % 2**31
        self._resets += 1
        obs, info = self.vector.reset(np.arange(self.num_envs), seeds)
        self._lives = np.asarray(info["lives"]).copy()
        return obs if self.stacks else channels_last(obs)

    def send(self, actions: np.ndarray) -> None:
        """Start stepping all emulators (returns at once, so the learner can work meanwhile)."""
        self.vector.send(np.asarray(actions, dtype=np.int32), self._ones)

    def recv(self):
        """Finish a step: ``(states, rewards, terminals, game_overs, lives)`` as arrays."""
        obs, rewards, terminated, truncated, info = self.vector.recv()
        game_over = np.logical_or(terminated, truncated)
        lives = np.asarray(info["lives"])
        terminal = game_over.copy()
        if self.life_loss_terminal:
            terminal |= lives < self._lives
        self._lives = lives.copy()
        states = obs if self.stacks else channels_last(obs)  # ale-py returns new arrays each step
        return states, np.asarray(rewards, dtype=np.float32), terminal, game_over, lives

    def step(self, actions: np.ndarray):
        self.send(actions)
        return self.recv()


# ----------------------------------------------------------------------------------------------
# One environment as a batch of one, and the environments of a phase

class SingleEnvBatch:
    """One :class:`AtariEnv` behind the same interface as :class:`VectorAtariEnv` (batch of 1),
    ``stacks`` included.

    Games restart by themselves: after a game over, the returned state is the next game's first.
    """

    num_envs = 1

    def __init__(self, env, stacks: bool = False):
        self.env, self.stacks = env, stacks
        self.actions, self.action_names, self.num_actions = env.actions, env.action_names, env.num_actions

    def _batch(self, state: np.ndarray) -> np.ndarray:
        return (np.moveaxis(state, -1, 0) if self.stacks else state)[None]

    def reset(self) -> np.ndarray:
        return self._batch(self.env.reset())

    def send(self, actions) -> None:
        self._actions = actions

    def recv(self):
        return self.step(self._actions)

    def step(self, actions):
        step = self.env.step(int(actions[0]))
        state = self.env.reset() if step.game_over else step.state
        lives = self.env.lives if step.game_over else step.lives  # the next game's, as the vector environment says
        return (self._batch(state), np.array([step.reward], np.float32), np.array([step.terminal]),
                np.array([step.game_over]), np.array([lives]))


def classic_in_threads() -> bool:
    """Whether classic mode (one environment) runs its emulator as ale-py's vector interface does,
    in a C++ thread, so that it steps while the loop launches the learner's updates and writes the
    replay memory (``DQNVIZ_CLASSIC_THREAD=1``; off by default until measured on a GPU). The
    frames, rewards, lives and game ends are those of :class:`~dqnviz.atari.AtariEnv`, bit for
    bit (tests/test_atari.py compares them in 8 games; all 104 agreed over 1,000 steps); the no-op
    starts are drawn over the same range 0 … noop_max by the emulator's own generator, so they
    are other draws."""
    return env_switch("DQNVIZ_CLASSIC_THREAD", False)


def make_envs(rom: Rom, config: TrainConfig, training: bool, seed: int):
    """The environments of one phase kind: training (lost life = terminal) or testing.

    Their states are frame stacks, (num_envs, history, 84, 84): see :class:`VectorAtariEnv`.
    """
    options = dict(
        seed=seed, noop_max=config.noop_max, life_loss_terminal=training,
        repeat_action_probability=config.repeat_action_probability,
        max_frames_per_episode=config.max_frames_per_episode if training else min(config.max_frames_per_episode, TEST_MAX_FRAMES),
        frame_skip=config.frame_skip, history=config.history,
    )
    count = config.num_envs if training else config.test_envs or config.num_envs
    if count == 1 and not classic_in_threads():
        return SingleEnvBatch(AtariEnv(rom, **options), stacks=True)
    if count == 1:  # one emulator in a C++ thread: it steps while the loop launches updates
        return VectorAtariEnv(rom, num_envs=1, num_threads=1, stacks=True, **options)
    return VectorAtariEnv(rom, num_envs=count, num_threads=config.emulator_threads, stacks=True, **options)
