"""JAX backend: input gradients with ``jax.grad`` and a DQN step jitted over ``stateless_call``.

The learner keeps the online network's weights, the target network's weights and the optimizer
state as JAX arrays between steps, so one update is one jitted call with no host round trip for
the weights. ``write_back`` copies them into the Keras variables when someone needs the model
itself (a snapshot, an analysis).

With the replay frames on the device (:class:`FrameBuffer`), ``train_on_frames`` does all of an
iteration's updates in one jitted call: it writes the frames staged since the last call, then
makes the updates one after another, stacking each batch's states from the frames. The host
sends two small index arrays and the new frames, and reads ``|δ|`` back once. On a GPU that call
is launched from a worker thread (:func:`launch_thread`), so the loop receives the next states
while the kernels are launched.
"""

import contextlib
import functools
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from dqnviz.config import env_switch

def eagerly(fn):
    """``fn()`` computed at once, also while ``jax.jit`` traces, where every operation is otherwise
    staged into the trace, constants' too (``jax.ensure_compile_time_eval``)."""
    with jax.ensure_compile_time_eval():
        return fn()


def has_accelerator() -> bool:
    """Whether JAX computes on an accelerator (a GPU or TPU), not the host's CPU."""
    return jax.default_backend() != "cpu"


# XLA replays a run of kernels as one CUDA graph (a command buffer) only when the run holds at
# least ``xla_gpu_graph_min_graph_size`` of them, 5 by default. In the DQN update the runs between
# two convolutions are shorter, so each of their kernels was launched from the host on its own, and
# the update is bound by launches: on an H100, eight batch-64 updates in one call took 5.6 ms of
# host time to dispatch and 6.3 ms in all. With 1 they took 4.8 and 5.3 ms (and two batch-256
# updates 2.3 instead of 2.7; benchmarks/learner.py, benchmarks/results/h100-2026-11-26b/).
# A GPU option; a CPU ignores it.
GPU_COMPILER_OPTIONS = {"xla_gpu_graph_min_graph_size": 1}


@functools.cache
def compiler_options() -> dict:
    """:data:`GPU_COMPILER_OPTIONS` if this XLA knows them, else ``{}`` (options come and go
    between XLA versions, and an unknown one is an error at compile time; ``jax.jit`` takes
    them from JAX 0.4.36 on). ``DQNVIZ_COMPILER_OPTIONS=0`` turns them off, for an A/B."""
    if not env_switch("DQNVIZ_COMPILER_OPTIONS", True):
        return {}
    try:
        jax.jit(lambda x: x + 1, compiler_options=GPU_COMPILER_OPTIONS).lower(np.float32(0)).compile()
    except Exception:  # noqa: BLE001 - XLA reports an unknown option as a runtime error
        return {}
    return dict(GPU_COMPILER_OPTIONS)


def fewer_passes() -> bool:
    """Whether the update runs the network in fewer, bigger forward passes.

    Two passes are merged: a fused call's K batches' target values Q(s′, ·; θ⁻) in one pass over
    K·B next states (θ⁻ is fixed within the call), and Double DQN's online passes over s and s′
    in one pass over 2·B states (the argmax over Q(s′, ·; θ) carries no gradient). The updates
    are the same. On a GPU the update is bound by kernel launches (0.7 ms of host time per
    batch-64 update on an H100), and a merged pass launches the kernels of one, while more rows
    cost the GPU little (the issue measured a batch-32 update at 0.87 ms and a batch-512 one at
    1.16 ms). On a CPU the cost follows the rows: their activations leave the cache, and the
    merged online pass runs its backward pass over 2·B rows. Eight batch-64 Double-DQN dueling
    updates took 1.53 s instead of 0.66 s on the 2-core development machine (the target pass
    alone: 0.86–0.90 s instead of 0.66–0.71), so fewer passes are used on accelerators only.
    ``DQNVIZ_FEWER_PASSES=1`` or ``=0`` overrides.
    """
    return env_switch("DQNVIZ_FEWER_PASSES", jax.default_backend() != "cpu")


