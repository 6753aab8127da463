"""The epoch loop: random, train and test phases; statistics; snapshots.

It drives the data flow: environments (:func:`~dqnviz.atari.make_envs`) → replay memory →
learner, then the snapshots (:func:`~dqnviz.resume.snapshot_meta`) and the statistics CSV that
``dqnviz plot`` reads (:class:`~dqnviz.statistics.StatisticsCSV`).

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
import os
import time
import uuid
from pathlib import Path

import keras
import numpy as np

from dqnviz import backend
from dqnviz.agent import epsilon_greedy_later
from dqnviz.atari import FRAME_SHAPE, Rom, make_envs
from dqnviz.config import TrainConfig, env_switch, epsilon_schedule
from dqnviz.errors import UserError
from dqnviz.learner import Learner
from dqnviz.outputs import cannot_write
from dqnviz.progress import Progress, plural, say
from dqnviz.replay import DeviceReplay, ReplayMemory, check_fits_in_memory
from dqnviz.resume import check_same_network, replay_count_at, snapshot_meta
from dqnviz.snapshot import (kernel_movement, layer_kernels, load_optimizer_state, load_validation_states,
                             save_optimizer_state, save_snapshot, save_validation_states, starting_point)
from dqnviz.snapshot_checks import interrupted_sitting
from dqnviz.statistics import PhaseStats, StatisticsCSV, has_row, read_statistics
from dqnviz.stopping import deferred_interrupts, stop_requests_accepted
from dqnviz.units import format_bytes



def steps_played(steps: int, num_envs: int) -> int:
    """The agent steps a random or train phase of ``steps`` plays: whole iterations of one step per
    environment, ⌈steps / n⌉ · n."""
    return -(-steps // num_envs) * num_envs


def passes_multiple(done: int, step: int, period: int) -> bool:
    """Whether a count going from ``done − step`` to ``done`` passes a multiple of ``period``:
    ⌊done / period⌋ > ⌊(done − step) / period⌋. The training loop's clock: updates every
    ``train_frequency`` agent steps and target copies every ``target_steps``, counted over the
    whole run, whatever the environments' count and the phases' lengths."""
    return done // period > (done - step) // period


# ----------------------------------------------------------------------------------------------
# The epoch loop


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


def updates_before_actions(asynchronous: bool) -> bool:
    """Whether a train iteration launches its updates before it reads its actions: by default
    where the learner launches them asynchronously (``asynchronous``: JAX from its worker thread,
    the default on a GPU, or on a CPU), so that the loop goes on at once; not where the launch
    holds the loop (TensorFlow's step, or JAX launching in place on a GPU), which would keep the
    emulators waiting for it. ``DQNVIZ_UPDATES_FIRST=0|1`` overrides, for an A/B.

    The actions and the updates are the same either way. The forward pass that chooses the
    actions is dispatched first, with the weights as the last iteration's updates left them, and
    this iteration's updates need neither the actions nor their pass. What changes is when the
    device starts the updates: right after that forward pass, instead of once the host has read
    the actions, sent them to the emulators and launched the updates. On the H200 the loop acted
    for 2.1 ms of each 17.5-ms iteration (128 environments), with no update being launched then.
    A serial profile (``--profile serial``) keeps the actions first, so that acting is timed alone.
    """
    return env_switch("DQNVIZ_UPDATES_FIRST", asynchronous)


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


class TimeBudget:
    """A run's wall-clock budget (``dqnviz train --minutes``), counted from ``started`` (a
    ``time.perf_counter()`` reading; by default, when the budget is made).

    Once it is spent, the random, refill or train phase under way ends at its next iteration, and
    no new epoch begins; an epoch whose training it cut still writes its row, saves its snapshot and
    plays its whole test phase (a test measures, and a cut one would count only short games).
    """

    def __init__(self, minutes: float, started: float | None = None):
        self.minutes = float(minutes)
        self.started = time.perf_counter() if started is None else float(started)

    def spent(self) -> bool:
        """Whether ``60 · minutes`` seconds have passed since ``started``."""
        return time.perf_counter() - self.started >= 60.0 * self.minutes

    def left(self) -> str:
        """The time left, ``m:ss`` (``0:00`` once spent), for the progress bars."""
        seconds = max(0, int(60.0 * self.minutes - (time.perf_counter() - self.started)))
        return f"{seconds // 60}:{seconds % 60:02d}"

    def __str__(self) -> str:
        return f"the time budget (--minutes {self.minutes:g})"


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
        budget: a :class:`TimeBudget` that ends the run early once spent (None: epochs decide).

    Attributes:
        budget_cut: once the budget ended a phase early, ``(epoch, phase, steps played, steps
            planned)``; None otherwise.
        budget_stopped: whether the budget ended the run before ``config.epochs``.
    """

    def __init__(self, rom: Rom, config: TrainConfig, run: str, snapshot_dir="snapshots",
                 report_dir="reports", resume=None, show_progress: bool = True, log=say,
                 profile: bool | str = False, statistics=None, statistics_csv: "StatisticsCSV | None" = None,
                 budget: TimeBudget | None = None):
        if profile not in (False, True, "serial", "overlapped"):
            raise ValueError(f"profile must be False, True, 'serial' or 'overlapped', not {profile!r}")
        self.rom, self.config, self.run = rom, config, run
        self.snapshot_dir, self.report_dir = Path(snapshot_dir), Path(report_dir)
        self.show_progress, self.log = show_progress, log
        self.budget, self.budget_cut, self.budget_stopped = budget, None, False
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
            options = dict(frames_per_update=-(-config.train_frequency // config.num_envs)) if config.device_replay else {}
            self.replay = (DeviceReplay if config.device_replay else ReplayMemory)(
                config.replay_size, num_envs=config.num_envs, history=config.history, n_step=config.n_step,
                gamma=config.gamma, prioritized=config.prioritized, alpha=config.priority_alpha, seed=self.sitting_seed,
                **options,
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
                self.untested_replay_count = replay_count_at(meta, rows, epoch)
        # The run's identity, kept through every resume of it, so that compare tells one run's epochs
        # from another run of the same name: a new one for a new run, a run branched off (another
        # name), or one resumed from a snapshot that records none.
        # ``run_id_since``: the first epoch that carries it (a run begun before run identities, resumed
        # as itself, takes one from its resume on; its older snapshots have none).
        same_run = resume is not None and meta.get("run") == run and meta.get("run_id")
        self.run_id = str(meta["run_id"]) if same_run else uuid.uuid4().hex
        self.run_id_since = int(meta.get("run_id_since", 0)) if same_run else (
            0 if resume is None or meta.get("run") != run else self.start_epoch)
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
        self.updates_first = updates_before_actions(self.learner.step.launches_asynchronously)
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
        return self._choose_later(states, epsilon)()

    def _choose_later(self, states, epsilon):
        """:meth:`_choose` in two steps: the exploration draws and the dispatch of the forward
        pass now, the actions when the returned function is called (it waits for the pass)."""
        if epsilon >= 1.0:
            actions = self.rng.integers(0, self.num_actions, len(states))
            return lambda: actions
        return epsilon_greedy_later(lambda: self.learner.q_values(states, stacks=True, wait=False), len(states),
                                    self.num_actions, epsilon, self.rng)

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
        updates_first = self.updates_first and not timer.wait_for_device
        # A stop signal is raised only at the top of an iteration, where states, scores, the
        # replay memory and the step counts agree (see dqnviz.stopping).
        def updates_due(done: int) -> bool:
            """Whether the iteration that brings the run's train steps to ``done`` makes updates:
            one that passes a multiple of the train frequency f (with n ≥ f environments, every
            iteration), once the memory can fill a batch. Counted over the whole run, as DeepMind's
            ``numSteps % update_freq``, so that a phase or a resumed sitting whose length f does not
            divide loses no update: after D train steps the run has made ⌊D / f⌋ sets of updates."""
            return passes_multiple(done, n, config.train_frequency) and self.replay.num_sampleable() >= config.batch_size

        def start_iteration_updates(drawn_ahead):
            """A train iteration's learning: count its n agent steps and launch its updates when
            due (on ``drawn_ahead``, the batches drawn during the last iteration, if any); returns
            the pending updates, or None."""
            self.train_steps_done += n
            if drawn_ahead is not None or updates_due(self.train_steps_done):
                return self._start_updates(stats, self._draw(updates_per_iteration) if drawn_ahead is None else drawn_ahead)
            return None

        # a random or train phase plays whole iterations, n agent steps each: its bar counts to the
        # multiple of n it ends at (a test phase's games play on past its budget, counted past it)
        total = steps if testing else steps_played(steps, n)
        with Progress(label, total=total, enabled=self.show_progress, count_past_total=testing) as progress, deferred_interrupts() as stop:
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
                    elif not testing and self.budget is not None and self.budget.spent():
                        self.budget_cut = (epoch, phase, stats.steps, total)
                        progress.set_total(stats.steps)  # the bar ends full, at what was played
                        progress.update(stats.steps, **{"budget left": self.budget.left()})
                        break
                    epsilon = 1.0 if phase == "random" else config.test_epsilon if testing else self.epsilon()
                    with timer("act"):
                        actions_later = self._choose_later(states, epsilon)  # the forward pass dispatched
                    pending = None
                    if learn and updates_first:  # the device starts them right after that pass
                        pending = start_iteration_updates(drawn_ahead)
                    with timer("act"):
                        actions = actions_later()
                    with timer("emulate"):
                        env.send(actions)  # the emulators run in C++ threads while we learn
                    iteration += 1
                    if learn and not updates_first:
                        pending = start_iteration_updates(drawn_ahead)
                    drawn_ahead = None  # used by this iteration's updates, if any
                    # θ⁻ ← θ, after this iteration's updates, each time the run's train steps pass a
                    # multiple of --target-steps: every target_steps on average, also with n
                    # environments that do not divide it, and on across a resume. After the send:
                    # reading θ waits for the updates' launch, which the emulators need not wait for.
                    if learn and passes_multiple(self.train_steps_done, n, config.target_steps):
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
                        if self.budget is not None:
                            fields["budget left"] = self.budget.left()
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
            initialisation=self.initialisation, run_id=self.run_id, run_id_since=self.run_id_since,
            **{"replay_memory_count": len(self.replay), **extra},
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

    def _budget_line(self, next_epoch: int | None) -> str:
        """What the spent budget cut: ``… spent: epoch 6's train phase stopped after 312,064 of its
        500,096 steps; epoch 7 is not begun`` (``next_epoch`` None: the cut epoch was the last)."""
        if self.budget_cut is None:
            return f"{self.budget} is spent: epoch {next_epoch} is not begun"
        epoch, phase, played, planned = self.budget_cut
        whose = f"epoch {epoch}'s train phase" if phase == "train" else f"the {phase} phase"
        cut = f"{whose} stopped after {played:,} of its {planned:,} {plural('step', planned)}"
        if phase != "train":
            if played >= planned:
                return f"{self.budget} is spent: it ran out with the {phase} phase, before training began"
            return f"{self.budget} is spent: {cut}, before training began"
        return f"{self.budget} is spent: {cut}" + (f"; epoch {next_epoch} is not begun" if next_epoch else "")

    def discard_if_unused(self) -> None:
        """A fresh run that ends before its first row leaves no file: its CSV (see
        :meth:`StatisticsCSV.discard_if_unused`) and the validation states saved for it go."""
        if self.csv.discard_if_unused() and self.start_epoch == 0 and self._validation_file is not None:
            with contextlib.suppress(OSError):
                Path(self._validation_file).unlink()

    def has_snapshot(self) -> bool:
        """Whether a snapshot of this run lies in its folder (``<run>_<epoch>[_interrupted].keras``):
        something ``--resume`` can go on from."""
        import re

        pattern = re.compile(re.escape(self.run) + r"_\d+(_interrupted)?\.keras")
        with contextlib.suppress(OSError):
            return any(pattern.fullmatch(name) for name in os.listdir(self.snapshot_dir))
        return False

    def discard_if_unresumable(self) -> None:
        """A fresh run stopped for good before any snapshot of it was saved (a second Ctrl-C while
        the first one's snapshot was written) leaves no file: with
        nothing to resume from, its CSV (the random phase's row at most) and validation states
        would only keep its name from a new run. Otherwise as :meth:`discard_if_unused`."""
        if self.start_epoch != 0 or self.has_snapshot():
            self.discard_if_unused()
            return
        removed = self.csv.discard_if_created()
        for path in (self._validation_file, self.optimizer_path()):
            if path is not None and Path(path).exists():
                with contextlib.suppress(OSError):
                    Path(path).unlink()
        if removed:
            self.log(f"stopped before its first snapshot: removed {self.csv.path}, which nothing could resume")

    def _fill_replay(self) -> None:
        """After a resume the replay memory is empty: refill it with the current policy, no learning.
        The CSV gets a ``refill`` row, so that the statistics say where a later sitting took over
        (``dqnviz plot`` marks it: curves may step there)."""
        started = time.perf_counter()
        steps = self.replay_fill_steps()
        stats = self.run_phase(self.start_epoch, "refill", steps, progress_label="refilling replay memory")
        if self.budget is not None and self.budget.spent() and self.budget_cut is None:
            self.budget_cut = (self.start_epoch, "refill", stats.steps, stats.steps)
        if self.budget_cut is not None:  # no epoch follows: the run's CSV says nothing of this sitting
            return
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
                if self.budget is not None and self.budget.spent() and self.budget_cut is None:
                    self.budget_cut = (0, "random", stats.steps, stats.steps)  # played whole, and nothing after it
                if self.budget_cut is None:  # else no epoch follows: the run trained nothing, and keeps no file
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
                if self.budget is not None and self.budget.spent():
                    self.budget_stopped = True
                    self.log(self._budget_line(epoch))
                    break
                epoch_started = time.perf_counter()
                phase = "train"
                earlier = self.resume_partial  # an interrupted sitting of this phase, counted in its row
                if earlier and "seconds" in earlier:  # its seconds count in the epoch's time, as in the rate
                    epoch_started -= float(earlier["seconds"])
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
                if self.budget_cut is not None and self.budget_cut[:2] == (epoch, "train"):
                    # the phase's steps in all its sittings, as its row counts them
                    _, _, played, planned = self.budget_cut
                    self.budget_cut = (epoch, "train", stats.steps, stats.steps - played + planned)
                # From the epoch's train row to its saved snapshot the epoch is trained but not yet
                # kept: a stop signal there waits for the save, then stops as one in the test
                # phase does (an _interrupted snapshot beside a train row would split the run)
                snapshot_existed = self.snapshot_path(epoch).exists()
                with deferred_interrupts() as stop:
                    self._check_diverged(self.write_row(stats, epoch_started))  # sets _train_row_of
                    if self.timer.enabled:
                        iterations = -(-stats.steps // self.train_env.num_envs)
                        shapes = getattr(self.learner.step, "call_shapes", None)  # JAX, frames on the device
                        self.log(f"  where the loop waited per iteration of {self.train_env.num_envs} agent steps: "
                                 + self.timer.summary(stats.seconds, iterations)
                                 + (f"; the fused update compiled for {len(shapes)} {plural('shape', len(shapes))} so far"
                                    if shapes else ""))
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
            if self.budget_cut is not None and not self.budget_stopped:  # it cut the last epoch
                self.budget_stopped = True
                self.log(self._budget_line(None))
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
