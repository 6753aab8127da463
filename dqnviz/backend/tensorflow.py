"""TensorFlow backend: input gradients with ``tf.GradientTape`` and a DQN step under
``tf.function``, compiled with XLA when a GPU is present. Variables are updated in place, so
``write_back`` has nothing to do.

On a CPU, TensorFlow's oneDNN convolutions beat XLA's for the Nature CNN (a batch-32 update takes
20 ms against 28 ms on the 2-core development machine), so XLA is used only with a GPU.
``DQNVIZ_XLA=1`` or ``DQNVIZ_XLA=0`` overrides the choice.
"""

import functools

import keras
import numpy as np
import tensorflow as tf

from dqnviz.config import env_switch


def eagerly(fn):
    """``fn()`` run eagerly, also inside a ``tf.function`` being traced (``tf.init_scope``), so that
    its tensors have values."""
    with tf.init_scope():
        return fn()


def has_accelerator() -> bool:
    """Whether TensorFlow computes on a GPU, not the host's CPU."""
    return bool(tf.config.list_physical_devices("GPU"))


def _use_xla() -> bool:
    return env_switch("DQNVIZ_XLA", has_accelerator())


XLA = _use_xla()


def input_gradient(fn, x):
    """Return ``(fn(x), d sum(fn(x)) / dx)`` as numpy arrays; ``x`` is treated as float32."""
    x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        values = fn(x)
        total = tf.reduce_sum(values)
    return values.numpy(), tape.gradient(total, x).numpy()


def compile_input_gradient(model, fn):
    """``fn(x, *args) -> values`` as ``call(x, *args) -> (values, d Σ values / dx)`` in numpy (eager:
    TensorFlow runs each op as a compiled kernel already)."""

    def call(x, *args):
        args = [tf.convert_to_tensor(a) for a in args]
        return input_gradient(lambda t: fn(t, *args), x)

    return call


def compile_forward(model, fn):
    """``fn(x, *args) -> tensor`` (or a list of tensors) as ``call(x, *args) -> numpy`` (a tuple of
    arrays for a list), eager."""

    def call(x, *args):
        x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
        outputs = fn(x, *(tf.convert_to_tensor(a) for a in args))
        if isinstance(outputs, (list, tuple)):
            return tuple(output.numpy() for output in outputs)
        return outputs.numpy()

    return call


def _on_device(tensors) -> bool:
    """Whether these tensors, the results of one step, live on an accelerator (a CPU's need no
    copy); they live together, so the first tells."""
    return "CPU" not in (getattr(tensors[0], "device", "") or "CPU")


def results_to_host(losses, td_abs):
    """K updates' losses (K,) and |δ| (K, B) as float32 numpy arrays, from a result per update or
    one for all. On an accelerator both are packed on the device into one (K, 1 + B) array,
    column 0 the losses, and that one array is copied; on a CPU they are host memory already and
    are read as they are (packing them would only cost eager ops)."""
    losses = list(losses) if isinstance(losses, (list, tuple)) else [losses]
    td_abs = list(td_abs) if isinstance(td_abs, (list, tuple)) else [td_abs]
    if _on_device(losses + td_abs):
        stack = tf.stack if len(losses) > 1 else (lambda tensors: tensors[0])
        losses = tf.reshape(tf.cast(stack(losses), tf.float32), (-1, 1))
        td_abs = tf.reshape(tf.cast(stack(td_abs), tf.float32), (losses.shape[0], -1))
        packed = keras.ops.convert_to_numpy(tf.concat([losses, td_abs], axis=-1))
        return packed[:, 0], packed[:, 1:]
    losses = np.asarray(losses, np.float32).reshape(-1)
    return losses, np.asarray(td_abs, np.float32).reshape(len(losses), -1)


def called_directly(function=None, *, any_batch: bool = True):
    """``function`` (a ``tf.function`` of tensors, or of a dict of them) called through one concrete
    graph per signature: the structure, and each argument's shape and dtype. A ``tf.function``'s
    own call looks its graph up from the arguments every time, which cost 0.55 ms of a batch-1
    forward pass's 3 ms on the 2-core CPU (``reduce_retracing``).

    Every argument is a tensor or an array (a list would be taken as a structure of them, a
    Python bool or None as no tensor at all: give those to the ``tf.function`` itself), and its
    first dimension is its batch: with ``any_batch`` that dimension is left open, so one graph
    serves every batch size (for a forward pass, which sums nothing across the batch, the values
    are the same). ``any_batch=False`` keeps a graph per exact shape, for a training run's fixed
    batches: with the batch size open TensorFlow's graph optimiser may order a sum over the batch
    differently (a Double-DQN dueling update's loss moved by 2·10⁻⁷). The key ignores any
    ``tf.device`` scope around the call, which dqnviz never sets."""
    if function is None:
        return functools.partial(called_directly, any_batch=any_batch)
    graphs = {}

    def shape_of(tensor) -> tuple:
        shape = tuple(tensor.shape)
        return (None, *shape[1:]) if shape and any_batch else shape

    def call(*args):
        args = [{k: tf.convert_to_tensor(v) for k, v in a.items()} if isinstance(a, dict) else tf.convert_to_tensor(a)
                for a in _checked(args)]
        key = tuple(tuple((k, shape_of(v), v.dtype) for k, v in a.items()) if isinstance(a, dict)
                    else (shape_of(a), a.dtype) for a in args)
        graph = graphs.get(key)
        if graph is None:  # traced once per signature
            specs = tf.nest.map_structure(lambda t: tf.TensorSpec(shape_of(t), t.dtype), args)
            graph = graphs[key] = function.get_concrete_function(*specs)
        return graph(*args)

    return call


