"""The one place where code differs per Keras backend.

Everything else in dqnviz is written once with ``keras.ops``. Two things cannot be:

* gradients with respect to a model's *input* (for guided backprop and saliency), and
* the compiled DQN training step (``tf.function``, XLA-compiled on a GPU or under
  ``DQNVIZ_XLA=1``; ``jax.jit`` over ``stateless_call``).

Both backend modules, :mod:`dqnviz.backend.jax` and :mod:`dqnviz.backend.tensorflow`, expose the
same eleven names, and this package gives those of the backend Keras runs, with ``BACKEND`` (its
name):

``input_gradient(fn, x) -> (values, gradient)``
    ``values = fn(x)`` is a 1-D tensor (one scalar per example); ``gradient`` is
    ``d sum(values) / d x`` as a numpy array shaped like ``x``.

``compile_input_gradient(model, fn) -> call(x, *args) -> (values, gradient)``
    the same, for a ``fn(x, *args)`` whose per-call data (filter indices, positions, actions:
    one row per example) are arguments, compiled once (``jax.jit``, the model's variables
    passed at each call) so that an analysis reuses it across batches, filters and calls.

``compile_forward(model, fn) -> call(x, *args) -> numpy``
    likewise for forward passes.

``TrainStep(online, target, optimizer, loss_fn, double) -> step``
    the compiled DQN update, a stateful object: ``step(batch) -> (loss, td_abs)`` updates the
    online model's weights. ``loss_fn(q, q_next_online, q_next_target, batch) -> (loss, td_abs)``
    is pure ``keras.ops`` maths; ``double`` adds Q(s′, ·; θ) for Double DQN's argmax. It also has
    ``weights`` (what ``make_predict`` takes), ``sync_target()`` (θ⁻ ← θ), ``reload_optimizer()``,
    ``write_back()`` (the weights into the Keras variables) and ``launches_asynchronously``
    (whether a call returns before the host has launched its work: JAX from its worker thread or
    on a CPU; not TensorFlow, whose step runs on the calling thread). The JAX step takes
    ``merge_passes`` and ``threaded`` too (None: the machine's default, see
    :func:`dqnviz.backend.jax.fewer_passes` and :func:`dqnviz.backend.jax.launch_thread`), and has
    ``train_on_frames(frame_buffer, transitions) -> (losses, td_abs)``: K updates in one jitted
    call, their states stacked from a ``FrameBuffer`` inside it. Without it (TensorFlow) the
    learner stacks each batch with the replay memory and calls ``step(batch)``.

``results_to_host(losses, td_abs) -> (losses (K,), td_abs (K, B))``
    the results of K updates (a result per update, or one for all) as float32 numpy arrays,
    read from the device in one copy.

``launches_asynchronously() -> bool``
    whether the fused update returns before its work is launched (``TrainStep``'s attribute of the
    same name, for the machine's default settings).

``make_predict(model, stacks=False) -> predict(states, weights=None, wait=True)``
    compiled Q-values for acting; with ``stacks`` from frame stacks (N, history, H, W); without
    ``wait`` it may return before the device is done (``np.asarray`` waits).

``make_q_and_gradient(model, run) -> call(x) -> (Q, dQ(x, argmax Q)/dx)``
    one compiled pass for recording with gradient saliency.

``eagerly(fn) -> fn()``
    ``fn()`` computed at once on concrete values, also while a compiled function is being traced
    (TensorFlow's ``tf.init_scope``, JAX's ``ensure_compile_time_eval``): for probing
    what a model's activation function computes (:mod:`dqnviz.analysis.relu`).

``has_accelerator() -> bool``
    whether the backend computes on a GPU (or TPU), not the host's CPU: on the CPU the
    "accelerator's" memory (``--device-replay``'s frames) is the host's.

``FrameBuffer(shape)``
    the replay memory's uint8 frames kept on the accelerator (``--device-replay``): ``stage(slot,
    frames)`` (written with the next update, or by ``flush()``), ``gather(envs, index, keep)`` →
    stacked states on the device, ``to_numpy()``.

Keras reads ``KERAS_BACKEND`` on its first import, and :mod:`dqnviz.backend.choice` sets it: so
that importing that module (which runs this package first) imports no Keras, this package imports
Keras and the backend's module only when one of the names above is first asked for.
"""

_NAMES = ("FrameBuffer", "TrainStep", "compile_forward", "compile_input_gradient", "eagerly", "has_accelerator",
          "input_gradient",
          "launches_asynchronously", "make_predict", "make_q_and_gradient", "results_to_host")

__all__ = ["BACKEND", *_NAMES]


def __getattr__(name: str):
    """The names of ``__all__``, from the backend module of the backend Keras runs (loaded on first use)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _load()
    return globals()[name]


def _load() -> None:
    import importlib

    import keras

    name = keras.config.backend()
    if name not in ("jax", "tensorflow"):  # pragma: no cover - torch and numpy backends are not supported
        raise ImportError(
            f"dqnviz supports the 'tensorflow' and 'jax' Keras backends, not {name!r}; "
            "set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax"
        )
    module = importlib.import_module(f"dqnviz.backend.{name}")
    globals().update({attribute: getattr(module, attribute) for attribute in _NAMES}, BACKEND=name)
