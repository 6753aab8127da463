"""Every default of a dqnviz run, in one place (DeepMind's Nature DQN, Mnih et al. 2015).

Each field's ``help`` metadata is the one-line documentation that ``dqnviz train --help`` shows, so
the command line and this file can never disagree.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field


def env_switch(name: str, default: bool) -> bool:
    """A choice the backends make for the machine (XLA under TensorFlow; fewer passes, compiler
    options and the launch thread under JAX): ``default`` unless ``name=0`` or ``name=1`` overrides it."""
    choice = os.environ.get(name, "").strip()
    return default if choice not in ("0", "1") else choice == "1"


# Bounds past which a value is a typo rather than a choice: 2³² − 1 is the largest seed numpy and
# the emulator take, and 4,096 environments already need a large machine (each is an emulator).
MAX_SEED = 2**32 - 1
MAX_ENVS = 4096

TEST_MAX_FRAMES = 18_000
"""Emulator frames after which a test game stops: 5 minutes at 60 frames/s, the Nature test's cap."""


def _f(default, help, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run. Defaults follow the Nature paper unless noted."""

    # Epochs and phases
    epochs: int = _f(200, "the run's last epoch: train/test epochs 1 … N follow the random epoch 0 (a resumed run counts on from where it stopped); 200 epochs of 250,000 agent steps are the Nature run's 50 M agent steps (the paper's \"50 million frames\" are agent steps: 200 M emulator frames)", positive=True)
    random_steps: int = _f(50_000, "agent steps of uniformly random play in epoch 0, which fill the replay memory (rounded up to a multiple of --num-envs: the environments step together)", positive=True)
    train_steps: int = _f(250_000, "agent steps in each epoch's train phase (rounded up to a multiple of --num-envs: the environments step together)", positive=True)
    test_steps: int = _f(125_000, "agent steps in each epoch's test phase (ε = test-epsilon), summed over environments; the games still running then play to their end, so every game started counts", positive=True)
    # Environment
    num_envs: int = _f(1, "environments stepped together; 1 is the classic Nature loop, >1 uses ale-py's C++ AtariVectorEnv", positive=True, maximum=MAX_ENVS)
    test_envs: int = _f(0, "environments in the test phases; 0 means as many as --num-envs (fewer make a test phase shorter: each environment plays its last game to the end)", nonnegative=True, maximum=MAX_ENVS)
    emulator_threads: int = _f(0, "C++ threads that step the environments when --num-envs > 1; 0 means one per environment, up to the CPU count less a quarter of it (12 of 16 cores; the rest is left to the training loop: sampling, launching the device's kernels)", nonnegative=True)
    frame_skip: int = _f(4, "emulator frames per agent step (the action repeats; the state is the max of the last two)", positive=True, maximum=64)
    history: int = _f(4, "frames stacked into one state (nvis and compare need 3 or more: they show the last three as red, green and blue)", positive=True, maximum=64)
    noop_max: int = _f(30, "at most this many NOOP emulator frames (not agent steps) at the start of each game", nonnegative=True)
    repeat_action_probability: float = _f(0.0, "sticky actions: the chance the emulator repeats the previous action (0.25 in Machado et al. 2018)", probability=True)
    max_frames_per_episode: int = _f(108_000, "emulator frames after which a training game is cut off (30 minutes at 60 frames/s; test phases stop games at 18,000 frames, 5 minutes, the Nature test's cap)", positive=True)
    # Replay
    replay_size: int = _f(1_000_000, "transitions kept in the replay memory (about 7 KB each)", positive=True)
    batch_size: int = _f(32, "transitions per gradient step", positive=True)
    train_frequency: int = _f(4, "agent steps per gradient step (summed over environments)", positive=True)
    device_replay: bool = _f(False, "keep the replay memory's frames on the accelerator and stack sampled states there (for GPUs)")
    prioritized: bool = _f(False, "proportional prioritized replay (Schaul et al. 2016) with importance weights")
    priority_alpha: float = _f(0.6, "prioritized replay: priority exponent α in P(i) = p_i^α / Σ p_k^α", probability=True)
    priority_beta: float = _f(0.4, "prioritized replay: initial importance-weight exponent β, annealed linearly to 1 over the planned run, --epochs × --train-steps agent steps (a run stopped well short of it keeps β near this)", probability=True)
    # Learning
    gamma: float = _f(0.99, "discount γ", probability=True)
    n_step: int = _f(1, "n-step returns: y = Σ_{k<n} γ^k r_{t+k} + γ^n max_a Q_target(s_{t+n}, a)", positive=True)
    double: bool = _f(False, "Double DQN (van Hasselt et al. 2016): y = r + γ Q_target(s', argmax_a Q(s', a))")
    bootstrap_epsilon: float = _f(0.0, "bootstrap with the value of the ε-greedy policy, not the greedy max: y = R + discount·((1−ε)·Q_target(s', a*) + ε·mean_a Q_target(s', a)) (expected SARSA); 0.05, the test ε, learns the values of the policy that is tested", probability=True)
    dueling: bool = _f(False, "dueling head (Wang et al. 2016): Q = V + A - mean(A)")
    target_steps: int = _f(10_000, "agent steps between copies of the online network into the target network", positive=True)
    optimizer: str = _f("rmsprop", "'rmsprop' (DeepMind's centred RMSProp) or 'adam'", choices=("rmsprop", "adam"))
    learning_rate: float = _f(0.00025, "learning rate", positive=True)
    rmsprop_rho: float = _f(0.95, "RMSProp decay ρ", probability=True)
    rmsprop_epsilon: float = _f(0.01, "RMSProp ε, as DeepMind's: for the loss summed over the batch (the loss here is the batch mean, so the optimizer is given ε / batch-size², which takes the same steps)", positive=True)
    adam_epsilon: float = _f(1.5e-4, "Adam ε (used with --optimizer adam); 1.5e-4 as in Rainbow (Hessel et al. 2018): Nature used RMSProp", positive=True)
    # Exploration
    epsilon_start: float = _f(1.0, "ε at the first train step", probability=True)
    epsilon_end: float = _f(0.1, "ε after the decay", probability=True)
    epsilon_decay_steps: int = _f(1_000_000, "agent steps of training (train phases only) over which ε falls linearly from start to end", positive=True)
    test_epsilon: float = _f(0.05, "ε in the test phase", probability=True)
    # Statistics
    validation_states: int = _f(500, "fixed states, kept from the random phase, over which meanq (mean max-Q) is measured", positive=True)
    seed: int = _f(0, "random seed for the emulator, exploration, sampling and weights (a resumed run keeps the seed that drew its first weights)", nonnegative=True, maximum=MAX_SEED)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build a config from a stored dict, ignoring keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def wrong_type(cls, values: dict) -> str | None:
        """The first stored value of a field this version knows whose JSON type the field cannot
        take, in words (``"config's 'batch_size' is '32', not a whole number"``); None when all fit.
        A whole number is a number too; true and false are neither."""
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            value = values[f.name]
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            fits = {"int": number and isinstance(value, int), "float": number,
                    "bool": isinstance(value, bool), "str": isinstance(value, str)}[f.type]
            if not fits:
                wanted = {"int": "a whole number", "float": "a number", "bool": "true or false",
                          "str": "a string"}[f.type]
                return f"config's {f.name!r} is {value!r:.40}, not {wanted}"
        return None

    def validate(self) -> None:
        """Raise :class:`~dqnviz.errors.UserError` for a value no run can use."""
        from dqnviz.errors import UserError

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if f.metadata.get("positive") and not value > 0:
                raise UserError(f"{flag} must be greater than 0, got {value}")
            if f.metadata.get("nonnegative") and value < 0:
                raise UserError(f"{flag} must be 0 or more, got {value}")
            if "maximum" in f.metadata and value > f.metadata["maximum"]:
                raise UserError(f"{flag} must be at most {f.metadata['maximum']:,}, got {value:,}")
            if f.metadata.get("probability") and not 0.0 <= value <= 1.0:
                raise UserError(f"{flag} must be between 0 and 1, got {value}")
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                raise UserError(f"{flag} must be one of {', '.join(f.metadata['choices'])}, got {value!r}")
        if self.epsilon_end > self.epsilon_start:
            raise UserError(f"--epsilon-end {self.epsilon_end:g} is above --epsilon-start {self.epsilon_start:g}: "
                            f"ε decays from the start value to the end value")
        if self.repeat_action_probability >= 1:
            raise UserError(f"--repeat-action-probability {self.repeat_action_probability:g} repeats the first action "
                            f"for ever, so the agent's choices never reach the game: give less than 1")
        if self.max_frames_per_episode < self.frame_skip:
            raise UserError(f"--max-frames-per-episode {self.max_frames_per_episode} is shorter than one agent step "
                            f"(--frame-skip {self.frame_skip} frames)")
        if self.noop_max > self.max_frames_per_episode:
            raise UserError(f"--noop-max {self.noop_max:,} no-op frames at a game's start are more than a whole game "
                            f"(--max-frames-per-episode {self.max_frames_per_episode:,})")
        if self.noop_max > TEST_MAX_FRAMES:
            raise UserError(f"--noop-max {self.noop_max:,} no-op frames at a game's start are more than a whole test game "
                            f"({TEST_MAX_FRAMES:,} frames, the Nature test's cap)")
        if self.train_frequency % self.num_envs and self.num_envs % self.train_frequency:
            raise UserError(
                f"--train-frequency {self.train_frequency} and --num-envs {self.num_envs}: one must divide the other"
            )
        # Each environment's ring holds replay_size // num_envs slots, of which history − 1 + n_step
        # cannot be sampled (no full state before them, no n successors after): a smaller memory
        # never holds a batch, and a run would play without a single update.
        per_env = -(-self.batch_size // self.num_envs) + self.history - 1 + self.n_step
        if self.replay_size // self.num_envs < per_env:
            cause = (f", --history {self.history} and --n-step {self.n_step} (each environment's last "
                     f"{self.history - 1 + self.n_step:,} slots cannot be drawn)"
                     if self.history - 1 + self.n_step > 4 else "")  # the defaults' 4: the batch is the cause
            raise UserError(
                f"--replay-size {self.replay_size:,} is too small to draw a batch of {self.batch_size} "
                f"with {self.num_envs} env(s){cause}: give at least {per_env * self.num_envs:,}"
            )


# help(TrainConfig) lists every field with its default and its --help text (kept in the fields'
# metadata, so that the command line and the library read the same words)
TrainConfig.__doc__ = (TrainConfig.__doc__ or "") + "\n\n    Attributes:\n" + "\n".join(
    f"        {f.name} (default {f.default!r}): {f.metadata['help']}" for f in dataclasses.fields(TrainConfig))


def epsilon_schedule(step: int, config: TrainConfig) -> float:
    """ε after ``step`` train steps: linear from ``epsilon_start`` to ``epsilon_end``.

    ε(t) = ε_end + (ε_start − ε_end) · max(0, 1 − t / T), with T = ``epsilon_decay_steps``.
    ``step`` counts train-phase steps only (the random phase acts with ε = 1 and does not count).
    """
    fraction = max(0.0, 1.0 - step / config.epsilon_decay_steps)
    return config.epsilon_end + (config.epsilon_start - config.epsilon_end) * fraction


def argument_type(f: dataclasses.Field):
    """The argparse type of a config field: its Python type plus the range its metadata states."""
    from dqnviz.validation import positive_number, probability, whole_number

    default = f.default
    if f.metadata.get("probability"):
        return probability
    if isinstance(default, int):
        return whole_number(minimum=1 if f.metadata.get("positive") else 0 if f.metadata.get("nonnegative") else None,
                            maximum=f.metadata.get("maximum"))
    if isinstance(default, float) and f.metadata.get("positive"):
        return positive_number
    return type(default)


def add_config_arguments(parser, config_class=TrainConfig, only=None) -> None:
    """Add one ``--flag`` per config field to an argparse parser, with the field's help and default
    (``only``: just these fields, by name). A flag not given parses as None.

    A value outside the field's range is refused by the parser, in one line; :meth:`TrainConfig.validate`
    checks the same ranges for configs built in Python.
    """
    for f in dataclasses.fields(config_class):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        help_text = f.metadata.get("help", "")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(
                flag, type=argument_type(f), default=None,
                metavar=None if "choices" in f.metadata else _metavar(f),
                help=f"{help_text} (default: {default:,})" if isinstance(default, int)
                else f"{help_text} (default: {default})",
                choices=f.metadata.get("choices"),
            )


def _metavar(f) -> str:
    """As the other commands name them: S a seed, E an exploration rate ε, P a probability, N another
    whole number, X another number."""
    named = {"seed": "S", "epsilon_start": "E", "epsilon_end": "E", "test_epsilon": "E", "bootstrap_epsilon": "E",
             "repeat_action_probability": "P"}
    return named.get(f.name, "N" if isinstance(f.default, int) else "X")


# what a snapshot's config.rmsprop_epsilon means (snapshot_meta writes it): DeepMind's ε, for the
# loss summed over the batch (see dqnviz.learner.make_optimizer)
RMSPROP_EPSILON_UNITS = "summed loss"


def stored_config(meta: dict) -> tuple[TrainConfig, str | None]:
    """The config a snapshot's metadata stores, and a line to say if a field had to be read anew.

    Snapshots saved before ``rmsprop_epsilon_units`` was written gave Keras' RMSprop their ε as
    it was, for the batch-mean loss; it now means DeepMind's ε, for the summed loss, and the
    optimizer gets ε / B². Such a snapshot's ε is read as ε·B², so that a resumed run takes the
    steps it took before."""
    config = TrainConfig.from_dict(meta.get("config", {}))
    if meta.get("rmsprop_epsilon_units") == RMSPROP_EPSILON_UNITS or "config" not in meta:
        return config, None
    epsilon = config.rmsprop_epsilon * config.batch_size ** 2
    said = None
    if config.optimizer == "rmsprop":
        said = (f"this snapshot predates RMSProp's ε in DeepMind's units (for the batch's summed loss): its ε "
                f"{config.rmsprop_epsilon:g} is kept as --rmsprop-epsilon {epsilon:g}, the same steps; "
                f"--rmsprop-epsilon {config.rmsprop_epsilon:g} takes DeepMind's")
    return config.replace(rmsprop_epsilon=epsilon), said


def config_from_arguments(args, base: TrainConfig | None = None) -> TrainConfig:
    """The config that ``args`` ask for: fields given on the command line override ``base``."""
    base = base or TrainConfig()
    changes = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    return base.replace(**changes)