def launch_thread() -> bool:
    """Whether the fused update is launched from a worker thread, so that the loop goes on meanwhile.

    On a GPU, a jitted call returns only once its kernels are launched: the host spends as long
    launching an iteration's updates as the GPU spends running them (5.6 ms of 6.3 for eight
    batch-64 updates on an H100, ``benchmarks/learner.py``), and the loop's own host work waited
    behind it. JAX releases the GIL while it launches, and ale-py while it waits for the emulators,
    so from a worker thread the launches overlap the loop's numpy work (receiving the states,
    adding them to the replay memory). A CPU's XLA already runs the call on its own threads and
    returns at once, so there the worker is used only when ``DQNVIZ_LAUNCH_THREAD=1`` asks for it
    (``=0`` turns it off on a GPU, for an A/B).
    """
    return env_switch("DQNVIZ_LAUNCH_THREAD", jax.default_backend() != "cpu")


def launches_asynchronously(threaded: bool | None = None) -> bool:
    """Whether the fused update returns before its kernels are launched: launched from the worker
    thread (``threaded``, by default :func:`launch_thread`), or on a CPU, whose XLA runs the call
    on its own threads."""
    return (launch_thread() if threaded is None else threaded) or not has_accelerator()


def matmul_convolutions() -> bool:
    """Whether the learner's and the actor's compiled calls compute each Conv2D as one matrix product.

    A convolution with kernel k and stride s becomes, on channels-last inputs, a reshape of the
    input into s×s blocks (space to depth: (H, W, C) → (H/s, W/s, s·s·C)), the ⌈k/s⌉² shifted
    views of that concatenated into patches, and ``patches @ K`` with the kernel reordered to
    (⌈k/s⌉² · s² · C, filters), its taps past k zero:

        y[b, i, j, f] = Σ_{u,v,c} x[b, s·i + u, s·j + v, c] · K[u, v, c, f]

    is the same sum in another order (max |Δ| 4e-6 on the Nature network's layers). Why on an
    accelerator (its default), and not on a CPU:

    * On a GPU, XLA launches a convolution as a cuDNN call that cannot join a CUDA graph (its
      command buffers take fusions and cuBLAS matrix products, not convolutions), so each of an
      update's 8 to 14 convolutions (forward, target and backward passes) splits the graph, and the
      update is bound by the launches (0.66 ms for one batch-64 update on an H100, where four
      times the rows cost only 1.7 times as much). Matrix products and the reshapes around them
      are graph commands, so a fused call's updates can run as one graph.
    * On a CPU there is no graph to keep whole, and the products gain nothing measurable: on the
      2-core development machine, a fused call of eight batch-64 Double-DQN dueling updates took
      694–745 ms instead of 742–779 (``benchmarks/learner.py``), but the training loop ran at
      105 and 101 agent steps/s instead of 118 and 95 with one environment, and at 117 and 119
      instead of 132 and 123 with eight (``benchmarks/throughput.py``), so a CPU keeps XLA's
      convolutions.

    Only the compiled training and acting calls use it; the model, its snapshots and the analysis
    keep Keras's own Conv2D. ``DQNVIZ_MATMUL_CONVOLUTIONS=1`` or ``=0`` overrides, for an A/B.
    """
    return env_switch("DQNVIZ_MATMUL_CONVOLUTIONS", jax.default_backend() != "cpu")


