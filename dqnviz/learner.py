"""The DQN update, written once with ``keras.ops``; ``dqnviz.backend`` compiles it.

In the data flow: it takes batches from the replay memory; its online network is what the
trainer saves as a snapshot.

For a batch of transitions (s, a, R, discount, s') from the replay memory::

    a*   = argmax_a Q_target(s', a)                 (DQN)
    a*   = argmax_a Q(s', a)                        (Double DQN, van Hasselt et al. 2016)
    y    = R + discount · Q_target(s', a*)          (discount = γ^n, or 0 past a terminal)
    y    = R + discount · ((1 − ε_b) · Q_target(s', a*) + ε_b · mean_a Q_target(s', a))
                                                    (--bootstrap-epsilon ε_b > 0: expected SARSA
                                                     toward the ε_b-greedy policy, van Seijen et al. 2009)
    δ    = y − Q(s, a)
    loss = mean_i w_i · huber(δ_i)                  (huber = error clipping of the Nature paper)

w_i are the importance weights of prioritized replay (1 otherwise). The target network's weights
θ⁻ are a copy of θ refreshed every ``target_steps`` agent steps.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops

from dqnviz.config import TrainConfig
from dqnviz.network import build_q_network


def huber(x, delta: float = 1.0):
    """huber(x) = ½x² for |x| ≤ δ, δ(|x| − ½δ) otherwise: the gradient is clipped to [−δ, δ]."""
    absolute = ops.abs(x)
    return ops.where(absolute <= delta, 0.5 * ops.square(x), delta * (absolute - 0.5 * delta))


def td_targets(returns, discounts, q_next_online, q_next_target, bootstrap_epsilon: float = 0.0):
    """y = R + discount · V(s'), with V(s') = Q_target(s', a*) and a* = argmax_a Q_online(s', a).

    Pass ``q_next_online = q_next_target`` for the plain DQN target ``R + discount · max_a Q_target``.
    With ``bootstrap_epsilon`` ε_b > 0, V(s') is the value of the ε_b-greedy policy instead:
    V(s') = (1 − ε_b) · Q_target(s', a*) + ε_b · mean_a Q_target(s', a). Q-learning's greedy V
    assumes that every later action is the best one; an agent tested at ε = 0.05 takes a random
    one in twenty, and with ε_b = 0.05 it learns what states are worth under that policy.
    """
    best = ops.argmax(q_next_online, axis=-1)
    q_next = ops.take_along_axis(q_next_target, ops.expand_dims(best, -1), axis=-1)[:, 0]
    if bootstrap_epsilon:  # a Python branch: ε_b = 0 compiles exactly the greedy target
        q_next = (1.0 - bootstrap_epsilon) * q_next + bootstrap_epsilon * ops.mean(q_next_target, axis=-1)
    return ops.stop_gradient(returns + discounts * q_next)


def dqn_loss(q, q_next_online, q_next_target, batch, bootstrap_epsilon: float = 0.0):
    """``(loss, |δ|)`` for one batch; see the module docstring."""
    y = td_targets(batch["returns"], batch["discounts"], q_next_online, q_next_target, bootstrap_epsilon)
    actions = ops.expand_dims(ops.cast(batch["actions"], "int32"), -1)
    q_taken = ops.take_along_axis(q, actions, axis=-1)[:, 0]
    delta = y - q_taken
    loss = ops.mean(batch["weights"] * huber(delta))
    return loss, ops.abs(delta)


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """DeepMind's centred RMSProp (lr η 0.00025, ρ 0.95, ε 0.01), or Adam.

    DeepMind's RMSProp (their Lua ``NeuralQLearner``) steps on the gradient G of the loss summed
    over the batch, with ε inside the square root::

        m ← ρ m + (1 − ρ) G,   v ← ρ v + (1 − ρ) G²,   θ ← θ − η G / √(v − m² + ε)

    The loss here is the batch mean, whose gradient is g = G / B for a batch of B. Putting G = B g
    in the update gives η g / √(v_g − m_g² + ε / B²), with m_g, v_g the same averages of g: so
    Keras' centred RMSprop, given ε / B², takes exactly DeepMind's steps. (Given ε itself, its
    steps would be up to B times smaller: for B = 32, v_g ≈ 1e-6 ≪ ε = 0.01.) ``rmsprop_epsilon``
    is therefore in DeepMind's units, the paper's "min squared gradient". Adam's ε is not
    rescaled: the shipped recipes tuned it for the mean loss, as Dopamine's does.
    """
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=config.learning_rate, epsilon=config.adam_epsilon)
    return keras.optimizers.RMSprop(
        learning_rate=config.learning_rate, rho=config.rmsprop_rho,
        epsilon=config.rmsprop_epsilon / config.batch_size ** 2, centered=True,
    )


BATCH_KEYS = ("states", "actions", "returns", "discounts", "next_states", "weights")


class Learner:
    """Online and target Q-networks, the optimizer and the compiled update.

    Args:
        num_actions: size of the action set.
        config: the run's hyper-parameters (dueling, double, optimizer, …).
        model: start from these weights (a resumed snapshot) instead of a fresh network.
    """

    def __init__(self, num_actions: int, config: TrainConfig, model: keras.Model | None = None):
        from dqnviz import backend

        self.config = config
        self.online = model if model is not None else build_q_network(
            num_actions, dueling=config.dueling, history=config.history, seed=config.seed
        )
        self.target = build_q_network(num_actions, dueling=config.dueling, history=config.history)
        self.optimizer = make_optimizer(config)
        loss_fn = functools.partial(dqn_loss, bootstrap_epsilon=config.bootstrap_epsilon) \
            if config.bootstrap_epsilon else dqn_loss
        self.step = backend.TrainStep(self.online, self.target, self.optimizer, loss_fn, config.double)
        self._predict = {stacks: backend.make_predict(self.online, stacks=stacks) for stacks in (False, True)}
        self.updates = 0

    def q_values(self, states: np.ndarray, stacks: bool = False, wait: bool = True) -> np.ndarray:
        """Q(s, ·) for a batch of uint8 states (N, 84, 84, history), or of frame stacks
        (N, history, 84, 84) with ``stacks``, with the current online weights. Without ``wait``
        the forward pass may still be running on the device when this returns: ``np.asarray``
        of the result waits for it."""
        return self._predict[stacks](np.asarray(states), self.step.weights, wait=wait)

    def train(self, batch: dict) -> tuple[float, np.ndarray]:
        """One gradient step on ``batch``; returns the loss and |δ| per transition."""
        loss, td_abs = self.step({key: batch[key] for key in BATCH_KEYS})
        self.updates += 1
        return loss, td_abs

    def train_transitions(self, replay, transitions: list[dict]) -> "PendingUpdates":
        """One gradient step per batch of ``transitions`` (from ``replay.sample_transitions``),
        dispatched to the device and not awaited: read the results when they are needed.

        Under JAX with the frames on the device (``DeviceReplay``) all the steps are one compiled
        call that stacks the states itself; otherwise the replay memory stacks each batch where
        its frames live (host or device) and each step is its own call.
        """
        frames = getattr(replay, "buffer", None)
        if frames is not None and hasattr(self.step, "train_on_frames"):
            losses, td_abs = self.step.train_on_frames(frames, transitions)
        else:
            batches = [replay.stack_transitions(t) for t in transitions]
            results = [self.step({key: batch[key] for key in BATCH_KEYS}) for batch in batches]
            losses, td_abs = [loss for loss, _ in results], [td for _, td in results]
        self.updates += len(transitions)
        return PendingUpdates(transitions, losses, td_abs)

    def sync_target(self) -> None:
        """θ⁻ ← θ: copy the online network's weights into the target network. The trainer calls
        this every ``target_steps`` agent steps; a new learner starts with θ⁻ = θ."""
        self.step.sync_target()

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimizer's variables (step count, moment estimates), by name, as numpy arrays."""
        self.step.write_back()
        return {_state_name(v): keras.ops.convert_to_numpy(v.value) for v in self._state_variables()}

    def _state_variables(self) -> list:
        # The learning rate is the config's (a resumed run may change it), not part of the state.
        return [v for v in self.optimizer.variables if _state_name(v) != "learning_rate"]

    def restore_optimizer_state(self, state: dict) -> None:
        """Load what :meth:`optimizer_state` returned (a resumed run continues the same Adam/RMSprop).

        Raises:
            ValueError: the names or shapes do not match this optimizer (another config).
        """
        variables = self._state_variables()
        if sorted(map(_state_name, variables)) != sorted(state) or any(
            tuple(np.shape(state[_state_name(v)])) != tuple(v.shape) for v in variables
        ):
            raise ValueError("the saved optimizer state does not match this optimizer")
        for variable in variables:
            variable.assign(state[_state_name(variable)])
        self.step.reload_optimizer()

    def weights_finite(self) -> bool:
        """Whether every weight of the online network is finite (no NaN, no ±inf).

        Reduced on the device, a boolean per variable and then one for them all: only that one
        comes to the host, not the weights. It reads the weights where the compiled step keeps
        them (under JAX its own arrays), so nothing is written back to the Keras variables.
        """
        weights = self.step.weights  # JAX: (trainable, non_trainable) arrays; TensorFlow: None
        values = [*weights[0], *weights[1]] if weights is not None else [v.value for v in self.online.weights]
        flags = [ops.all(ops.isfinite(value)) for value in values
                 if keras.backend.is_float_dtype(keras.backend.standardize_dtype(value.dtype))]
        return bool(ops.convert_to_numpy(ops.all(ops.stack(flags)))) if flags else True

    def model(self) -> keras.Model:
        """The online network with its current weights (for snapshots and analysis)."""
        self.step.write_back()
        return self.online


class PendingUpdates:
    """Updates dispatched to the device; reading their results waits for them (a host sync).

    The losses and |δ| come to the host together, in one device→host copy (``backend.results_to_host``),
    the first time either is read; both are kept, so that reading the other costs nothing.

    Attributes:
        transitions: the batches, as ``ReplayMemory.sample_transitions`` returned them.
    """

    def __init__(self, transitions, losses, td_abs):
        self.transitions, self._losses, self._td_abs = transitions, losses, td_abs
        self._on_host = None  # (losses, td_abs) as numpy arrays, once read

    def results(self) -> tuple[np.ndarray, np.ndarray]:
        """``(losses, td_abs)``, shapes (K,) and (K, B): one wait and one copy for both."""
        if self._on_host is None:
            from dqnviz.backend import results_to_host

            self._on_host = results_to_host(self._losses, self._td_abs)
            self._losses = self._td_abs = None  # the device's copies are no longer needed
        return self._on_host

    def losses(self) -> np.ndarray:
        """The loss of each update, shape (K,)."""
        return self.results()[0]

    def td_abs(self) -> np.ndarray:
        """|δ| per transition, shape (K, B)."""
        return self.results()[1]


def _state_name(variable) -> str:
    """An optimizer variable's path without the optimizer's own name (``adam_1/`` differs per instance)."""
    return variable.path.split("/", 1)[-1]
