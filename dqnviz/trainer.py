"""The epoch loop: random, train and test phases; statistics; snapshots.

It drives the data flow: environments → replay memory → learner, then the snapshots and the
statistics CSV that ``dqnviz plot`` reads. It also holds the one-environment batch
(:class:`SingleEnvBatch`, :func:`make_envs`) and the resume checks.

    epoch 0      random phase: ε = 1 for ``random_steps``, filling the replay memory
    epoch 1 … E  train phase: ε-greedy with ε from :func:`~dqnviz.config.epsilon_schedule`, one
                 batch update every ``train_frequency`` agent steps, θ⁻ ← θ every
                 ``target_steps``; then snapshot ``<run>_<epoch>.keras``; then a test phase with
                 ε = ``test_epsilon`` in separate environments where a lost life is not terminal:
                 ``test_steps`` agent steps, after which the games still running play to their
                 end, so that every game started is counted whole, long ones as well as short

Every phase appends one row to ``reports/<run>.csv`` (simple_dqn's columns). With several
environments, actions are sent to ale-py's C++ threads before the learner update and the results
received after it, so emulation and learning overlap.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import errno
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from dqnviz import backend
from dqnviz.agent import epsilon_greedy_lazy
from dqnviz.atari import FRAME_SHAPE, AtariEnv, Rom, VectorAtariEnv
from dqnviz.config import RMSPROP_EPSILON_UNITS, TEST_MAX_FRAMES, TrainConfig, env_switch, epsilon_schedule
from dqnviz.errors import UserError
from dqnviz.learner import Learner
from dqnviz.outputs import cannot_write, try_flock
from dqnviz.progress import Progress, plural, say
from dqnviz.replay import DeviceReplay, ReplayMemory, check_fits_in_memory
from dqnviz.snapshot import (kernel_movement, layer_kernels, load_optimizer_state, load_validation_states,
                             save_optimizer_state, save_snapshot, save_validation_states, starting_point)
from dqnviz.snapshot_checks import interrupted_sitting
from dqnviz.statistics import CSV_COLUMNS, has_row, is_digits, malformed_row_message, read_statistics
from dqnviz.stopping import deferred_interrupts, stop_requests_accepted
from dqnviz.units import format_bytes



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


# ----------------------------------------------------------------------------------------------
# Environments as one batch

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


def _replay_count_at(meta: dict, rows, epoch: int) -> int | None:
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


def passes_multiple(done: int, step: int, period: int) -> bool:
    """Whether a count going from ``done − step`` to ``done`` passes a multiple of ``period``:
    ⌊done / period⌋ > ⌊(done − step) / period⌋. The training loop's clock: updates every
    ``train_frequency`` agent steps and target copies every ``target_steps``, counted over the
    whole run, whatever the environments' count and the phases' lengths."""
    return done // period > (done - step) // period


# ----------------------------------------------------------------------------------------------
# Statistics

_BINARY = getattr(os, "O_BINARY", 0)  # Windows: bytes as written, no \n → \r\n (rows end in \r\n already)

@dataclass
class PhaseStats:
    """What one phase measured; becomes one CSV row."""

    epoch: int
    phase: str
    steps: int = 0
    game_scores: list = field(default_factory=list)
    partial_score: float = 0.0
    epsilon: float = 1.0
    costs: list = field(default_factory=list)
    updates: int = 0
    seconds: float = 0.0
    # what an interrupted sitting of this phase measured (see :meth:`carried`), counted in the row
    steps_before: int = 0
    cost_sum_before: float = 0.0
    costs_before: int = 0
    earlier_added: bool = False

    @property
    def average_reward(self) -> float:
        scores = self.game_scores or [self.partial_score]
        return float(np.mean(scores))

    def carried(self) -> dict:
        """The figures an ``_interrupted`` snapshot keeps, so that the resumed phase's one CSV row
        counts the whole phase: steps, ended games, seconds, updates and the losses read."""
        return {"steps_done": self.steps, "seconds": round(self.seconds, 3),
                "game_scores": [float(s) for s in self.game_scores], "updates": self.updates,
                "cost_sum": float(np.sum(self.costs)) + self.cost_sum_before,
                "cost_count": len(self.costs) + self.costs_before}

    def add_earlier(self, carried: dict | None) -> None:
        """Count an interrupted sitting's :meth:`carried` figures in this phase's. A snapshot
        written before those were kept (only ``steps_done``) adds nothing: its steps without
        their seconds would overstate the rate."""
        if not carried or "seconds" not in carried or self.earlier_added:
            return
        self.earlier_added = True
        self.steps_before = int(carried["steps_done"])
        self.steps += self.steps_before
        self.seconds += float(carried["seconds"])
        self.game_scores[:0] = [float(s) for s in carried.get("game_scores", [])]
        self.updates += int(carried.get("updates", 0))
        self.cost_sum_before = float(carried.get("cost_sum", 0.0))
        self.costs_before = int(carried.get("cost_count", 0))

    @property
    def meancost(self) -> float:
        """The mean of the losses read: those of every 16th iteration's updates (every update's when
        prioritized or profiling)."""
        count = len(self.costs) + self.costs_before
        return (float(np.sum(self.costs)) + self.cost_sum_before) / count if count else 0.0

    def row(self, total_train_steps, replay_count, meanq, weight_updates, total_time, epoch_time) -> dict:
        """The CSV row; ``meanq`` None (no validation states) is an empty cell, not a made-up 0."""
        scores = self.game_scores or [self.partial_score]
        return {
            "epoch": self.epoch, "phase": self.phase, "steps": self.steps, "nr_games": len(self.game_scores),
            "average_reward": round(self.average_reward, 4), "min_game_reward": float(np.min(scores)),
            "max_game_reward": float(np.max(scores)), "last_exploration_rate": round(self.epsilon, 6),
            "total_train_steps": total_train_steps, "replay_memory_count": replay_count,
            "meanq": "" if meanq is None else round(float(meanq), 6), "meancost": round(self.meancost, 6),
            "weight_updates": weight_updates, "total_time": round(total_time, 2),
            "epoch_time": round(epoch_time, 2), "steps_per_second": round(self.steps / max(self.seconds, 1e-9), 2),
        }


class RunTaken(UserError):
    """The run's statistics CSV is another's: it exists though a new run was to create it
    (``busy`` False), or another process holds it open to write (``busy`` True)."""

    def __init__(self, path: Path, busy: bool = False):
        self.path, self.busy = Path(path), busy
        super().__init__(f"{path} is in use by another dqnviz train running now" if busy else f"{path} exists")


class StatisticsCSV:
    """``reports/<run>.csv``: one row per phase, appended and synced at once (never rewritten).

    Each row (and the header) goes to the file in one ``os.write``; if that fails (a full disk, a
    file-size limit) the file is cut back to its size before, so that it only ever holds whole
    lines, and the failure is a one-line :class:`UserError`.

    Args:
        path: the file.
        new: a new run's CSV, which must not exist yet: it is created with ``O_EXCL``, the run's
            claim on its name, atomic against another ``dqnviz train`` choosing the same name at
            the same moment (:class:`RunTaken`). Otherwise (a resumed run) an existing file is
            appended to, after its header is checked and a last line without its newline (a row
            half written when a run stopped) is dropped, saying so; a missing one is created.
        lock: hold an exclusive ``flock`` on the file until :meth:`close` (or the process's end,
            however it ends: a killed run leaves no stale lock), so that a second run writing
            the same CSV at the same time is refused (:class:`RunTaken` with ``busy``).
        log: where the line on a dropped partial row goes.
    """

    def __init__(self, path: Path, new: bool = False, lock: bool = False, log=say):
        self.path = Path(path)
        self._fd = None
        self._created = False  # by this run (a resumed run appends to its own)
        self.rows_appended = 0
        self._size_before_last = 0  # the file's size before the last write (see withdraw_last_row)
        self.dropped = None  # the partial last line dropped on opening, if any
        # the folders made for the file, outermost first: removed with it by discard_if_unused
        self._made_folders = [folder for folder in reversed(self.path.parents) if not folder.exists()]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise cannot_write(self.path, error) from None
        if new or not self.path.exists():
            try:  # created now, so that the run's name is taken while its first phase runs
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | _BINARY, 0o666)
                self._created = True
            except FileExistsError:
                if new:
                    raise RunTaken(self.path) from None
            except OSError as error:
                raise cannot_write(self.path, error) from None
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | _BINARY)
            except OSError as error:
                raise cannot_write(self.path, error) from None
        try:
            # without flock (Windows) a new run's claim is its CSV's O_EXCL creation alone
            if lock and try_flock(self._fd) is False:
                raise RunTaken(self.path, busy=True)
            if not self._created:
                self._open_existing(log)
            if os.fstat(self._fd).st_size == 0:
                self._write(_csv_line(CSV_COLUMNS))
        except BaseException:
            self.close()
            if self._created:
                self._remove()
            raise

    def _open_existing(self, log) -> None:
        """Check the header of the file being appended to, and drop a partial last line."""
        with open(self.path, "rb") as f:
            data = f.read()
        if not data:
            self._created = True  # an empty file: as good as new (its header is written now)
            return
        first = data.splitlines()[0] if data.splitlines() else b""
        try:
            header = next(csv.reader([first.decode("utf-8")]), [])
        except (UnicodeDecodeError, csv.Error):
            header = None
        if header != CSV_COLUMNS:
            raise UserError(f"{self.path} exists but is not a dqnviz statistics file; use --report-dir or --name")
        if message := malformed_row_message(self.path, data):
            raise UserError(message)
        if not data.endswith((b"\n", b"\r")):
            keep = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
            self.dropped = data[keep:]
            try:
                os.ftruncate(self._fd, keep)
            except OSError as error:
                raise cannot_write(self.path, error) from None
            shown = self.dropped.decode("utf-8", "replace")
            shown = shown if len(shown) <= 40 else shown[:37] + "…"
            log(f"{self.path}: dropped its last line, a row cut short when an earlier sitting stopped "
                f"({shown!r}, no newline)" if keep else
                f"{self.path}: its header lacked its newline: written again")

    def _write(self, data: bytes) -> None:
        """Append ``data`` whole or not at all: on any failure the file is cut back to its size before."""
        if self._fd is None:
            raise UserError(f"cannot write {self.path}: the statistics file was closed")
        size = os.fstat(self._fd).st_size
        self._size_before_last = size
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                if written <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
            os.fsync(self._fd)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)
            raise cannot_write(self.path, error) from None

    def append(self, row: dict) -> None:
        buffer = io.StringIO()
        csv.DictWriter(buffer, CSV_COLUMNS).writerow(row)
        self._write(buffer.getvalue().encode("utf-8"))
        self.rows_appended += 1

    def withdraw_last_row(self) -> None:
        """Cut off the row this run appended last (its epoch's snapshot could not be saved), so that
        the file ends with the last saved epoch's rows. Cutting a file short needs no free space."""
        if self._fd is None or not self.rows_appended:
            return
        try:
            os.ftruncate(self._fd, self._size_before_last)
            os.fsync(self._fd)
        except OSError as error:
            raise cannot_write(self.path, error) from None
        self.rows_appended -= 1

    def close(self) -> None:
        """Close the file (and so release its lock); appending after this is an error."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self):
        self.close()

    def discard_if_unused(self) -> bool:
        """Remove the file if this run created it and wrote no row (stopped in its first phase; True),
        so that a header alone neither takes the run's name nor reads as an empty run."""
        if self._created and not self.rows_appended:
            self._remove()
            return True
        return False

    def _remove(self) -> None:
        """Delete the file, and the folders made for it if they are empty."""
        self.close()
        self.path.unlink(missing_ok=True)
        for folder in reversed(self._made_folders):
            try:
                folder.rmdir()
            except OSError:  # not empty: another file went there meanwhile
                break


def _csv_line(values) -> bytes:
    """One CSV line as ``csv.writer`` writes it (``\\r\\n``-terminated), in UTF-8."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode("utf-8")


# ----------------------------------------------------------------------------------------------
# The epoch loop


def classic_in_threads() -> bool:
    """Whether classic mode (one environment) runs its emulator as ale-py's vector interface does,
    in a C++ thread, so that it steps while the loop launches the learner's updates and writes the
    replay memory (``DQNVIZ_CLASSIC_THREAD=1``; off by default until measured on a GPU). The
    frames, rewards, lives and game ends are those of :class:`~dqnviz.atari.AtariEnv`, bit for
    bit (tests/test_atari.py compares them in 8 games; all 104 agreed over 1,000 steps); the no-op
    starts are drawn over the same range 0 … noop_max by the emulator's own generator, so they
    are other draws."""
    return env_switch("DQNVIZ_CLASSIC_THREAD", False)


def sample_ahead() -> bool:
    """Whether the loop draws the next iteration's batches while the device runs this one's
    updates, off the loop's path (``DQNVIZ_SAMPLE_AHEAD=0`` draws them at each iteration's start,
    for an A/B).

    Uniform replay then draws exactly the batches it would have drawn next: from the same memory
    (the new transitions are stored first), with its own generator. Prioritized replay draws them
    before this iteration's |δ| reach the sum tree, so a priority lags by up to two iterations'
    updates instead of one.
    """
    return env_switch("DQNVIZ_SAMPLE_AHEAD", True)


def sidecar_path(folder, run: str, kind: str) -> Path:
    """``<folder>/<run>.<kind>.npz``: what a run keeps beside its snapshots for ``--resume``
    (``optimizer``: the newest snapshot's optimizer state; ``validation``: meanq's fixed states)."""
    return Path(folder) / f"{run}.{kind}.npz"


class Timer:
    """Seconds spent per part of the loop: ``with timer("learn"): …``; free when disabled.

    Args:
        enabled: measure at all.
        wait_for_device: wait for each iteration's updates where they are dispatched, so that
            their device time lands in ``learn`` (a serial profile: what each part costs, with
            the overlap of learning and emulation given up). Without it the loop keeps its
            overlap, and each part's time is where the host spends or waits: ``emulate`` is
            sending actions plus waiting for the emulators, ``learn`` dispatching the updates plus
            waiting for their results (an overlapped profile: where the loop is held up).
    """

    def __init__(self, enabled: bool = False, wait_for_device: bool = True):
        self.enabled = enabled
        self.wait_for_device = enabled and wait_for_device
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def _measure(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def __call__(self, name):
        return self._measure(name) if self.enabled else contextlib.nullcontext()

    def summary(self, seconds: float, iterations: int) -> str:
        """One line: milliseconds per iteration in each part, largest first, ``other`` being
        ``seconds`` less the parts (the loop's own bookkeeping)."""
        parts = {**self.seconds, "other": max(0.0, seconds - sum(self.seconds.values()))}
        per = {name: 1e3 * value / max(1, iterations) for name, value in parts.items()}
        return ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(per.items(), key=lambda kv: -kv[1])) + \
            f" ms; {1e3 * seconds / max(1, iterations):.2f} ms per iteration"