def conv_as_matmul(x, kernel, strides):
    """A 'valid' 2-D convolution of channels-last ``x`` (B, H, W, C) with ``kernel`` (kh, kw, C, F)
    as one matrix product (see :func:`matmul_convolutions`)."""
    kernel = jnp.asarray(kernel)  # a Keras variable: jax before 0.5 takes it in no jnp function
    (kh, kw, channels, filters), (sh, sw) = kernel.shape, strides
    batch, height, width, _ = x.shape
    out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
    taps_h, taps_w = -(-kh // sh), -(-kw // sw)  # kernel taps per block, after padding k up to a multiple of s
    blocks_h, blocks_w = out_h + taps_h - 1, out_w + taps_w - 1
    # the input's blocks: crop (or zero-pad: padded pixels meet only zero taps) to whole blocks
    x = x[:, :blocks_h * sh, :blocks_w * sw]
    x = jnp.pad(x, ((0, 0), (0, blocks_h * sh - x.shape[1]), (0, blocks_w * sw - x.shape[2]), (0, 0)))
    x = x.reshape(batch, blocks_h, sh, blocks_w, sw, channels).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(batch, blocks_h, blocks_w, sh * sw * channels)
    kernel = jnp.pad(kernel, ((0, taps_h * sh - kh), (0, taps_w * sw - kw), (0, 0), (0, 0)))
    kernel = kernel.reshape(taps_h, sh, taps_w, sw, channels, filters).transpose(0, 2, 1, 3, 4, 5)
    patches = jnp.concatenate([x[:, u:u + out_h, v:v + out_w] for u in range(taps_h) for v in range(taps_w)],
                              axis=-1)
    depth = taps_h * taps_w * sh * sw * channels
    y = jnp.dot(patches.reshape(batch * out_h * out_w, depth), kernel.reshape(depth, filters))
    return y.reshape(batch, out_h, out_w, filters)


def _plain_conv2d_layers(model):
    """The model's Conv2D layers (nested models included) that :func:`conv_as_matmul` computes
    exactly: valid padding, channels last, no dilation, no groups."""
    import keras

    pending = list(reversed(model.layers))  # depth first, in the model's order
    while pending:
        layer = pending.pop()
        if isinstance(layer, keras.Model):
            pending.extend(reversed(layer.layers))
        elif (type(layer) is keras.layers.Conv2D and layer.padding == "valid" and layer.groups == 1
                and layer.data_format == "channels_last" and tuple(layer.dilation_rate) == (1, 1)):
            yield layer


# Held while layers compute as matrix products: the learner's call is traced on the launch thread
# while the loop may trace an acting call of the same model, and one must not take the other's
# layers back mid-trace.
_MATMUL_TRACE_LOCK = threading.RLock()


@contextlib.contextmanager
def convolutions_as_matmuls(*models, enabled: bool | None = None):
    """While tracing a compiled call: the models' plain Conv2D layers compute with :func:`conv_as_matmul`.

    The layers get an instance attribute ``convolution_op`` (the method Keras's Conv2D calls), and
    lose it on exit, so a call traced afterwards (an analysis) uses Keras's convolution again.
    """
    enabled = matmul_convolutions() if enabled is None else enabled
    if not enabled:
        yield
        return
    with _MATMUL_TRACE_LOCK:
        # a layer already computing this way (a call traced inside another) is left to its owner
        layers = [layer for model in models for layer in _plain_conv2d_layers(model)
                  if "convolution_op" not in layer.__dict__]
        for layer in layers:
            object.__setattr__(layer, "convolution_op", functools.partial(_layer_conv_as_matmul, layer))
        try:
            yield
        finally:
            for layer in layers:
                layer.__dict__.pop("convolution_op", None)


def _with_matmul_convolutions(*models):
    """Decorator: the function is traced inside :func:`convolutions_as_matmuls` of ``models``."""
    def decorate(fn):
        @functools.wraps(fn)
        def traced(*args, **kwargs):
            with convolutions_as_matmuls(*models):
                return fn(*args, **kwargs)
        return traced
    return decorate


def _layer_conv_as_matmul(layer, inputs, kernel):
    return conv_as_matmul(inputs, kernel, tuple(layer.strides))


@functools.cache
def _launcher() -> ThreadPoolExecutor:
    """One worker thread for every learner: calls launched from it run in the order submitted."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="dqnviz-launch")


class _Later:
    """Output ``index`` of a call launched on the worker thread; ``np.asarray`` waits for it."""

    def __init__(self, future: Future, index: int):
        self.future, self.index = future, index

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.future.result()[self.index], dtype=dtype)


def _jit(fn, **options):
    """``jax.jit`` with :func:`compiler_options`: for the learner's and the actor's hot calls."""
    if compiler_options():  # a JAX before 0.4.36 has no such keyword at all
        options["compiler_options"] = compiler_options()
    return jax.jit(fn, **options)


def input_gradient(fn, x):
    """Return ``(fn(x), d sum(fn(x)) / dx)`` as numpy arrays; ``x`` is treated as float32."""
    x = jnp.asarray(np.asarray(x, dtype=np.float32))

    def total(inputs):
        values = fn(inputs)
        return jnp.sum(values), values

    (_, values), gradient = jax.value_and_grad(total, has_aux=True)(x)
    return np.asarray(values), np.asarray(gradient)


def _batch_padded(call):
    """``call(x, *args) -> tuple of arrays`` run on batches padded to a size it was already compiled for.

    ``jax.jit`` compiles once per input shape, so an analysis's last, shorter batch would cost a
    second compilation per layer. A batch of ``n`` rows is padded (by repeating its last row, so
    that index arguments stay valid) to the smallest size ``s`` seen before with ``n <= s <= 4n``;
    rows are independent (inference mode), so the first ``n`` rows of the result are the batch's.
    """
    sizes = set()

    def padded(x, *args):
        count = len(x)
        size = min((s for s in sizes if count <= s <= 4 * count), default=count)
        sizes.add(size)
        if size > count:
            x, *args = (np.concatenate([a, np.repeat(a[-1:], size - count, axis=0)]) for a in (x, *args))
        outputs = call(jnp.asarray(x, jnp.float32), *(jnp.asarray(a) for a in args))
        return tuple(np.asarray(output)[:count] for output in outputs)

    return padded


def _stateless(model, fn):
    """``fn`` with the model's variables as an argument: ``(values, *inputs) -> fn(*inputs)``, so a
    jitted analysis reads the weights at each call instead of baking them in as constants."""
    import keras

    variables = list(model.variables)

    def call(values, *inputs):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(*inputs)

    return variables, call


def compile_input_gradient(model, fn):
    """``fn(x, *args) -> values`` (one scalar per example, any ``args`` of one row per example)
    jitted once as ``call(x, *args) -> (values, d Σ values / dx)`` in numpy, reading the model's
    current weights at each call."""
    variables, stateless = _stateless(model, fn)

    def total(values, x, *args):
        outputs = stateless(values, x, *args)
        return jnp.sum(outputs), outputs

    gradient = jax.jit(jax.value_and_grad(total, argnums=1, has_aux=True))

    def call(x, *args):
        (_, values), grad = gradient([v.value for v in variables], x, *args)
        return values, grad

    return _batch_padded(call)


def compile_forward(model, fn):
    """``fn(x, *args) -> tensor`` (or a list of tensors) jitted once as ``call(x, *args) -> numpy``
    (a tuple of arrays for a list), reading the model's current weights at each call."""
    variables, stateless = _stateless(model, fn)
    forward = jax.jit(stateless)
    several = []  # whether fn returns a list: known at the first call

    def call(x, *args):
        outputs = forward([v.value for v in variables], x, *args)
        if not several:
            several.append(isinstance(outputs, (list, tuple)))
        return tuple(outputs) if several[0] else (outputs,)

    padded = _batch_padded(call)

    def run(x, *args):
        outputs = padded(x, *args)
        return outputs if several[0] else outputs[0]

    return run


def make_predict(model, stacks: bool = False):
    """A jitted ``states -> Q-values`` function that always reads the model's current weights.

    With ``stacks`` it takes frame stacks (N, history, H, W) and makes them channels-last states
    on the device.
    """

    @_jit
    def _predict(trainable, non_trainable, states):
        if stacks:
            states = jnp.transpose(states, (0, 2, 3, 1))
        with convolutions_as_matmuls(model):
            q, _ = model.stateless_call(trainable, non_trainable, states)
        return q

    def predict(states, weights=None, wait=True):
        trainable, non_trainable = weights if weights is not None else (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
        )
        q = _predict(trainable, non_trainable, states)  # dispatched; runs while we go on
        return np.asarray(q) if wait else q

    return predict


class TrainStep:
    """The compiled DQN update for JAX: ``step(batch) -> (loss, td_abs)``.

    ``loss_fn(q, q_next_online, q_next_target, batch) -> (loss, td_abs)`` holds the maths; here we
    only differentiate it with respect to the online weights and apply the optimizer, all inside
    one ``jax.jit``.
    """

    def __init__(self, online, target, optimizer, loss_fn, double, merge_passes: bool | None = None,
                 threaded: bool | None = None):
        self.online, self.target, self.optimizer = online, target, optimizer
        merge_passes = fewer_passes() if merge_passes is None else merge_passes
        self.threaded = launch_thread() if threaded is None else threaded
        self._in_flight = None  # the Future of a fused call launched on the worker thread
        # (updates, staged frames) of each fused call made: each is a compilation of the call
        self.call_shapes: set[tuple[int, int]] = set()
        optimizer.build(online.trainable_variables)
        self._trainable = [jnp.copy(v.value) for v in online.trainable_variables]
        self._non_trainable = [jnp.copy(v.value) for v in online.non_trainable_variables]
        self._optimizer_state = [jnp.copy(v.value) for v in optimizer.variables]
        self.sync_target()

        def loss_and_aux(trainable, non_trainable, batch, q_next_target):
            if double and merge_passes:  # Q(s, ·; θ) and Q(s′, ·; θ) in one pass (see fewer_passes)
                size = batch["states"].shape[0]
                both = jnp.concatenate([batch["states"], batch["next_states"]])
                q_both, non_trainable = online.stateless_call(trainable, non_trainable, both)
                q, q_next_online = q_both[:size], jax.lax.stop_gradient(q_both[size:])
            else:
                q, non_trainable = online.stateless_call(trainable, non_trainable, batch["states"])
                if double:
                    q_next_online, _ = online.stateless_call(trainable, non_trainable, batch["next_states"])
                else:
                    q_next_online = q_next_target
            loss, td_abs = loss_fn(q, q_next_online, q_next_target, batch)
            return loss, (td_abs, non_trainable)

        grad_fn = jax.value_and_grad(loss_and_aux, has_aux=True)

        def target_values(target_trainable, target_non_trainable, next_states):
            """Q(s', ·; θ⁻), outside the gradient: θ⁻ is not learned."""
            return target.stateless_call(target_trainable, target_non_trainable, next_states)[0]

        @_jit
        @_with_matmul_convolutions(online, target)
        def step(trainable, non_trainable, optimizer_state, target_trainable, target_non_trainable, batch):
            q_next_target = target_values(target_trainable, target_non_trainable, batch["next_states"])
            (loss, (td_abs, non_trainable)), grads = grad_fn(trainable, non_trainable, batch, q_next_target)
            trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, trainable)
            return loss, td_abs, trainable, non_trainable, optimizer_state

        self._step = step

        @_with_matmul_convolutions(online, target)
        def train_batches(trainable, non_trainable, optimizer_state, target_trainable, target_non_trainable,
                          frames, staged_frames, staged_slots, ints, floats):
            frames = _write_staged(frames, staged_frames, staged_slots)
            count, size = ints.shape[:2]
            if merge_passes:
                # θ⁻ is fixed within a call, so Q(s', ·; θ⁻) for all K·B next states is one
                # forward pass (see fewer_passes), and their states one gather. Double DQN's
                # argmax needs θ as it is at each update, so that pass stays per batch.
                everything = _unpack_batch(frames, ints.reshape(count * size, -1), floats.reshape(count * size, -1))
                all_targets = target_values(target_trainable, target_non_trainable, everything["next_states"])

            # A Python loop, unrolled when traced: XLA's CPU backend runs convolutions inside a
            # lax.scan five times slower than the same steps unrolled (6.3 s against 1.2 s for
            # four batch-128 updates on the 2-core development machine).
            losses, td_abs = [], []
            for k in range(count):
                if merge_passes:
                    rows = slice(k * size, (k + 1) * size)
                    batch = {key: value[rows] for key, value in everything.items()}
                    q_next_target = all_targets[rows]
                else:
                    batch = _unpack_batch(frames, ints[k], floats[k])
                    q_next_target = target_values(target_trainable, target_non_trainable, batch["next_states"])
                (loss, (td, non_trainable)), grads = grad_fn(trainable, non_trainable, batch, q_next_target)
                trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, trainable)
                losses.append(loss)
                td_abs.append(td)
            losses, td_abs = jnp.stack(losses), jnp.stack(td_abs)
            return losses, td_abs, trainable, non_trainable, optimizer_state, frames

        self._train_batches = _jit(train_batches, donate_argnums=(5,))

    def train_on_frames(self, buffer, transitions):
        """K updates on the batches ``transitions`` (a list of :meth:`ReplayMemory.sample_transitions`
        results) with states stacked from ``buffer`` on the device: one jitted call, not awaited.

        Returns ``(losses, td_abs)`` shaped (K,) and (K, B): device arrays, or with :attr:`threaded`
        stand-ins that ``np.asarray`` turns into them. The call is then launched from the worker
        thread (see :func:`launch_thread`); the weights and ``buffer.array`` are its outputs, and
        whoever reads them first waits for the launch (not for the device).
        """
        staged_frames, staged_slots = buffer.take_staged(for_call=True)  # here: the loop stages the next frames
        arguments = self._call_arguments(buffer, staged_frames, staged_slots, transitions)
        self.call_shapes.add((len(transitions), len(staged_slots)))
        if not self.threaded:
            (losses, td_abs, self._trainable, self._non_trainable, self._optimizer_state,
             buffer.array) = self._train_batches(*arguments)
            return losses, td_abs
        self._in_flight = _launcher().submit(self._train_batches, *arguments)
        buffer.array_from(self._in_flight, 5)
        return _Later(self._in_flight, 0), _Later(self._in_flight, 1)

    def compiled_program(self, buffer, transitions) -> str:
        """The optimized HLO of the fused call that :meth:`train_on_frames` would make for
        ``transitions`` (with the buffer's ``frames_per_call`` staged frames per environment, as the
        run's calls have), compiled for this device but not run: what ``benchmarks/learner.py
        --program`` counts to see how many launches an update costs (command buffers, that is CUDA
        graphs, and what falls outside them)."""
        num_envs, _, height, width = buffer.array.shape
        staged = buffer.frames_per_call
        staged_frames = jax.ShapeDtypeStruct((num_envs, staged, height, width), jnp.uint8)
        staged_slots = jax.ShapeDtypeStruct((staged,), jnp.int32)
        arguments = self._call_arguments(buffer, staged_frames, staged_slots, transitions)
        return self._train_batches.lower(*arguments).compile().as_text()

    def _call_arguments(self, buffer, staged_frames, staged_slots, transitions) -> tuple:
        """The fused call's arguments, in ``train_batches``'s order (argument 5, the frames, donated)."""
        ints, floats = pack_transitions(transitions)
        return (self.trainable, self.non_trainable, self.optimizer_state, self.target_trainable,
                self.target_non_trainable, buffer.array, staged_frames, staged_slots, ints, floats)

    def _settle(self):
        """Take the weights and optimizer state from the call in flight, once it is launched."""
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            _, _, self._trainable, self._non_trainable, self._optimizer_state, _ = future.result()

    @property
    def trainable(self):
        self._settle()
        return self._trainable

    @property
    def non_trainable(self):
        self._settle()
        return self._non_trainable

    @property
    def optimizer_state(self):
        self._settle()
        return self._optimizer_state

    def __call__(self, batch):
        loss, td_abs, self._trainable, self._non_trainable, self._optimizer_state = self._step(
            self.trainable, self.non_trainable, self.optimizer_state,
            self.target_trainable, self.target_non_trainable, batch,
        )
        return loss, td_abs

    @property
    def launches_asynchronously(self) -> bool:
        """See :func:`launches_asynchronously`, with this step's own launch thread setting."""
        return launches_asynchronously(self.threaded)

    @property
    def weights(self):
        """The online weights as ``(trainable, non_trainable)`` for ``make_predict``."""
        return self.trainable, self.non_trainable

    def sync_target(self):
        """θ⁻ ← θ (the arrays are immutable, so sharing them is a copy)."""
        if hasattr(self, "_trainable"):
            self.target_trainable = list(self.trainable)
            self.target_non_trainable = list(self.non_trainable)
        # Keras variables get their own buffers: Keras may donate a variable's buffer to a jitted
        # call (model.predict does), which would delete an array we still hold.
        for variable, value in zip(self.target.trainable_variables, self.target_trainable):
            variable.assign(jnp.copy(value))

    def reload_optimizer(self):
        """Read the optimizer state back from its Keras variables (after they were assigned)."""
        self._settle()  # a call in flight must not overwrite it afterwards
        self._optimizer_state = [jnp.copy(v.value) for v in self.optimizer.variables]

    def write_back(self):
        """Copy the learner's arrays into the Keras variables of the online model and optimizer."""
        for variables, values in ((self.online.trainable_variables, self.trainable),
                                  (self.online.non_trainable_variables, self.non_trainable),
                                  (self.optimizer.variables, self.optimizer_state)):
            for variable, value in zip(variables, values):
                variable.assign(jnp.copy(value))


