"""Snapshots: round trip, metadata, safe loading, and every kind of bad file."""

import pickle
import zipfile

import numpy as np
import pytest

from dqnviz.errors import UserError
from dqnviz.network import build_q_network
from dqnviz.snapshot import load_snapshot, read_meta, save_snapshot


@pytest.mark.parametrize("dueling", [False, True])
def test_round_trip_keeps_weights_and_metadata(tmp_path, dueling):
    model = build_q_network(4, dueling=dueling, seed=3)
    meta = {"game": "breakout", "epoch": 7, "action_names": ["NOOP", "FIRE", "RIGHT", "LEFT"],
            "test_score": {"average": 3.5}}
    path = save_snapshot(tmp_path / "breakout_7.keras", model, meta)
    snapshot = load_snapshot(path)
    assert snapshot.meta["epoch"] == 7 and snapshot.meta["game"] == "breakout"
    assert snapshot.meta["test_score"]["average"] == 3.5
    assert snapshot.name == "breakout_7" and snapshot.action_names == meta["action_names"]
    names = {layer.name for layer in snapshot.model.layers}
    assert {"conv1", "conv2", "conv3", "fc", "q"} <= names
    assert ("fc_value" in names) is dueling
    states = np.random.default_rng(0).integers(0, 255, (3, 84, 84, 4), dtype=np.uint8)
    np.testing.assert_allclose(snapshot.model.predict(states, verbose=0), model.predict(states, verbose=0), rtol=1e-6)
    assert snapshot.model.inputs[0].dtype == "uint8"


def test_snapshot_has_no_pickle_and_no_leftovers(tmp_path):
    path = save_snapshot(tmp_path / "a_1.keras", build_q_network(3), {"game": "pong"})
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert "dqnviz.json" in names
        for name in names:
            assert not archive.read(name).startswith(b"\x80"), f"{name} looks like a pickle"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_1.keras"]


def test_missing_snapshot(tmp_path):
    with pytest.raises(UserError, match="snapshot not found"):
        load_snapshot(tmp_path / "nope.keras")


def test_pickle_is_refused_without_being_loaded(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('ran')" % str(tmp_path / "ran"),))

    path = tmp_path / "evil.keras"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(UserError, match="pickle"):
        load_snapshot(path)
    assert not (tmp_path / "ran").exists()


def test_corrupt_and_truncated_files(tmp_path):
    good = save_snapshot(tmp_path / "good.keras", build_q_network(3), {"game": "pong"})
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match="not a dqnviz snapshot|corrupt"):
        load_snapshot(truncated)
    text = tmp_path / "text.keras"
    text.write_text("hello")
    with pytest.raises(UserError, match="not a dqnviz snapshot"):
        load_snapshot(text)


def test_plain_keras_model_is_not_a_snapshot(tmp_path):
    path = tmp_path / "plain.keras"
    build_q_network(3).save(path)
    with pytest.raises(UserError, match="not a dqnviz snapshot"):
        read_meta(path)


def test_lambda_layer_is_refused_before_keras_reads_it(tmp_path):
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = save_snapshot(tmp_path / "lambda.keras", keras.Model(inputs, outputs), {"game": "pong"})
    with pytest.raises(UserError, match=r"refusing to load: its model holds a Lambda layer \(Python code"):
        load_snapshot(path)


@pytest.mark.parametrize("count, shown", [
    (4096, "4,096 bytes"), (2**20 - 1, "1,048,575 bytes"), (5 * 2**20, "5 MiB"), (256 * 2**20, "256 MiB"),
    (3 * 2**29, "1.50 GiB"), (7056 * 10**6, "6.57 GiB"),
])
def test_byte_counts_read_in_binary_units(count, shown):
    """The snapshot messages' sizes ("would unpack to 5 MiB"), and the replay memory's ("6.57 GiB")."""
    from dqnviz.units import format_bytes

    assert format_bytes(count) == shown


def test_loading_draws_no_random_initial_weights_and_leaves_the_initializers_as_they_were(tmp_path, monkeypatch):
    """The file's weights replace a loaded layer's initial ones: drawing those (a compiled function
    per kernel shape under JAX, seconds on a CPU) is skipped, and nothing else changes."""
    import keras
    from keras.src.initializers.random_initializers import VarianceScaling

    model = build_q_network(4, seed=3)
    path = save_snapshot(tmp_path / "pong_1.keras", model, {"game": "pong", "epoch": 1})
    draws = []
    real = VarianceScaling.__call__
    monkeypatch.setattr(VarianceScaling, "__call__", lambda self, *args, **kwargs: draws.append(1) or real(self, *args, **kwargs))
    loaded = load_snapshot(path)
    assert draws == []  # He and Glorot initializers are VarianceScaling: none drew
    for saved, read in zip(model.get_weights(), loaded.model.get_weights()):
        np.testing.assert_array_equal(saved, read)
    assert np.abs(keras.ops.convert_to_numpy(keras.initializers.HeNormal(seed=1)((8, 8)))).sum() > 0
    assert draws == [1]  # restored: a network built afterwards draws as before


@pytest.mark.parametrize("damage", ["steps as a vector", "names as a scalar", "a NaN moment", "complex moments",
                                    "steps as a float"])
def test_an_optimizer_state_no_optimizer_could_have_saved_is_not_restored(tmp_path, damage):
    """As a missing or truncated file: None (the optimizer starts afresh), never a traceback nor a
    NaN state that would pass for a diverged network."""
    from dqnviz.snapshot import load_optimizer_state, save_optimizer_state

    path = tmp_path / "r.optimizer.npz"
    good = {"iterations": np.int64(7), "m": np.ones((3, 2), np.float32)}
    save_optimizer_state(path, good, 400)
    restored = load_optimizer_state(path, 400)
    assert sorted(restored) == ["iterations", "m"] and restored["m"].shape == (3, 2)
    members = {"names": np.array(["iterations", "m"]), "train_steps_done": np.int64(400),
               "v0": np.int64(7), "v1": np.ones((3, 2), np.float32)}
    members.update({"steps as a vector": {"train_steps_done": np.array([400, 400])},
                    "names as a scalar": {"names": np.array("iterations")},
                    "a NaN moment": {"v1": np.full((3, 2), np.nan, np.float32)},
                    "complex moments": {"v1": np.ones((3, 2), np.complex64)},
                    "steps as a float": {"train_steps_done": np.float64(400.0)}}[damage])
    np.savez(path, **members)
    assert load_optimizer_state(path, 400) is None
