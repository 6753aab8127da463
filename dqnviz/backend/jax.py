"""JAX backend: input gradients with ``jax.grad`` and a DQN step jitted over ``stateless_call``.

The learner keeps the online network's weights, the target network's weights and the optimizer
state as JAX arrays between steps, so one update is one jitted call with no host round trip for
the weights. ``write_back`` copies them into the Keras variables when someone needs the model
itself (a snapshot, an analysis).
"""

import jax
import jax.numpy as jnp
import numpy as np


def input_gradient(fn, x):
    """Return ``(fn(x), d sum(fn(x)) / dx)`` as numpy arrays; ``x`` is treated as float32."""
    x = jnp.asarray(np.asarray(x, dtype=np.float32))

    def total(inputs):
        values = fn(inputs)
        return jnp.sum(values), values

    (_, values), gradient = jax.value_and_grad(total, has_aux=True)(x)
    return np.asarray(values), np.asarray(gradient)


def make_predict(model):
    """A jitted ``states -> Q-values`` function that always reads the model's current weights."""

    @jax.jit
    def _predict(trainable, non_trainable, states):
        q, _ = model.stateless_call(trainable, non_trainable, states)
        return q

    def predict(states, weights=None):
        trainable, non_trainable = weights if weights is not None else (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
        )
        return np.asarray(_predict(trainable, non_trainable, states))

    return predict


class make_train_step:
    """The compiled DQN update for JAX: ``step(batch) -> (loss, td_abs)``.

    ``loss_fn(q, q_next_online, q_next_target, batch) -> (loss, td_abs)`` holds the maths; here we
    only differentiate it with respect to the online weights and apply the optimizer, all inside
    one ``jax.jit``.
    """

    def __init__(self, online, target, optimizer, loss_fn, double):
        self.online, self.target, self.optimizer = online, target, optimizer
        optimizer.build(online.trainable_variables)
        self.trainable = [jnp.copy(v.value) for v in online.trainable_variables]
        self.non_trainable = [jnp.copy(v.value) for v in online.non_trainable_variables]
        self.optimizer_state = [jnp.copy(v.value) for v in optimizer.variables]
        self.sync_target()

        def loss_and_aux(trainable, non_trainable, target_trainable, target_non_trainable, batch):
            q, non_trainable = online.stateless_call(trainable, non_trainable, batch["states"])
            q_next_target, _ = target.stateless_call(
                target_trainable, target_non_trainable, batch["next_states"]
            )
            if double:
                q_next_online, _ = online.stateless_call(trainable, non_trainable, batch["next_states"])
            else:
                q_next_online = q_next_target
            loss, td_abs = loss_fn(q, q_next_online, q_next_target, batch)
            return loss, (td_abs, non_trainable)

        grad_fn = jax.value_and_grad(loss_and_aux, has_aux=True)

        @jax.jit
        def step(trainable, non_trainable, optimizer_state, target_trainable, target_non_trainable, batch):
            (loss, (td_abs, non_trainable)), grads = grad_fn(
                trainable, non_trainable, target_trainable, target_non_trainable, batch
            )
            trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, trainable)
            return loss, td_abs, trainable, non_trainable, optimizer_state

        self._step = step

    def __call__(self, batch):
        loss, td_abs, self.trainable, self.non_trainable, self.optimizer_state = self._step(
            self.trainable, self.non_trainable, self.optimizer_state,
            self.target_trainable, self.target_non_trainable, batch,
        )
        return loss, td_abs

    @property
    def weights(self):
        """The online weights as ``(trainable, non_trainable)`` for ``make_predict``."""
        return self.trainable, self.non_trainable

    def sync_target(self):
        """θ⁻ ← θ (the arrays are immutable, so sharing them is a copy)."""
        if hasattr(self, "trainable"):
            self.target_trainable = list(self.trainable)
            self.target_non_trainable = list(self.non_trainable)
        # Keras variables get their own buffers: Keras may donate a variable's buffer to a jitted
        # call (model.predict does), which would delete an array we still hold.
        for variable, value in zip(self.target.trainable_variables, self.target_trainable):
            variable.assign(jnp.copy(value))

    def reload_optimizer(self):
        """Read the optimizer state back from its Keras variables (after they were assigned)."""
        self.optimizer_state = [jnp.copy(v.value) for v in self.optimizer.variables]

    def write_back(self):
        """Copy the learner's arrays into the Keras variables of the online model and optimizer."""
        for variables, values in ((self.online.trainable_variables, self.trainable),
                                  (self.online.non_trainable_variables, self.non_trainable),
                                  (self.optimizer.variables, self.optimizer_state)):
            for variable, value in zip(variables, values):
                variable.assign(jnp.copy(value))


def _gather_states(frames, envs, index, keep):
    states = frames[envs[:, None], index]  # (B, history, H, W)
    states = jnp.where(keep[:, :, None, None], states, jnp.zeros((), states.dtype))
    return jnp.transpose(states, (0, 2, 3, 1))


class FrameBuffer:
    """uint8 frames ``(num_envs, slots, H, W)`` kept on the accelerator.

    Writes are jitted with the buffer donated, so XLA updates it in place instead of copying
    gigabytes per step; a sampled batch is gathered and stacked on the device.
    """

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.array = jnp.zeros(self.shape, jnp.uint8)
        self._write = jax.jit(lambda buffer, slot, frames: buffer.at[:, slot].set(frames), donate_argnums=0)
        self._gather = jax.jit(_gather_states)

    def write(self, slot, frames):
        self.array = self._write(self.array, jnp.int32(slot), jnp.asarray(frames, jnp.uint8))

    def gather(self, envs, index, keep):
        return self._gather(self.array, jnp.asarray(envs, jnp.int32), jnp.asarray(index, jnp.int32), jnp.asarray(keep))

    def to_numpy(self):
        return np.asarray(self.array)


def make_q_and_gradient(model, run):
    """A jitted ``x -> (Q(x), dQ(x, a*)/dx)`` with a* = argmax Q, reading the model's current weights.

    ``run`` maps float inputs through the model's layers (see ``dqnviz.analysis``), so uint8
    models are differentiated with respect to the pixel values.
    """
    import keras

    variables = list(model.trainable_variables) + list(model.non_trainable_variables)

    def q_and_gradient(values, x):
        def target(x):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                q = run(x)
            best = jax.nn.one_hot(jnp.argmax(q, axis=-1), q.shape[-1], dtype=q.dtype)
            return jnp.sum(q * jax.lax.stop_gradient(best)), q

        (_, q), gradient = jax.value_and_grad(target, has_aux=True)(x)
        return q, gradient

    compiled = jax.jit(q_and_gradient)

    def call(x):
        q, gradient = compiled([v.value for v in variables], jnp.asarray(x, jnp.float32))
        return np.asarray(q), np.asarray(gradient)

    return call
