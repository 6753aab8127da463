"""The one place where code differs per Keras backend.

Everything else in dqnviz is written once with ``keras.ops``. Two things cannot be:

* gradients with respect to a model's *input* (for guided backprop and saliency), and
* the compiled DQN training step (``tf.function(jit_compile=True)`` or ``jax.jit`` over
  ``stateless_call``).

Each backend module exposes the same two functions:

``input_gradient(fn, x) -> (values, gradient)``
    ``values = fn(x)`` is a 1-D tensor (one scalar per example); ``gradient`` is
    ``d sum(values) / d x`` as a numpy array shaped like ``x``.

``compile_input_gradient(model, fn) -> call(x, *args) -> (values, gradient)``
    the same, for a ``fn(x, *args)`` whose per-call data (filter indices, positions, actions:
    one row per example) are arguments, compiled once (``jax.jit``, the model's variables
    passed at each call) so that an analysis reuses it across batches, filters and calls.
    ``compile_forward(model, fn) -> call(x, *args) -> numpy`` likewise for forward passes.

``make_train_step(online, target, optimizer, loss_fn) -> step``
    ``step(batch) -> (loss, td_abs)``, updating the online model's weights in place.
    ``loss_fn(q, q_next_online, q_next_target, batch) -> (loss, td_abs)`` is pure ``keras.ops`` maths.
    The JAX step also has ``train_on_frames(frame_buffer, transitions) -> (losses, td_abs)``: K
    updates in one jitted call, their states stacked from a ``FrameBuffer`` inside it. Without it
    (TensorFlow) the learner stacks each batch with the replay memory and calls ``step(batch)``.

``results_to_host(losses, td_abs) -> (losses (K,), td_abs (K, B))``
    the results of K updates (a result per update, or one for all) as float32 numpy arrays,
    read from the device in one copy.

``make_predict(model, stacks=False) -> predict(states, weights=None)``
    compiled Q-values for acting; with ``stacks`` from frame stacks (N, history, H, W).

``make_q_and_gradient(model, run) -> call(x) -> (Q, dQ(x, argmax Q)/dx)``
    one compiled pass for recording with gradient saliency.

``FrameBuffer(shape)``
    the replay memory's uint8 frames kept on the accelerator (``--device-replay``): ``stage(slot,
    frames)`` (written with the next update, or by ``flush()``), ``gather(envs, index, keep)`` →
    stacked states on the device, ``to_numpy()``.
"""

import keras

_name = keras.config.backend()
if _name == "jax":
    from dqnviz.backend.jax import (  # noqa: F401
        FrameBuffer, compile_forward, compile_input_gradient, input_gradient, make_predict, make_q_and_gradient,
        make_train_step, results_to_host,
    )
elif _name == "tensorflow":
    from dqnviz.backend.tensorflow import (  # noqa: F401
        FrameBuffer, compile_forward, compile_input_gradient, input_gradient, make_predict, make_q_and_gradient,
        make_train_step, results_to_host,
    )
else:  # pragma: no cover - torch and numpy backends are not supported
    raise ImportError(
        f"dqnviz supports the 'tensorflow' and 'jax' Keras backends, not {_name!r}; "
        "set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax"
    )

__all__ = [
    "BACKEND", "FrameBuffer", "compile_forward", "compile_input_gradient", "input_gradient", "make_predict",
    "make_q_and_gradient", "make_train_step", "results_to_host",
]
BACKEND = _name