def results_to_host(losses, td_abs):
    """K updates' losses (K,) and |δ| (K, B) as float32 numpy arrays, from a result per update
    or one for all: one ``jax.device_get`` of both (it starts every copy, then waits once), where
    reading each would be two waits. A :class:`_Later` (a call launched on the worker thread)
    is waited for until launched, not until done."""

    def arrays(values):
        values = values if isinstance(values, (list, tuple)) else [values]
        return [v.future.result()[v.index] if isinstance(v, _Later) else v for v in values]

    losses, td_abs = jax.device_get((arrays(losses), arrays(td_abs)))
    losses = np.asarray(losses, np.float32).reshape(-1)
    return losses, np.asarray(td_abs, np.float32).reshape(len(losses), -1)


def pack_transitions(transitions):
    """K batches of :meth:`ReplayMemory.sample_transitions` as two arrays, one transfer each:
    int32 (K, B, 2 + 4·history) = env, action, state_index, state_keep, next_index, next_keep, and
    float32 (K, B, 3) = return, discount, importance weight."""
    ints = np.stack([np.concatenate([
        t["envs"][:, None], t["actions"][:, None], t["state_index"], t["state_keep"], t["next_index"], t["next_keep"],
    ], axis=1).astype(np.int32) for t in transitions])
    floats = np.stack([np.stack([t["returns"], t["discounts"], t["weights"]], axis=1) for t in transitions])
    return ints, floats.astype(np.float32)