def sitting_seed(seed: int, steps_played: int) -> int:
    """The seed of a sitting of a run: ``seed`` for its first, and for a resumed one a number drawn
    from (``seed``, the agent steps played before it), below 2³¹ − 10,000 (the emulators take 31
    bits, and the test environments add 10,000)."""
    if not steps_played:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(steps_played)]).generate_state(1)[0]) % (2**31 - 10_000)


class Interrupted(Exception):
    """Training stopped by Ctrl-C; carries the path of the snapshot saved on the way out (or the
    one to resume from), and a ``note`` on what a resume will do first."""

    def __init__(self, snapshot_path, note: str = "", saved: bool = True):
        super().__init__(str(snapshot_path))
        self.snapshot_path = snapshot_path
        self.note = note
        self.saved = saved  # False: nothing new was written, snapshot_path is the one resumed from


class Trainer:
    """Runs epochs: epoch 0 is random play, each later epoch is train → snapshot → test.

    Args:
        rom: the game.
        config: hyper-parameters.
        run: the run's name; files are ``snapshots/<run>_<epoch>.keras`` and ``reports/<run>.csv``.
        snapshot_dir, report_dir: where they go.
        resume: a loaded snapshot to continue from (epoch numbering and step counts continue).
        statistics: with ``resume``, the rows of the run's CSV as its caller read them
            (:func:`dqnviz.statistics.read_statistics`), so that the file is read once; None: read here.
        statistics_csv: the run's :class:`StatisticsCSV`, already opened (``dqnviz train`` claims
            it before any work); None: opened here, at ``report_dir/<run>.csv``.
        show_progress: progress bars / lines on stderr.
        log: where one-line phase summaries go (``print`` by default).
        profile: time each part of a step (act, emulate, replay, sample, learn) in ``self.timer``:
            ``True`` or ``"serial"`` waits for every update to finish, so that its device time is
            counted in ``learn`` (slightly slower); ``"overlapped"`` leaves the loop as it runs
            unprofiled and measures where it waits (see :class:`Timer`).
    """

    def __init__(self, rom: Rom, config: TrainConfig, run: str, snapshot_dir="snapshots",
                 report_dir="reports", resume=None, show_progress: bool = True, log=say,
                 profile: bool | str = False, statistics=None, statistics_csv: "StatisticsCSV | None" = None):
        if profile not in (False, True, "serial", "overlapped"):
            raise ValueError(f"profile must be False, True, 'serial' or 'overlapped', not {profile!r}")
        self.rom, self.config, self.run = rom, config, run
        self.snapshot_dir, self.report_dir = Path(snapshot_dir), Path(report_dir)
        self.show_progress, self.log = show_progress, log
        # A resumed sitting draws its own games and exploration: seeded by --seed and the agent
        # steps already played, so that a run stopped and resumed many times does not replay its
        # first sitting's games each time (a fresh run: --seed itself)
        played = int(resume.meta.get("total_steps", 0)) if resume is not None else 0
        self.sitting_seed = sitting_seed(config.seed, played)
        self.rng = np.random.default_rng(self.sitting_seed)
        # --device-replay keeps the frames in the accelerator's memory, which on a CPU is the host's
        frames_on_host = not config.device_replay or not backend.has_accelerator()
        check_fits_in_memory(config.replay_size, prioritized=config.prioritized,
                             frame_shape=(84, 84) if frames_on_host else (0,))
        self.train_env = make_envs(rom, config, training=True, seed=self.sitting_seed)
        self.test_env = None
        self.num_actions = self.train_env.num_actions
        if resume is not None:  # before a network is built: a shape change would fail at θ⁻ ← θ
            check_same_network(resume, config, self.num_actions)
        keras.utils.set_random_seed(config.seed)
        try:
            self.replay = (DeviceReplay if config.device_replay else ReplayMemory)(
                config.replay_size, num_envs=config.num_envs, history=config.history, n_step=config.n_step,
                gamma=config.gamma, prioritized=config.prioritized, alpha=config.priority_alpha, seed=self.sitting_seed,
            )
        except Exception as error:  # the accelerator's allocator says so in its own words
            if "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower():
                raise UserError(
                    f"--replay-size {config.replay_size:,} does not fit in the accelerator's memory "
                    f"({format_bytes(config.replay_size * 7056)} of frames); use a smaller --replay-size"
                ) from None
            raise
        self.learner = Learner(self.num_actions, config, model=resume.model if resume else None)
        # The weights the run started from (W₀), so that each snapshot records how far its layers
        # moved: readable under any backend, where a rebuild from the seed is exact only under
        # the backend that drew W₀. A run resumed under another backend cannot rebuild them.
        # ``init_seed`` is the seed that drew W₀, carried unchanged through every resume: a
        # resumed run may play with another --seed (config.seed), which drew no weight.
        if resume is None:
            self.initialised_under, self.init_seed = keras.config.backend(), config.seed
            self.initialisation = "independent"  # build_q_network's default, as Learner built it
            self.initial_kernels = layer_kernels(self.learner.model())
        else:
            start = starting_point(resume, measure=False)
            self.initialised_under, self.init_seed, self.initial_kernels = start.backend, start.seed, start.initial
            self.initialisation = start.initialisation
        # the CSV the command line claimed for the run (see StatisticsCSV's new and lock), or opened here
        self.csv = statistics_csv if statistics_csv is not None else StatisticsCSV(self.report_dir / f"{run}.csv", log=log)
        meta = resume.meta if resume else {}
        self.learner.updates = int(meta.get("weight_updates", 0))  # the CSV's count goes on across a resume
        self.total_steps = int(meta.get("total_steps", 0))  # agent steps, all phases but test
        self.train_steps_done = int(meta.get("train_steps_done", 0))  # drives ε
        self.start_epoch = int(meta.get("epoch", -1)) + 1 if resume else 0
        self.resume_partial = interrupted_sitting(meta) if resume else None
        # an _interrupted snapshot's epoch: the one this sitting goes on with, from it
        self._partial_epoch = int(meta["epoch"]) if self.resume_partial else None
        self.phase_stats: PhaseStats | None = None  # the phase running or last run
        self._train_row_of = None  # an epoch whose train row is written and whose snapshot is not yet saved
        self._snapshot_written = None  # the last snapshot save() wrote
        if self.resume_partial:
            self.start_epoch = int(meta["epoch"])
        # A run stopped in an epoch's test phase left that epoch's snapshot without a test score
        # (saved before the test; saved again with the score after it): a resume plays that test first.
        self.untested_epoch, self.untested_replay_count = None, None
        if (resume and not self.resume_partial and "train_steps_done" in meta and int(meta.get("epoch", 0)) >= 1
                and meta.get("test_score") is None):
            epoch = int(meta["epoch"])
            rows = statistics if statistics is not None else read_statistics(self.csv.path)
            if not has_row(rows, epoch, "test"):
                self.untested_epoch = epoch
                # what that test's row records (as every test row does) for the replay memory,
                # which is refilled only after it: the count of the train phase it tests
                self.untested_replay_count = _replay_count_at(meta, rows, epoch)
        self.resume_path = getattr(resume, "path", None)
        self.total_time_before = float(meta.get("total_time", 0.0))
        self.validation = None
        self._validation_file = None  # where self.validation was read from or last written to
        self.states = None
        self.starts = None
        self.running_scores = None
        self.test_scores: dict[int, dict] = {}  # epoch -> its test phase's score, this invocation's epochs
        self.timer = Timer(enabled=bool(profile), wait_for_device=profile != "overlapped")
        self.sample_ahead = sample_ahead()
        if resume is not None:
            self._restore_optimizer(resume)
            self._restore_validation_states(resume)

    @staticmethod
    def _beside(resume, kind: str) -> Path:
        """A resumed run's ``<run>.<kind>.npz``, in its snapshot's folder."""
        return sidecar_path(Path(resume.path or ".").parent, resume.meta.get("run") or resume.meta.get("game"), kind)

    def _restore_optimizer(self, resume) -> None:
        """Continue with the optimizer state saved beside the snapshot, if it belongs to it."""
        path = self._beside(resume, "optimizer")
        state = load_optimizer_state(path, self.train_steps_done)  # None if absent or not this snapshot's
        if state is not None:
            try:
                self.learner.restore_optimizer_state(state)
                self.log(f"optimizer state restored from {path}")
                return
            except ValueError:  # saved by another optimizer or network shape
                stored = (resume.meta.get("config") or {}).get("optimizer")
                other = f" (saved by --optimizer {stored})" if stored and stored != self.config.optimizer else ""
                self.log(f"the optimizer state in {path} does not fit this run's optimizer{other}: "
                         f"--optimizer {self.config.optimizer} starts afresh")
                return
        self.log(f"no optimizer state for this snapshot in {path}: the optimizer starts afresh")

    def _restore_validation_states(self, resume) -> None:
        """Measure meanq on the states the run drew in its epoch 0, saved beside its snapshots."""
        path = self._beside(resume, "validation")
        states = load_validation_states(path, FRAME_SHAPE + (self.config.history,))
        if states is not None:
            self.validation, self._validation_file = states, path
            self.log(f"meanq's {len(states):,} validation states restored from {path}")
        else:
            self.log(f"no validation states in {path}: meanq is measured on new ones, drawn from the "
                     f"refilled replay memory, so its curve may step at epoch {self.start_epoch}")

    # -- acting --------------------------------------------------------------------------------

    def epsilon(self) -> float:
        return epsilon_schedule(self.train_steps_done, self.config)

    def _choose(self, states, epsilon):
        """ε-greedy actions; the network runs only when at least one state acts greedily."""
        if epsilon >= 1.0:
            return self.rng.integers(0, self.num_actions, len(states))
        return epsilon_greedy_lazy(lambda: self.learner.q_values(states, stacks=True), len(states), self.num_actions,
                                   epsilon, self.rng)

    def run_phase(self, epoch: int, phase: str, steps: int, progress_label: str | None = None) -> PhaseStats:
        """Play ``steps`` agent steps: ``random`` (ε=1, fill replay), ``train`` (learn), ``test`` (ε=0.05)."""
        config = self.config
        testing = phase == "test"
        # the phase's ε, also for a phase of no step (its row then shows the ε it would have used)
        stats = PhaseStats(epoch=epoch, phase=phase, epsilon=1.0 if phase == "random" else
                           config.test_epsilon if testing else self.epsilon())
        self.phase_stats = stats  # what an interrupted train phase's snapshot keeps
        if testing:
            if self.test_env is None:
                self.test_env = make_envs(self.rom, config, training=False, seed=self.sitting_seed + 10_000)
            env, states = self.test_env, self.test_env.reset()
        else:
            env = self.train_env
            if self.states is None:
                self.states, self.starts = env.reset(), np.ones(env.num_envs, bool)
            states = self.states
        n = env.num_envs
        # A game in the training environments can straddle phases: keep its running score, so
        # that a game is counted whole in the phase where it ends.
        scores = np.zeros(n) if testing or self.running_scores is None else self.running_scores
        learn = phase == "train"
        updates_per_iteration = max(1, n // config.train_frequency)
        start = time.perf_counter()
        label = progress_label or f"epoch {epoch} {phase}"
        timer = self.timer
        timer.seconds.clear()  # each phase's profile is its own
        # A stop signal is raised only at the top of an iteration, where states, scores, the
        # replay memory and the step counts agree (see dqnviz.stopping).
        def updates_due(done: int) -> bool:
            """Whether the iteration that brings the run's train steps to ``done`` makes updates:
            one that passes a multiple of the train frequency f (with n ≥ f environments, every
            iteration), once the memory can fill a batch. Counted over the whole run, as DeepMind's
            ``numSteps % update_freq``, so that a phase or a resumed sitting whose length f does not
            divide loses no update: after D train steps the run has made ⌊D / f⌋ sets of updates."""
            return passes_multiple(done, n, config.train_frequency) and self.replay.num_sampleable() >= config.batch_size

        with Progress(label, total=steps, enabled=self.show_progress) as progress, deferred_interrupts() as stop:
            iteration = 0
            drawn_ahead = None  # the next iteration's batches, drawn while the device works
            last_game_overs = np.zeros(n, bool)
            counted = np.ones(n, bool)  # environments whose current game counts in this phase
            try:
                while True:
                    stop.check()
                    if stats.steps >= steps:
                        if not testing:
                            break
                        # A test phase's budget is spent: the games still running play to their
                        # end (at most 18,000 frames), and no new game counts. Cutting them off
                        # would count only the games short enough to end in time.
                        counted &= ~last_game_overs
                        if not counted.any():
                            break
                    epsilon = 1.0 if phase == "random" else config.test_epsilon if testing else self.epsilon()
                    with timer("act"):
                        actions = self._choose(states, epsilon)
                    with timer("emulate"):
                        env.send(actions)  # the emulators run in C++ threads while we learn
                    iteration += 1
                    pending = None
                    if learn:
                        self.train_steps_done += n
                        if drawn_ahead is not None or updates_due(self.train_steps_done):
                            transitions = self._draw(updates_per_iteration) if drawn_ahead is None else drawn_ahead
                            pending = self._start_updates(stats, transitions)
                            drawn_ahead = None
                        # the target network is copied each time the run's train steps pass a
                        # multiple of --target-steps: every target_steps on average, also with n
                        # environments that do not divide it, and on across a resume
                        if passes_multiple(self.train_steps_done, n, config.target_steps):
                            self.learner.sync_target()
                    with timer("emulate"):
                        next_states, rewards, terminals, game_overs, _ = env.recv()
                    last_game_overs = np.asarray(game_overs, bool)
                    if not testing:
                        with timer("replay"):
                            self.replay.add(states[:, -1], actions, np.clip(rewards, -1.0, 1.0), terminals, self.starts)
                        self.starts = game_overs
                        self.total_steps += n
                    if pending is not None:
                        # While the device finishes these updates, draw the next iteration's
                        # batches: from the memory as the next iteration would see it, unless
                        # prioritized, where these updates' priorities are not written yet.
                        if self.sample_ahead and stats.steps + n < steps and updates_due(self.train_steps_done + n):
                            drawn_ahead = self._draw(updates_per_iteration, self.train_steps_done + n)
                        self._finish_updates(pending, stats)
                    scores += rewards
                    for i in np.flatnonzero(game_overs & counted):
                        stats.game_scores.append(float(scores[i]))
                        scores[i] = 0.0
                    states = next_states
                    stats.steps += int(np.count_nonzero(counted))
                    stats.epsilon = epsilon
                    if iteration % 50 == 0 or stats.steps >= steps:
                        average = np.mean(stats.game_scores[-20:]) if stats.game_scores else float(scores.mean())
                        fields = {"ε": epsilon, "average reward": float(average)}
                        if stats.steps >= steps and testing:
                            fields["games to finish"] = int(np.count_nonzero(counted & ~last_game_overs))
                        progress.update(stats.steps, **fields)
            finally:
                if not testing:
                    self.states, self.running_scores = states, scores
                stats.partial_score = float(scores.mean())
                stats.seconds = time.perf_counter() - start
        return stats

    def _draw(self, count: int, train_steps_done: int | None = None) -> list[dict]:
        """Sample ``count`` batches for the updates made when ``train_steps_done`` agent steps have
        been trained (now by default): prioritized replay's β anneals from ``priority_beta`` to 1
        over the run, β = β₀ + (1 − β₀) · min(1, train_steps_done / (epochs · train_steps))."""
        config = self.config
        done = self.train_steps_done if train_steps_done is None else train_steps_done
        fraction = min(1.0, done / max(1, config.epochs * config.train_steps))
        beta = config.priority_beta + (1.0 - config.priority_beta) * fraction
        with self.timer("sample"):
            return self.replay.sample_batches(config.batch_size, count, beta=beta)

    def _start_updates(self, stats: PhaseStats, transitions: list[dict]):
        """Dispatch one update per batch of ``transitions``; the device works while we emulate.

        The batches are drawn before any of their priorities changes, and those of the next
        iteration while these updates run (see :func:`sample_ahead`).
        """
        with self.timer("learn"):
            pending = self.learner.train_transitions(self.replay, transitions)
            stats.updates += len(transitions)
            if self.timer.wait_for_device:  # a serial profile: the device's time lands here
                pending.losses()
        return pending

    def _finish_updates(self, pending, stats: PhaseStats) -> None:
        """Read what the updates returned: |δ| for the priorities, and now and then the loss."""
        config, timer = self.config, self.timer
        # Reading a result waits for the device; do it rarely unless priorities need |δ| anyway.
        calls = stats.updates // len(pending.transitions)
        with timer("learn"):
            if config.prioritized or timer.wait_for_device or calls % 16 == 1:
                # the losses come with |δ|, in one device→host copy: td_abs() below reads no more
                stats.costs.extend(pending.losses().tolist())
        if config.prioritized:
            with timer("replay"):  # one sum-tree update for all the batches
                self.replay.update_priorities(
                    np.concatenate([t["envs"] for t in pending.transitions]),
                    np.concatenate([t["slots"] for t in pending.transitions]), pending.td_abs(),
                )

    # -- statistics and snapshots -------------------------------------------------------------

    def meanq(self) -> float | None:
        """Mean over the fixed validation states of max_a Q(s, a); None when there are none (the
        random phase stored no state that can be sampled), rather than a 0 that reads as a value."""
        if self.validation is None or len(self.validation) == 0:
            return None
        q = np.concatenate([self.learner.q_values(chunk) for chunk in np.array_split(
            self.validation, max(1, len(self.validation) // 256))])
        return float(q.max(axis=1).mean())

    def _keep_validation_states(self) -> None:
        """Draw meanq's fixed states once from the replay memory (epoch 0's random play), and keep
        them beside the snapshots (``<run>.validation.npz``) for a resumed run to measure on."""
        if self.validation is None and self.replay.num_sampleable() > 0:
            count = min(self.config.validation_states, self.replay.num_sampleable())
            if count < self.config.validation_states:
                self.log(f"meanq is measured on {count:,} validation states, fewer than --validation-states "
                         f"{self.config.validation_states:,}: the random phase stored no more")
            envs, slots, _ = self.replay.sample_indices(count)
            self.validation = np.asarray(self.replay.stack(envs, slots))
        if self.validation is None:  # once per invocation: this runs after epoch 0 or the refill only
            steps = self.replay_fill_steps()
            self.log(f"warning: no validation states: the {steps:,} {plural('step', steps)} played before training "
                     f"(--random-steps {self.config.random_steps:,}) left no state in the replay memory that can be "
                     f"sampled, so meanq is not measured (an empty cell in the CSV); give more --random-steps")
        if self.validation is not None and self._validation_file != self.validation_path():
            self._validation_file = save_validation_states(self.validation_path(), self.validation)

    def snapshot_path(self, epoch: int, suffix: str = "") -> Path:
        return self.snapshot_dir / f"{self.run}_{epoch}{suffix}.keras"

    def validation_path(self) -> Path:
        """The fixed states meanq averages over, written once per run."""
        return sidecar_path(self.snapshot_dir, self.run, "validation")

    def optimizer_path(self) -> Path:
        """The newest snapshot's optimizer state, for ``--resume`` (one file per run, overwritten)."""
        return sidecar_path(self.snapshot_dir, self.run, "optimizer")

    def save(self, epoch: int, test_score=None, suffix: str = "", **extra) -> Path:
        """Write the snapshot and then, beside it, the optimizer state a resumed run continues from
        (in that order: an optimizer state is never newer than the newest snapshot)."""
        env = self.train_env
        meta = snapshot_meta(
            self.rom, env, self.config, run=self.run, epoch=epoch, total_steps=self.total_steps,
            test_score=test_score, train_steps_done=self.train_steps_done, weight_updates=self.learner.updates,
            total_time=self.total_time_before + time.perf_counter() - self.started,
            initialised_under=self.initialised_under, init_seed=self.init_seed,
            initialisation=self.initialisation, **{"replay_memory_count": len(self.replay), **extra},
        )
        model = self.learner.model()
        if self.initial_kernels is not None:
            meta["movement"] = kernel_movement(layer_kernels(model), self.initial_kernels)
        path = save_snapshot(self.snapshot_path(epoch, suffix), model, meta)
        self._snapshot_written = path
        if test_score is None:  # the second save of an epoch (with its test score) trains nothing new
            save_optimizer_state(self.optimizer_path(), self.learner.optimizer_state(), self.train_steps_done)
        return path

    def _save_trained_epoch(self, epoch: int) -> Path:
        """Save epoch ``epoch``'s snapshot and optimizer state, its train row already in the CSV.
        If either cannot be written (a full disk), take back what this epoch wrote (the row, and the
        snapshot if the optimizer state failed after it), so that the run's CSV ends with its last
        saved epoch and resuming that epoch's snapshot goes on as the same run, not a new one.

        Raises:
            UserError: the file that could not be written, and how to go on.
        """
        path = self.snapshot_path(epoch)
        existed = path.exists()
        try:
            return self.save(epoch)
        except (UserError, OSError) as error:
            if not existed:
                with contextlib.suppress(OSError):
                    path.unlink()
            self.csv.withdraw_last_row()
            self._train_row_of = None
            if epoch == self._partial_epoch:  # this sitting went on from the epoch's _interrupted snapshot
                latest = self.resume_path
            else:
                latest = self.snapshot_path(epoch - 1)
                latest = latest if epoch > 1 and latest.exists() else self.resume_path
            how = (f"continue with: dqnviz train --resume {latest}" if latest else
                   f"start the run again (its name stays taken by {self.csv.path}, which holds only epoch 0: "
                   f"delete it or give --name)")
            reason = str(error) if isinstance(error, UserError) else str(cannot_write(path, error))
            raise UserError(f"{reason}; epoch {epoch}'s training is not kept (its row is taken back from "
                            f"{self.csv.path.name}): make room, then {how}") from None

    def _remove_superseded(self, epoch: int) -> None:
        """Remove this run's ``<run>_<epoch>_interrupted`` snapshot, now that the whole epoch's
        snapshot is saved beside it with its test score (whichever sitting finished the epoch): it
        was the run's stopping point, spent, and ``dqnviz test snapshots/<run>_*.keras`` would test
        it as one more epoch. A run resumed under another name has its own names, so another run's
        file is never touched."""
        interrupted = self.snapshot_path(epoch, "_interrupted")
        with contextlib.suppress(OSError):
            interrupted.unlink()
            self.log(f"removed {interrupted}: {self.snapshot_path(epoch).name}, the whole epoch, supersedes it")

    def write_row(self, stats: PhaseStats, epoch_started: float, replay_count: int | None = None) -> dict:
        """Append ``stats``' row to the CSV and log it; ``replay_count``: the replay memory's count
        to record (None: its count now)."""
        now = time.perf_counter()
        row = stats.row(
            total_train_steps=self.train_steps_done, replay_count=len(self.replay) if replay_count is None else replay_count,
            meanq=self.meanq(),
            weight_updates=self.learner.updates, total_time=self.total_time_before + now - self.started,
            epoch_time=now - epoch_started,
        )
        self.csv.append(row)
        if stats.phase == "train":  # in the CSV now, its snapshot not yet saved (see train)
            self._train_row_of = stats.epoch
        if row["nr_games"]:
            games = (f"{row['nr_games']} {plural('game', row['nr_games'])}, average {row['average_reward']:.2f} "
                     f"(min {row['min_game_reward']:g}, max {row['max_game_reward']:g})")
        else:  # the CSV then holds the running games' mean score so far, as simple_dqn's did
            games = f"no game ended (score so far {row['average_reward']:.2f} on average)"
        meanq = "–" if row["meanq"] == "" else f"{row['meanq']:.3f}"
        before = (f" ({stats.steps_before:,} of them before the interruption)"
                  if stats.earlier_added else "")
        self.log(f"epoch {row['epoch']} {row['phase']}: {row['steps']:,} steps{before}, {games}, "
                 f"meanq {meanq}, {row['steps_per_second']:,.0f} steps/s")
        if stats.phase == "train" and stats.steps and not stats.updates:
            sampleable = self.replay.num_sampleable()
            if sampleable < self.config.batch_size:
                why = (f"the replay memory held {sampleable:,} transitions that can be sampled, fewer than "
                       f"--batch-size {self.config.batch_size:,}")
            else:  # one update per train_frequency agent steps, and the phase had fewer
                why = (f"--train-frequency {self.config.train_frequency:,} asks for one update per "
                       f"{self.config.train_frequency:,} agent steps, and the phase played {stats.steps:,}")
            self.log(f"  warning: no update was made: {why}")
        return row

    def replay_fill_steps(self) -> int:
        """Agent steps of random play before the first train phase: epoch 0's ``random_steps``, or
        after a resume as many as the replay memory holds, at most."""
        return self.config.random_steps if self.start_epoch == 0 else min(self.config.random_steps, self.replay.capacity)

    def _check_diverged(self, row: dict) -> None:
        """Stop the run if its network diverged in the train phase whose CSV ``row`` was just
        written: its meancost or meanq, or a weight, is not finite (NaN or ±inf). The row stays
        (it shows the NaN); no snapshot or optimizer state is written, so the last good epoch's
        stay the newest. The weights are checked as well, since the loss is read only at every
        16th update and meanq only where there are validation states: on the device (see
        :meth:`Learner.weights_finite`), and only when the row's figures are finite.

        Raises:
            UserError: one line naming the epoch and suggesting a lower learning rate.
        """
        bad = [f"{column} {row[column]}" for column in ("meancost", "meanq")
               if row[column] != "" and not np.isfinite(row[column])]
        if not bad and self.learner.weights_finite():
            return
        raise UserError(f"the network diverged at epoch {row['epoch']} ({', '.join(bad) or 'weights not finite'}): "
                        f"no snapshot saved; try a lower --learning-rate than {self.config.learning_rate:g}")

    def _test_again(self, epoch: int) -> None:
        """Play epoch ``epoch``'s test phase, which the last sitting stopped in, write its row and
        save the epoch's snapshot again with its score (its weights are those being resumed)."""
        self.log(f"epoch {epoch}'s test phase was cut short when the run stopped: playing it again")
        started = time.perf_counter()
        test = self.run_phase(epoch, "test", self.config.test_steps)
        count = self.untested_replay_count  # not the empty memory this test was replayed with
        self.write_row(test, started, replay_count=count)
        self.test_scores[epoch] = _test_score(test)
        extra = {} if count is None else {"replay_memory_count": count}
        self.save(epoch, test_score=self.test_scores[epoch], **extra)
        self._remove_superseded(epoch)

    def discard_if_unused(self) -> None:
        """A fresh run that ends before its first row leaves no file: its CSV (see
        :meth:`StatisticsCSV.discard_if_unused`) and the validation states saved for it go."""
        if self.csv.discard_if_unused() and self.start_epoch == 0 and self._validation_file is not None:
            with contextlib.suppress(OSError):
                Path(self._validation_file).unlink()

    def _fill_replay(self) -> None:
        """After a resume the replay memory is empty: refill it with the current policy, no learning.
        The CSV gets a ``refill`` row, so that the statistics say where a later sitting took over
        (``dqnviz plot`` marks it: curves may step there)."""
        started = time.perf_counter()
        steps = self.replay_fill_steps()
        stats = self.run_phase(self.start_epoch, "refill", steps, progress_label="refilling replay memory")
        self._keep_validation_states()
        self.write_row(stats, started)

    def train(self) -> None:
        """Run epochs ``start_epoch … config.epochs``; Ctrl-C saves a snapshot and raises
        :class:`Interrupted`, as does output that cannot be written (:func:`dqnviz.progress.say`)."""
        with stop_requests_accepted():
            self._train()

    def _train(self) -> None:
        config = self.config
        self.started = time.perf_counter()
        epoch = self.start_epoch
        phase = "random"
        earlier = None
        try:
            if epoch == 0:
                epoch_started = time.perf_counter()
                stats = self.run_phase(0, "random", config.random_steps)
                self._keep_validation_states()
                self.write_row(stats, epoch_started)
                epoch = 1
            else:
                if self.untested_epoch is not None:
                    phase = "retest"
                    self._test_again(self.untested_epoch)
                phase = "refill"
                self._fill_replay()
            while epoch <= config.epochs:
                epoch_started = time.perf_counter()
                phase = "train"
                earlier = self.resume_partial  # an interrupted sitting of this phase, counted in its row
                already_done = int(earlier.get("steps_done", 0)) if earlier else 0
                self.resume_partial = None
                self._train_phase_start = self.train_steps_done - already_done
                steps = max(0, config.train_steps - already_done)
                if not steps:
                    # An interrupted epoch resumed with --train-steps at or below the steps it had
                    # played: its training is complete. It plays no step, and its row says so
                    # (0 steps, no update); the row is still written, since a later --resume finds
                    # the run's CSV by the epoch's train row.
                    self.log(f"epoch {epoch} train: {already_done:,} {plural('step', already_done)} were played before "
                             f"the interruption, --train-steps {config.train_steps:,} asks for no more: "
                             f"none is played, and the epoch goes on to its snapshot and test phase")
                stats = self.run_phase(epoch, "train", steps)
                stats.add_earlier(earlier)
                # From the epoch's train row to its saved snapshot the epoch is trained but not yet
                # kept: a stop signal there waits for the save, then stops as one in the test
                # phase does (an _interrupted snapshot beside a train row would split the run)
                snapshot_existed = self.snapshot_path(epoch).exists()
                with deferred_interrupts() as stop:
                    self._check_diverged(self.write_row(stats, epoch_started))  # sets _train_row_of
                    if self.timer.enabled:
                        iterations = -(-stats.steps // self.train_env.num_envs)
                        self.log(f"  where the loop waited per iteration of {self.train_env.num_envs} agent steps: "
                                 + self.timer.summary(stats.seconds, iterations))
                    # Saved before the test phase, so a crash or Ctrl-C there loses no training;
                    # saved again (atomically, same name) once the epoch's test score is known.
                    path = self._save_trained_epoch(epoch)
                    self._train_row_of = None
                    phase = "test"
                    stop.check()
                test = self.run_phase(epoch, "test", config.test_steps)
                # the test row, the snapshot with its score and the spent _interrupted snapshot's
                # removal go together: a stop there waits for them, and the epoch is whole
                with deferred_interrupts() as stop:
                    self.write_row(test, epoch_started)
                    phase = "tested"
                    self.test_scores[epoch] = _test_score(test)
                    try:
                        self.save(epoch, test_score=self.test_scores[epoch])
                    except UserError as error:
                        raise UserError(f"{error}; {path.name}, saved before the test phase, is kept without its "
                                        f"test score (the test's row is in {self.csv.path.name}): a resume goes on "
                                        f"from it") from None
                    self.log(f"saved {path}")
                    self._remove_superseded(epoch)
                    stopped, stop.requested = stop.requested, False
                if stopped and epoch < config.epochs:  # the epoch is whole: its snapshot is where the run goes on
                    raise Interrupted(path, note=f"it stopped after epoch {epoch}'s test phase")
                epoch += 1
        except KeyboardInterrupt:
            if phase == "tested":  # a second stop while the tested epoch was saved: its first save stands
                raise Interrupted(self.snapshot_path(epoch), note=f"epoch {epoch}'s test row is written") from None
            if phase == "test":
                # the epoch's training is complete and its snapshot saved; its test is played again on resume
                raise Interrupted(self.snapshot_path(epoch), note=f"epoch {epoch}'s test phase was cut short: "
                                  "a resume plays it again first") from None
            if phase == "retest":
                raise Interrupted(self.resume_path, note=f"epoch {self.untested_epoch}'s test phase was cut short "
                                  "again: a resume plays it again first", saved=False) from None
            if phase in ("random", "refill") or epoch == 0:
                self.discard_if_unused()
                if phase == "refill" and self.untested_epoch is not None:  # its test was replayed and saved first
                    raise Interrupted(self.snapshot_path(self.untested_epoch),
                                      note="it stopped while refilling the replay memory") from None
                if phase == "refill" and self.resume_path:  # nothing new since the snapshot resumed from
                    raise Interrupted(self.resume_path, saved=False,
                                      note="it stopped while refilling the replay memory") from None
                raise Interrupted(None) from None
            if self._train_row_of == epoch:
                # stopped twice, between the epoch's train row and its saved snapshot: take back
                # both (the snapshot never lies beside its _interrupted twin), as a save that fails does
                self._train_row_of = None
                self.csv.withdraw_last_row()
                if not snapshot_existed:
                    with contextlib.suppress(OSError):
                        self.snapshot_path(epoch).unlink()
            stats = self.phase_stats
            if stats is None or (stats.epoch, stats.phase) != (epoch, "train"):  # stopped before it began
                stats = PhaseStats(epoch=epoch, phase="train")
            stats.add_earlier(earlier)
            # steps_done counts the phase's steps in all sittings, as train_steps_done does
            interrupted = {"phase": "train", **stats.carried(),
                           "steps_done": self.train_steps_done - self._train_phase_start}
            self._snapshot_written = None
            try:
                path = self.save(epoch, suffix="_interrupted", interrupted=interrupted)
            except KeyboardInterrupt:  # stopped again while saving: said, where the snapshot itself was written
                if self._snapshot_written is None:
                    raise
                raise Interrupted(self._snapshot_written, note="stopped again before the optimizer state was "
                                  "saved: the resume starts the optimizer afresh") from None
            raise Interrupted(path) from None


def _test_score(stats: PhaseStats) -> dict:
    scores = stats.game_scores or [stats.partial_score]
    return {"average": float(np.mean(scores)), "std": float(np.std(scores)), "min": float(np.min(scores)),
            "max": float(np.max(scores)), "episodes": len(stats.game_scores)}