def _checked(args):
    """``args`` of :func:`called_directly`: tensors or arrays, or dicts of them."""
    for value in (v for a in args for v in (a.values() if isinstance(a, dict) else [a])):
        if value is None or isinstance(value, (list, tuple, bool)):
            raise TypeError(f"called_directly takes tensors or arrays (or dicts of them), not {type(value).__name__}")
    return args


def make_predict(model, stacks: bool = False):
    """A compiled ``states -> Q-values`` function reading the model's current weights; with
    ``stacks`` it takes frame stacks (N, history, H, W) and transposes them inside."""

    @called_directly  # a game of Pong is 1,000–3,000 batch-1 calls
    @tf.function(jit_compile=XLA)
    def _predict(states):
        if stacks:
            states = tf.transpose(states, (0, 2, 3, 1))
        return model(states, training=False)

    def predict(states, weights=None, wait=True):  # eager: the result is ready either way
        return _predict(tf.convert_to_tensor(states)).numpy()  # a list of states is one batch

    return predict


def launches_asynchronously() -> bool:
    """Never: the step runs on the calling thread until it is done."""
    return False


class TrainStep:
    """The compiled DQN update for TensorFlow: ``step(batch) -> (loss, td_abs)``."""

    launches_asynchronously = False  # see launches_asynchronously() above

    def __init__(self, online, target, optimizer, loss_fn, double):
        self.online, self.target, self.optimizer = online, target, optimizer
        optimizer.build(online.trainable_variables)
        self.sync_target()

        @called_directly(any_batch=False)
        @tf.function(jit_compile=XLA)
        def step(batch):
            with tf.GradientTape() as tape:
                q = online(batch["states"], training=True)
                q_next_target = target(batch["next_states"], training=False)
                q_next_online = online(batch["next_states"], training=False) if double else q_next_target
                loss, td_abs = loss_fn(q, q_next_online, q_next_target, batch)
            grads = tape.gradient(loss, online.trainable_variables)
            optimizer.apply_gradients(zip(grads, online.trainable_variables))
            return loss, td_abs

        self._step = step

    def __call__(self, batch):
        return self._step(dict(batch))

    @property
    def weights(self):
        return None

    def sync_target(self):
        """θ⁻ ← θ."""
        self.target.set_weights(self.online.get_weights())

    def reload_optimizer(self):
        pass  # the compiled step reads the optimizer's variables themselves

    def write_back(self):
        pass


class FrameBuffer:
    """uint8 frames ``(num_envs, slots, H, W)`` in a ``tf.Variable`` (on the GPU when there is one).

    New frames are staged on the host (``stage``) and assigned slot by slot in place before anyone
    reads the buffer; a sampled batch is gathered and stacked by a compiled function.
    """

    def __init__(self, shape, max_staged: int = 16, frames_per_call: int = 1):
        # frames_per_call: the JAX buffer's (its fused call's shape); every frame is its own assignment here
        self.shape = tuple(shape)
        self.variable = tf.Variable(tf.zeros(self.shape, tf.uint8), trainable=False)
        self.max_staged = max(1, min(max_staged, self.shape[1]))
        self._staged = []

        @called_directly(any_batch=False)  # a call per agent step
        @tf.function
        def write(slot, frames):
            self.variable[:, slot].assign(frames)

        @called_directly(any_batch=False)
        @tf.function
        def gather(envs, index, keep):
            envs = tf.broadcast_to(envs[:, None], tf.shape(index))
            states = tf.gather_nd(self.variable, tf.stack([envs, index], axis=-1))  # (B, history, H, W)
            states = tf.where(keep[:, :, None, None], states, tf.zeros_like(states))
            return tf.transpose(states, (0, 2, 3, 1))

        self._write, self._gather = write, gather

    @property
    def staged_count(self) -> int:
        """Frames staged on the host, not yet written."""
        return len(self._staged)

    def stage(self, slot, frames):
        self._staged.append((int(slot), np.asarray(frames, np.uint8)))
        if len(self._staged) >= self.max_staged:
            self.flush()

    def flush(self):
        for slot, frames in self._staged:
            self._write(tf.constant(slot, tf.int32), tf.convert_to_tensor(frames))
        self._staged = []

    def gather(self, envs, index, keep):
        self.flush()
        return self._gather(tf.constant(np.asarray(envs, np.int32)), tf.constant(np.asarray(index, np.int32)),
                            tf.constant(np.asarray(keep, bool)))

    def to_numpy(self):
        self.flush()
        return self.variable.numpy()


def make_q_and_gradient(model, run):
    """A compiled ``x -> (Q(x), dQ(x, a*)/dx)`` with a* = argmax Q, reading the model's current weights."""

    @called_directly
    @tf.function(jit_compile=XLA)
    def q_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            q = run(x)
            best = tf.one_hot(tf.argmax(q, axis=-1), tf.shape(q)[-1], dtype=q.dtype)
            target = tf.reduce_sum(q * tf.stop_gradient(best))
        return q, tape.gradient(target, x)

    def call(x):
        q, gradient = q_and_gradient(tf.convert_to_tensor(np.asarray(x, np.float32)))
        return q.numpy(), gradient.numpy()

    return call
