"""The model as the analyses take it: one ``(N, outputs)`` output read as scores, conv layers
of a fixed height and width (a model of any image size rebuilt at the states' size), and how many
filters each layer has."""

from __future__ import annotations

from dqnviz import analysis
from dqnviz.analysis._model import score_count
from dqnviz.errors import UserError


def check_outputs(model) -> int:
    """The page reads one ``(N, outputs)`` output as scores; returns their number.

    Raises:
        UserError: several outputs (naming each, with the line that keeps one), or one of
            another rank.
    """
    return score_count(model, "nvis_report")


def at_states_size(model, shape):
    """``model`` itself when its conv layers' outputs have a fixed height and width; else a copy
    built for states of ``shape`` (H, W, C), with the same layer names and weights.

    A fully convolutional model (``keras.Input((None, None, 3))``, or a ``keras.applications``
    backbone built without ``input_shape``) has no fixed positions for the analyses to index:
    they run on a copy sized to the states, nested models included.

    Raises:
        UserError: the model cannot be rebuilt (a layer without ``get_config``, a subclassed model).
    """
    import keras

    from dqnviz.analysis._model import layer_output, resolve_layer

    def unsized(name):
        return None in tuple(layer_output(model, resolve_layer(model, name)).shape[1:3])

    if not any(unsized(name) for name in analysis.conv_layers(model)):
        return model

    def clone(layer):
        return layer if isinstance(layer, keras.Model) else layer.__class__.from_config(layer.get_config())

    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.Model):  # sized to what it is given in the outer graph
            layer = sized(layer, tuple(args[0].shape[1:]))
        return layer(*args, **kwargs)

    def sized(inner, size):
        tensor = inner.inputs[0]
        inputs = keras.Input(size, dtype=tensor.dtype, name=tensor._keras_history[0].name)
        if isinstance(inner, keras.Sequential):  # rebuilt as a functional graph: Sequential takes no call_function
            x = inputs
            for layer in inner.layers:
                x = call(clone(layer), x)
            return keras.Model(inputs, x, name=inner.name)
        return keras.models.clone_model(inner, input_tensors=inputs, clone_function=clone, call_function=call)

    size = tuple(int(d) for d in shape)
    try:
        copy = sized(model, size)
        copy.set_weights([variable.value for variable in model.weights])
    except Exception as error:  # noqa: BLE001 - any failure to rebuild says the same to the user
        reason = " ".join(str(error).split())[:200]
        raise UserError(f"model {model.name!r} takes images of any size and could not be rebuilt at the states' "
                        f"size {size} ({type(error).__name__}: {reason}); build it with keras.Input({size})") from None
    return copy


def _layer_channels(model, names) -> dict:
    from dqnviz.analysis._model import num_channels, resolve_layer

    return {name: num_channels(model, resolve_layer(model, name)) for name in names}