def _unpack_batch(frames, ints, floats):
    history = (ints.shape[-1] - 2) // 4
    envs, columns = ints[:, 0], [ints[:, 2 + k * history:2 + (k + 1) * history] for k in range(4)]
    return {
        "states": _gather_states(frames, envs, columns[0], columns[1] > 0),
        "actions": ints[:, 1],
        "returns": floats[:, 0],
        "discounts": floats[:, 1],
        "next_states": _gather_states(frames, envs, columns[2], columns[3] > 0),
        "weights": floats[:, 2],
    }


def _gather_states(frames, envs, index, keep):
    states = frames[envs[:, None], index]  # (B, history, H, W)
    states = jnp.where(keep[:, :, None, None], states, jnp.zeros((), states.dtype))
    return jnp.transpose(states, (0, 2, 3, 1))


def _write_staged(frames, staged_frames, staged_slots):
    """frames[:, slots[p]] ← staged[:, p]. The staged frames of one call go to distinct slots (at
    most a ring's worth, see FrameBuffer); the padding repeats the last slot with its own frame."""
    if staged_slots.shape[0] == 0:
        return frames
    return frames.at[:, staged_slots].set(staged_frames)


def _power_of_two_at_least(count: int) -> int:
    """The smallest power of two ≥ ``count`` (1 for 0 or 1): the sizes staged frames are padded to."""
    return 1 << max(0, count - 1).bit_length()


