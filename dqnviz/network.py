"""The Nature CNN (Mnih et al. 2015) as a Keras functional model, with an optional dueling head.

In the data flow: the learner builds it twice (online and target network); a snapshot saves it,
and the analyses explain it.

    input  uint8 (84, 84, 4), channels last
    scale  Rescaling(1/255)                      (inside the model: no Lambda, so safe_mode loads it)
    conv1  32 filters 8×8 stride 4, ReLU         → (20, 20, 32)
    conv2  64 filters 4×4 stride 2, ReLU         → (9, 9, 64)
    conv3  64 filters 3×3 stride 1, ReLU         → (7, 7, 64)
    fc     512 units, ReLU
    q      one linear output per action

Dueling (Wang et al. 2016): two streams after conv3, ``value`` (fc_value → 1) and ``advantage``
(fc → A), joined by ``Q(s, a) = V(s) + A(s, a) − mean_a' A(s, a')`` in :class:`DuelingQ`, named
``q``. :func:`network_streams` lists the layers of each stream.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="dqnviz")
class DuelingQ(layers.Layer):
    """Joins the dueling streams: Q(s, a) = V(s) + A(s, a) − mean_a' A(s, a')."""

    def call(self, value, advantage):
        return value + advantage - ops.mean(advantage, axis=-1, keepdims=True)

    def compute_output_shape(self, value_shape, advantage_shape):
        return advantage_shape


INITIALISATIONS = ("independent", "shared")


def build_q_network(num_actions: int, dueling: bool = False, history: int = 4,
                    frame_shape=(84, 84), seed: int | None = None,
                    initialisation: str = "independent") -> keras.Model:
    """Build the Nature DQN for ``num_actions`` actions.

    The conv and hidden layers' kernels are He-initialised, W ~ truncated N(0, 2 / fan_in), the
    output layers' Glorot-uniform, the biases 0.

    Args:
        num_actions: size of the minimal action set.
        dueling: add the dueling head.
        history: frames per state (input channels).
        frame_shape: (height, width) of one frame.
        seed: None (draw from the current global random state), or a number: then
            ``keras.utils.set_random_seed(seed)`` seeds the initialisers, so the same seed gives
            the same weights under the same backend. It reseeds Python's ``random``, NumPy's
            global generator and the backend's for the caller too.
        initialisation: ``"independent"``: every kernel is drawn with its own seed. ``"shared"``:
            one initialiser object for all the He-initialised layers, as dqnviz built networks
            before snapshots recorded ``initialisation``. Keras 3 then draws every kernel from the
            same seed, so each is a scaled prefix of one random stream (conv3's first 32,768
            values are conv2's, fc_value equals fc); kept only to rebuild the starting weights of
            snapshots trained so.

    Returns:
        A ``keras.Model`` named ``nature_dqn`` (or ``dueling_dqn``) from uint8 states to Q-values.

    Raises:
        ValueError: ``initialisation`` is not one of :data:`INITIALISATIONS`.
    """
    if initialisation not in INITIALISATIONS:
        raise ValueError(f"initialisation must be one of {INITIALISATIONS}, got {initialisation!r}")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    shared = keras.initializers.VarianceScaling(scale=2.0, mode="fan_in", distribution="truncated_normal")

    def he():
        """A kernel initialiser for one layer: a new one draws its seed from the seeded global
        generator, so the layers differ and the network is the same for the same ``seed``."""
        if initialisation == "shared":
            return shared
        return keras.initializers.VarianceScaling(scale=2.0, mode="fan_in", distribution="truncated_normal")

    states = keras.Input(shape=tuple(frame_shape) + (history,), dtype="uint8", name="state")
    x = layers.Rescaling(1.0 / 255, name="scale")(states)
    x = layers.Conv2D(32, 8, strides=4, activation="relu", kernel_initializer=he(), name="conv1")(x)
    x = layers.Conv2D(64, 4, strides=2, activation="relu", kernel_initializer=he(), name="conv2")(x)
    x = layers.Conv2D(64, 3, strides=1, activation="relu", kernel_initializer=he(), name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)
    hidden = layers.Dense(512, activation="relu", kernel_initializer=he(), name="fc")(x)
    if not dueling:
        q = layers.Dense(num_actions, name="q")(hidden)
        return keras.Model(states, q, name="nature_dqn")
    value_hidden = layers.Dense(512, activation="relu", kernel_initializer=he(), name="fc_value")(x)
    value = layers.Dense(1, name="value")(value_hidden)
    advantage = layers.Dense(num_actions, name="advantage")(hidden)
    q = DuelingQ(name="q")(value, advantage)
    return keras.Model(states, q, name="dueling_dqn")


def network_streams(dueling: bool) -> list[tuple[str | None, tuple[str, ...]]]:
    """The conv and dense layers of :func:`build_q_network`'s network, and q, by stream.

    A plain network is one chain, conv1 → conv2 → conv3 → fc → q. A dueling one is a ``trunk``,
    conv1 → conv3, that branches into two parallel streams, ``value`` (fc_value → value: V(s))
    and ``advantage`` (fc → advantage: A(s, a)), and the ``join``, q:
    Q(s, a) = V(s) + A(s, a) − mean_a' A(s, a').

    Returns:
        ``[(stream, layer names)]``: ``[(None, (conv1, …, q))]`` for a plain network; ``trunk``,
        ``value``, ``advantage`` and ``join`` for a dueling one. The streams come in the model
        order of their first layers, each stream's layers in model order (which interleaves a
        dueling model's streams: fc_value, fc, value, advantage).
    """
    trunk = ("conv1", "conv2", "conv3")
    if not dueling:
        return [(None, trunk + ("fc", "q"))]
    return [("trunk", trunk), ("value", ("fc_value", "value")), ("advantage", ("fc", "advantage")), ("join", ("q",))]
