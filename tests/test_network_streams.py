"""``network_streams`` declares the streams of the network ``build_q_network`` really builds."""

import pytest

from dqnviz.network import build_q_network, network_streams


def feeders(model, name: str) -> list:
    """The layers whose outputs layer ``name`` takes, looking through scale and flatten (which
    compute no features), read from Keras's public ``layer.input`` and ``layer.output``."""
    made_by = {id(layer.output): layer for layer in model.layers}
    inputs = model.get_layer(name).input
    found = []
    for tensor in inputs if isinstance(inputs, list) else [inputs]:
        layer = made_by[id(tensor)]
        while layer.name in ("scale", "flatten"):
            layer = made_by[id(layer.input)]
        found.append(layer.name)
    return found


@pytest.mark.parametrize("dueling", [False, True])
def test_streams_hold_every_compared_layer_once_in_model_order(dueling):
    from dqnviz.report.compare import layer_facts

    model = build_q_network(6, dueling=dueling, seed=0)
    order = list(layer_facts(model)[1])  # the layers compare looks at, in the order it sees them
    streams = [stream for _, stream in network_streams(dueling)]
    assert sorted(name for stream in streams for name in stream) == sorted(order)
    for stream in streams:
        assert sorted(stream, key=order.index) == list(stream)
    assert sorted(streams, key=lambda stream: order.index(stream[0])) == streams


@pytest.mark.parametrize("dueling", [False, True])
def test_each_stream_is_a_chain_of_layers_feeding_the_next(dueling):
    model = build_q_network(6, dueling=dueling, seed=0)
    for _, stream in network_streams(dueling):
        for before, after in zip(stream, stream[1:]):
            assert feeders(model, after) == [before], (before, after)
    assert feeders(model, "conv1") == ["state"]


def test_the_dueling_trunk_branches_into_value_and_advantage_which_q_joins():
    model = build_q_network(6, dueling=True, seed=0)
    streams = dict(network_streams(True))
    assert list(streams) == ["trunk", "value", "advantage", "join"]
    assert feeders(model, streams["value"][0]) == feeders(model, streams["advantage"][0]) == [streams["trunk"][-1]]
    assert feeders(model, "q") == [streams["value"][-1], streams["advantage"][-1]] and streams["join"] == ("q",)