class FrameBuffer:
    """uint8 frames ``(num_envs, slots, H, W)`` kept on the accelerator.

    New frames are staged on the host (``stage``) and written together: by the learner's next
    ``train_on_frames`` call, or here once ``max_staged`` have gathered or before anyone reads the
    buffer. Writes are jitted with the buffer donated, so XLA updates it in place instead of
    copying gigabytes; a sampled batch is gathered and stacked on the device.
    """

    def __init__(self, shape, max_staged: int = 16, frames_per_call: int = 1):
        self.shape = tuple(shape)
        # the frames the learner's fused call takes in the steady state: it is given at least as many
        self.frames_per_call = _power_of_two_at_least(int(frames_per_call))
        self._launched = None  # (Future, output index) of a call that returns the new buffer
        self.array = jnp.zeros(self.shape, jnp.uint8)
        # at most one ring's worth, so that the frames written in one call go to distinct slots
        self.max_staged = max(1, min(max_staged, self.shape[1]))
        self._staged_frames, self._staged_slots = [], []
        self._newest_written = None  # (frames, slot) of the newest slot taken to be written
        self._write = jax.jit(_write_staged, donate_argnums=0)
        self._gather = jax.jit(_gather_states)

    @property
    def array(self):
        """The frames on the device (waiting, if a call launched on the worker thread returns them)."""
        if self._launched is not None:
            (future, index), self._launched = self._launched, None
            self._array = future.result()[index]
        return self._array

    @array.setter
    def array(self, value):
        self._launched, self._array = None, value

    def array_from(self, future: Future, index: int) -> None:
        """The buffer is now output ``index`` of the call ``future`` launches (it was donated to it)."""
        self._launched = (future, index)

    @property
    def staged_count(self) -> int:
        """Frames staged on the host, not yet written."""
        return len(self._staged_slots)

    def stage(self, slot, frames):
        self._staged_frames.append(np.asarray(frames, np.uint8))
        self._staged_slots.append(int(slot))
        if len(self._staged_slots) >= self.max_staged:
            self.flush()

    def take_staged(self, for_call: bool = False):
        """The staged frames (num_envs, P, H, W) and their slots (P,), now the caller's to write.

        P is padded to a power of two by repeating the last frame (writing it twice writes the
        same value), so a compiled call sees at most a handful of shapes. For the learner's fused
        call (``for_call``) P is exactly :attr:`frames_per_call`, the replay memory's frames added
        between two updates (⌈f / n⌉, to a power of two), so the call keeps one shape all run and is
        compiled once (30 s or more of a GPU's time for the run's largest call): more frames staged
        (after a phase that did not learn, or updates that waited for the memory to hold a batch)
        and the older ones are written here first, by the buffer's own small call; none, and the
        newest frames written are given again (the same values).
        """
        if for_call:
            extra = len(self._staged_slots) - self.frames_per_call
            if extra > 0:
                newest = self._staged_frames[extra:], self._staged_slots[extra:]
                del self._staged_frames[extra:], self._staged_slots[extra:]
                self.flush()
                self._staged_frames, self._staged_slots = newest
            elif not self._staged_slots and self._newest_written is not None:
                self._staged_frames, self._staged_slots = [self._newest_written[0]], [self._newest_written[1]]
        if self._staged_slots:
            self._newest_written = (self._staged_frames[-1], self._staged_slots[-1])
            size = self.frames_per_call if for_call else _power_of_two_at_least(len(self._staged_slots))
            padding = size - len(self._staged_slots)
            self._staged_frames += self._staged_frames[-1:] * padding
            self._staged_slots += self._staged_slots[-1:] * padding
            frames = np.stack(self._staged_frames, axis=1)
        else:
            frames = np.zeros((self.shape[0], 0) + self.shape[2:], np.uint8)
        slots = np.asarray(self._staged_slots, np.int32)
        self._staged_frames, self._staged_slots = [], []
        return frames, slots

    def flush(self):
        if self._staged_slots:
            self.array = self._write(self.array, *self.take_staged())

    def gather(self, envs, index, keep):
        self.flush()
        return self._gather(self.array, jnp.asarray(envs, jnp.int32), jnp.asarray(index, jnp.int32), jnp.asarray(keep))

    def to_numpy(self):
        self.flush()
        return np.asarray(self.array)


def make_q_and_gradient(model, run):
    """A jitted ``x -> (Q(x), dQ(x, a*)/dx)`` with a* = argmax Q, reading the model's current weights.

    ``run`` maps float inputs through the model's layers (see ``dqnviz.analysis``), so uint8
    models are differentiated with respect to the pixel values.
    """
    variables, stateless = _stateless(model, run)

    def q_and_gradient(values, x):
        def target(x):
            q = stateless(values, x)
            best = jax.nn.one_hot(jnp.argmax(q, axis=-1), q.shape[-1], dtype=q.dtype)
            return jnp.sum(q * jax.lax.stop_gradient(best)), q

        (_, q), gradient = jax.value_and_grad(target, has_aux=True)(x)
        return q, gradient

    compiled = jax.jit(q_and_gradient)

    def call(x):
        q, gradient = compiled([v.value for v in variables], jnp.asarray(x, jnp.float32))
        return np.asarray(q), np.asarray(gradient)

    return call
