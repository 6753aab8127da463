"""Loading snapshots that an attacker made, or that a careless user points at: each is refused in
one line, before anything in it can run or be unpacked, and never with a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import struct
import warnings
import zipfile

import numpy as np
import pytest

from dqnviz.errors import UserError

ACTION_NAMES = ["NOOP", "FIRE", "RIGHT", "LEFT"]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """The members of a real snapshot (a 4-action Nature network), name -> bytes."""
    from dqnviz.network import build_q_network
    from dqnviz.snapshot import save_snapshot

    path = save_snapshot(tmp_path_factory.mktemp("good") / "breakout_1.keras", build_q_network(4, seed=0),
                         {"game": "breakout", "run": "breakout", "epoch": 1, "action_names": ACTION_NAMES})
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def archive(path, items, deflated=("dqnviz.json",)):
    """Write ``items`` ((name, bytes) pairs, duplicates kept) as a zip archive at ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name, which is the point
        with zipfile.ZipFile(path, "w") as made:
            for name, data in items:
                made.writestr(name, data, zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED)
    return str(path)


def variant(path, members, replace=None, extra=()):
    """A copy of the snapshot with some members replaced and others added."""
    return archive(path, [(name, (replace or {}).get(name, data)) for name, data in members.items()] + list(extra))


def with_meta(path, members, **fields):
    meta = {**json.loads(members["dqnviz.json"]), **fields}
    return variant(path, members, {"dqnviz.json": json.dumps(meta).encode()})


def with_weights(path, members, edit):
    """A copy whose model.weights.h5 went through ``edit(h5py.File)``."""
    import h5py

    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "r+") as weights:
        edit(weights)
    return variant(path, members, {"model.weights.h5": buffer.getvalue()})


def one_line_error(argv, capfd) -> str:
    """Run the CLI; it must fail with exit 2 and exactly one line on stderr (no traceback)."""
    from dqnviz.cli import main

    assert main(argv) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def load_via_api_and_cli(path, capfd, match):
    """``load_snapshot`` raises a UserError matching ``match``, and ``dqnviz test`` and ``nvis``
    print it as their one line."""
    from dqnviz.snapshot import load_snapshot

    with pytest.raises(UserError, match=match):
        load_snapshot(path)
    for argv in (["test", path, "--episodes", "1", "--quiet"],
                 ["nvis", path, "--out", os.path.join(os.path.dirname(path), "x.html"), "--quiet"]):
        err = one_line_error(argv, capfd)
        assert err.startswith(f"dqnviz {argv[0]}: error: ") and re.search(match, err), err


# --- code in the file ------------------------------------------------------------------------


def _lambda_members(marker):
    """A plain Keras model whose Lambda layer writes ``marker`` when it is called (which Keras
    does while rebuilding the model, so while loading)."""
    import keras

    states = keras.Input((84, 84, 4), dtype="uint8")
    run = eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), keras.ops.cast(x, 'float32'))[1]",
               {"keras": keras})
    x = keras.layers.Flatten()(keras.layers.Lambda(run)(states))
    keras.Model(states, keras.layers.Dense(4)(x)).save(marker.parent / "plain.keras")
    marker.unlink(missing_ok=True)  # building the model above called the lambda
    with zipfile.ZipFile(marker.parent / "plain.keras") as made:
        return {name: made.read(name) for name in made.namelist()}


def test_a_lambda_layer_never_runs_even_with_keras_unsafe_mode_switched_on(tmp_path, members):
    """One call of keras.config.enable_unsafe_deserialization() (for another model, in the same
    notebook) switches Keras's safe mode off for the process; dqnviz refuses the Lambda itself."""
    import keras
    from keras.src.backend.common import global_state

    from dqnviz.snapshot import load_snapshot

    marker = tmp_path / "pwned"
    lambda_members = _lambda_members(marker)
    path = archive(tmp_path / "evil.keras", [*lambda_members.items(), ("dqnviz.json", members["dqnviz.json"])])
    previous = global_state.get_global_attribute("safe_mode_saving")
    keras.config.enable_unsafe_deserialization()
    try:
        with pytest.raises(UserError) as refused:
            load_snapshot(path)
    finally:
        global_state.set_global_attribute("safe_mode_saving", previous)
    assert not marker.exists(), "the Lambda layer's code ran"
    assert "refusing to load: its model holds a Lambda layer" in str(refused.value)


def test_a_lambda_layer_is_refused_by_name_in_safe_mode(tmp_path, members, capfd):
    marker = tmp_path / "pwned"
    lambda_members = _lambda_members(marker)
    path = archive(tmp_path / "evil.keras", [*lambda_members.items(), ("dqnviz.json", members["dqnviz.json"])])
    load_via_api_and_cli(path, capfd, r"refusing to load: its model holds a Lambda layer \(Python code")
    assert not marker.exists()


@pytest.mark.parametrize("module, class_name, registered, shown", [
    ("os", "system", None, "os.system"),
    ("evilpkg.layers", "Evil", "evilpkg>Evil", "evilpkg.layers.Evil"),
])
def test_a_class_outside_keras_and_unregistered_is_refused_by_name(tmp_path, members, capfd, module, class_name,
                                                                   registered, shown):
    config = json.loads(members["config.json"])
    (conv1,) = [layer for layer in config["config"]["layers"] if layer["name"] == "conv1"]
    conv1.update(module=module, class_name=class_name, registered_name=registered)
    path = variant(tmp_path / "evil.keras", members, {"config.json": json.dumps(config).encode()})
    load_via_api_and_cli(path, capfd, f"refusing to load: its model names the class {shown}, which is neither "
                                      f"part of Keras nor registered")


def test_dqnvizs_own_registered_layer_still_loads(tmp_path):
    """The check on classes lets through what dqnviz registers (the dueling head)."""
    from dqnviz.network import build_q_network
    from dqnviz.snapshot import load_snapshot, save_snapshot

    path = save_snapshot(tmp_path / "dueling.keras", build_q_network(3, dueling=True), {"game": "pong"})
    assert any(type(layer).__name__ == "DuelingQ" for layer in load_snapshot(path).model.layers)


# --- the archive -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escaped.txt", "/tmp/escaped.txt", "assets/../../escaped.txt"])
def test_a_member_named_outside_the_archive_is_refused(tmp_path, members, capfd, name):
    path = variant(tmp_path / "traversal.keras", members, extra=[(name, b"x")])
    load_via_api_and_cli(path, capfd, "holds a member named .*, which points outside the archive")


@pytest.mark.parametrize("name", ["dqnviz.json", "config.json"])
def test_two_members_with_one_name_are_refused(tmp_path, members, capfd, name):
    """zipfile reads the last of two same-named members, another reader the first: neither is trusted."""
    path = variant(tmp_path / "twice.keras", members, extra=[(name, members[name])])
    load_via_api_and_cli(path, capfd, f"holds two members named '{name}'")


def _bomb(path, members, name, size):
    """The snapshot with member ``name`` replaced by ``size`` deflated spaces (a few kB on disk)."""
    with zipfile.ZipFile(path, "w") as made:
        for other, data in members.items():
            if other != name:
                made.writestr(other, data)
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with made.open(info, "w", force_zip64=True) as member:
            chunk = b" " * 2**20
            for _ in range(size // len(chunk)):
                member.write(chunk)
    return str(path)


def test_a_metadata_zip_bomb_is_refused_without_being_unpacked(tmp_path, members, monkeypatch, capfd):
    from dqnviz.snapshot import load_snapshot

    path = _bomb(tmp_path / "bomb.keras", members, "dqnviz.json", 5 * 2**20)  # the limit is 4 MB
    assert os.path.getsize(path) < 8 * 2**20
    opened = []
    original = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(
        getattr(name, "filename", name)) or original(self, name, *a, **k))
    with pytest.raises(UserError, match=r"'dqnviz.json' would unpack to 5 MiB .* at most 4 MiB, so it is damaged or a "
                                        r"zip bomb, and was not unpacked"):
        load_snapshot(path)
    assert "dqnviz.json" not in opened


def test_a_weights_zip_bomb_is_refused_without_being_unpacked(tmp_path, members, monkeypatch):
    """The limit on weights is 256 MB (20 times the biggest Nature network); here it is lowered
    to 32 MB, so that the test need not deflate 256 MB."""
    import dqnviz.snapshot_checks
    from dqnviz.snapshot import load_snapshot

    monkeypatch.setattr(dqnviz.snapshot_checks, "MAX_SNAPSHOT_BYTES", 32 * 2**20)
    path = _bomb(tmp_path / "bomb.keras", members, "model.weights.h5", 64 * 2**20)
    opened = []
    original = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(
        getattr(name, "filename", name)) or original(self, name, *a, **k))
    with pytest.raises(UserError, match=r"'model.weights.h5' would unpack to 64 MiB .* zip bomb, and was not unpacked"):
        load_snapshot(path)
    assert "model.weights.h5" not in opened


def _patch_central_entry(data: bytes, name: str, flags: int = 0, method: int | None = None) -> bytes:
    """``data`` (a zip archive) with member ``name``'s general-purpose flags or'ed with ``flags``
    and, if given, its compression method set, in its local and central headers."""
    patched = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as made:
        local = made.getinfo(name).header_offset
    central = data.index(b"PK\x01\x02")
    while central >= 0:
        length = struct.unpack("<H", data[central + 28:central + 30])[0]
        if data[central + 46:central + 46 + length] == name.encode():
            for flag_at, method_at in ((local + 6, local + 8), (central + 8, central + 10)):
                patched[flag_at] |= flags
                if method is not None:
                    patched[method_at:method_at + 2] = struct.pack("<H", method)
        central = data.find(b"PK\x01\x02", central + 4)
    return bytes(patched)


@pytest.mark.parametrize("damage, message", [
    ("bit rot", r"the snapshot is corrupt \(Bad CRC-32 for file 'dqnviz.json'\)|the snapshot is corrupt \(Error"),
    ("encrypted", r"the snapshot is corrupt \(File 'dqnviz.json' is encrypted"),
    ("unknown compression", r"the snapshot is corrupt \(That compression method is not supported\)"),
])
def test_a_damaged_archive_is_one_line_not_a_traceback(tmp_path, members, capfd, damage, message):
    data = open(variant(tmp_path / "good.keras", members), "rb").read()
    if damage == "bit rot":
        with zipfile.ZipFile(tmp_path / "good.keras") as made:
            info = made.getinfo("dqnviz.json")
        middle = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
        data = data[:middle] + bytes([data[middle] ^ 0xFF, data[middle + 1] ^ 0xFF]) + data[middle + 2:]
    elif damage == "encrypted":
        data = _patch_central_entry(data, "dqnviz.json", flags=1)
    else:
        data = _patch_central_entry(data, "dqnviz.json", method=99)
    path = tmp_path / "damaged.keras"
    path.write_bytes(data)
    load_via_api_and_cli(str(path), capfd, message)


@pytest.mark.parametrize("member, message", [
    ("dqnviz.json", r"the snapshot's metadata \(dqnviz.json\) is corrupt \(nested too deeply\)"),
    ("config.json", r"the model's description \(config.json\) is corrupt \(nested too deeply\)"),
])
def test_json_nested_past_the_parsers_depth_is_one_line(tmp_path, members, capfd, member, message):
    path = variant(tmp_path / "deep.keras", members, {member: b"[" * 100_000 + b"]" * 100_000})
    load_via_api_and_cli(path, capfd, message)


# --- the file ----------------------------------------------------------------------------------


def test_an_empty_file_says_it_is_empty(tmp_path, capfd):
    path = tmp_path / "empty.keras"
    path.touch()
    load_via_api_and_cli(str(path), capfd, r"empty.keras is empty \(0 bytes\), not a snapshot")


def test_a_symlink_loop_is_not_reported_as_missing(tmp_path, capfd):
    path = tmp_path / "loop.keras"
    path.symlink_to(path)
    load_via_api_and_cli(str(path), capfd, r"is a symbolic link that leads nowhere")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_is_refused_instead_of_waiting_for_ever(tmp_path, capfd):
    import signal

    path = tmp_path / "pipe.keras"
    os.mkfifo(path)

    def hung(*_):
        raise AssertionError("loading a named pipe waited for a writer")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        load_via_api_and_cli(str(path), capfd, r"is not a regular file \(a pipe, device or socket\)")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_file_without_read_permission_is_one_line(tmp_path, members, capfd, monkeypatch):
    import builtins

    path = variant(tmp_path / "locked.keras", members)
    os.chmod(path, 0)
    if os.geteuid() == 0:  # root reads it anyway: make open() answer as it would anyone else
        original = builtins.open

        def refusing(file, *args, **kwargs):
            if str(file) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return original(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refusing)
    load_via_api_and_cli(path, capfd, r"cannot read .*locked.keras: Permission denied")


# --- the metadata ------------------------------------------------------------------------------


def test_a_snapshot_from_a_newer_format_names_the_dqnviz_it_needs(tmp_path, members, capfd):
    path = with_meta(tmp_path / "future.keras", members, format=2, dqnviz_version="0.9.0")
    load_via_api_and_cli(path, capfd, r"is a snapshot of format 2, which needs dqnviz 0.9.0 or newer; this is dqnviz "
                                      r"\S+, which reads format 1: upgrade dqnviz")


def test_a_format_that_is_not_a_number_is_damage(tmp_path, members, capfd):
    path = with_meta(tmp_path / "odd.keras", members, format="one")
    load_via_api_and_cli(path, capfd, r"is damaged \('format' is 'one', not a format number\)")


def test_a_snapshot_from_before_the_format_field_still_loads(tmp_path, members):
    from dqnviz.snapshot import load_snapshot

    meta = json.loads(members["dqnviz.json"])
    del meta["format"]
    path = variant(tmp_path / "old.keras", members, {"dqnviz.json": json.dumps(meta).encode()})
    assert load_snapshot(path).meta["epoch"] == 1


@pytest.mark.parametrize("fields, message", [
    ({"epoch": "seven"}, r"is damaged \('epoch' is a JSON string, not a whole number\)"),
    ({"action_names": 5}, r"is damaged \('action_names' is a JSON number, not a list\)"),
    ({"action_names": ["NOOP", 1, 2, 3]}, r"is damaged \('action_names' holds something other than strings\)"),
    ({"action_names": ["NOOP"]}, r"is damaged \(it names 1 action, but the network has 4 outputs\)"),
    # the stored training config and an interrupted sitting's figures, which train --resume computes with
    ({"config": {"target_steps": "10000"}}, r"is damaged \(config's 'target_steps' is '10000', not a whole number\)"),
    ({"config": {"batch_size": 32.0}}, r"is damaged \(config's 'batch_size' is 32.0, not a whole number\)"),
    ({"config": {"learning_rate": True}}, r"is damaged \(config's 'learning_rate' is True, not a number\)"),
    ({"config": {"double": 1}}, r"is damaged \(config's 'double' is 1, not true or false\)"),
    ({"interrupted": {"phase": "train", "steps_done": "20"}},
     r"is damaged \('interrupted' has 'steps_done' '20', not a whole number of at least 0\)"),
    ({"interrupted": {"steps_done": -3}}, r"'interrupted' has 'steps_done' -3, not a whole number of at least 0"),
    ({"interrupted": {"steps_done": 20, "seconds": "1.5"}}, r"'interrupted' has 'seconds' '1.5', not a number"),
    ({"interrupted": {"steps_done": 20, "game_scores": [1, "x"]}}, r"'game_scores' \[1, 'x'\], not a list of numbers"),
    ({"interrupted": {"phase": "train", "seconds": 1.5}}, r"'interrupted' has 'seconds' but no 'steps_done'"),
])
def test_metadata_fields_of_the_wrong_type_are_damage(tmp_path, members, capfd, fields, message):
    load_via_api_and_cli(with_meta(tmp_path / "odd.keras", members, **fields), capfd, message)


def test_a_config_of_the_right_types_and_unknown_keys_still_loads(tmp_path, members):
    """Whole numbers are numbers (a float field may be stored as 1), and keys a later dqnviz added are ignored."""
    from dqnviz.snapshot import load_snapshot

    config = {"learning_rate": 1, "batch_size": 32, "double": True, "optimizer": "adam", "from_the_future": "x"}
    path = with_meta(tmp_path / "fine.keras", members, config=config, interrupted={"phase": "train", "steps_done": 0})
    assert load_snapshot(path).meta["config"] == config


@pytest.mark.parametrize("missing", [("game",), ("epoch",), ("game", "epoch")])
def test_resuming_from_a_snapshot_without_its_game_or_epoch_is_one_line(tmp_path, members, capfd, missing):
    """Other commands need neither (a snapshot saved from Python may lack both); a resume needs both."""
    meta = {key: value for key, value in json.loads(members["dqnviz.json"]).items() if key not in missing}
    path = variant(tmp_path / "bare.keras", members, {"dqnviz.json": json.dumps(meta).encode()})
    err = one_line_error(["train", "--resume", path, "--report-dir", str(tmp_path / "rep")], capfd)
    assert f"has no {' or '.join(map(repr, missing))}, so a run cannot resume from it" in err, err
    assert not (tmp_path / "rep").exists()


# --- the weights -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_weights_that_are_not_finite_are_refused(tmp_path, members, capfd, value):
    """The trainer never saves a diverged network, so NaN or ±inf weights mean a damaged file;
    played on, they would give every state the same action and a meaningless score."""
    def poison(weights):
        kernel = weights["layers/conv2d/vars/0"]
        kernel[0, 0, 0, 0] = value

    path = with_weights(tmp_path / "nan.keras", members, poison)
    load_via_api_and_cli(path, capfd, r"the network's weights hold 1 NaN or infinite values \(layer conv1\)")


def test_weights_of_the_wrong_shape_name_the_layer_in_one_line(tmp_path, members, capfd):
    def narrow(weights):
        kernel = weights["layers/dense_1/vars/0"][...]
        del weights["layers/dense_1/vars/0"]
        weights["layers/dense_1/vars/0"] = kernel[:, :2]

    path = with_weights(tmp_path / "shape.keras", members, narrow)
    load_via_api_and_cli(path, capfd, r"could not load the model \(layer q: .*\(512, 2\)")


@pytest.fixture
def keras_loads(monkeypatch):
    """The paths that ``keras.saving.load_model`` was asked to load, in this test."""
    import keras

    asked, original = [], keras.saving.load_model
    monkeypatch.setattr(keras.saving, "load_model", lambda filepath, *a, **k: asked.append(str(filepath)) or
                        original(filepath, *a, **k))
    return asked


def _outside_h5(path, kernel):
    """An HDF5 file outside the snapshot holding ``kernel`` at /kernel."""
    import h5py

    with h5py.File(path, "w") as outside:
        outside["kernel"] = kernel
    return str(path)


KERNEL = "layers/conv2d/vars/0"  # conv1's kernel in model.weights.h5


def _link_outside(tmp_path):
    """conv1's kernel replaced by an external link to the same kernel in another file, which a
    reader that followed it would load without a complaint."""
    import h5py

    def edit(weights):
        outside = _outside_h5(tmp_path / "outside.h5", weights[KERNEL][...])
        del weights[KERNEL]
        weights[KERNEL] = h5py.ExternalLink(outside, "/kernel")

    return edit, r"hold an external link at '/layers/conv2d/vars/0' \(to '/kernel' in the file '.*outside.h5'\), " \
                 r"which would make loading read that file; Keras never writes one"


def _unused_link_outside(tmp_path):
    """An external link where Keras never looks (so Keras would load the file): dqnviz refuses
    any, as reading the file would still follow it."""
    import h5py

    def edit(weights):
        weights["extra"] = h5py.ExternalLink(str(tmp_path / "outside.h5"), "/")

    return edit, r"hold an external link at '/extra' \(to '/' in the file '.*outside.h5'\)"


def _stored_outside(tmp_path):
    """conv1's kernel kept in a raw file outside the snapshot (HDF5 external storage)."""
    def edit(weights):
        kernel = weights[KERNEL][...]
        raw = str(tmp_path / "outside.bin")
        del weights[KERNEL]
        weights.create_dataset(KERNEL, kernel.shape, kernel.dtype, external=[(raw, 0, kernel.nbytes)])[...] = kernel

    return edit, r"hold a dataset at '/layers/conv2d/vars/0' whose data is stored in other files " \
                 r"\('.*outside.bin'\), which loading would read"


def _mapped_from_outside(tmp_path):
    """conv1's kernel a virtual dataset mapped from a dataset in another file."""
    import h5py

    def edit(weights):
        kernel = weights[KERNEL][...]
        outside = _outside_h5(tmp_path / "outside.h5", kernel)
        layout = h5py.VirtualLayout(kernel.shape, kernel.dtype)
        layout[...] = h5py.VirtualSource(outside, "kernel", kernel.shape, kernel.dtype)
        del weights[KERNEL]
        weights.create_virtual_dataset(KERNEL, layout)

    return edit, r"hold a virtual dataset at '/layers/conv2d/vars/0' \(its data is mapped from other files"


def _soft_link(tmp_path):
    """conv1's kernel moved elsewhere in the file and reached through a soft link."""
    import h5py

    def edit(weights):
        weights.move(KERNEL, "stash")
        weights[KERNEL] = h5py.SoftLink("/stash")

    return edit, r"hold a soft link at '/layers/conv2d/vars/0' \(to '/stash'\)"


@pytest.mark.parametrize("reference", [_link_outside, _unused_link_outside, _stored_outside, _mapped_from_outside,
                                       _soft_link])
def test_weights_that_would_read_other_files_are_refused_before_keras_reads_them(tmp_path, members, capfd,
                                                                                 keras_loads, reference):
    """HDF5 can keep a dataset's data in other files, map it from them, or link to them; reading
    such a weights file would open files that the snapshot names, anywhere on disk."""
    edit, message = reference(tmp_path)
    path = with_weights(tmp_path / "outside.keras", members, edit)
    load_via_api_and_cli(path, capfd, r"outside.keras: refusing to load: its weights \(model.weights.h5\) " + message)
    assert keras_loads == [], "Keras was given the file"


def test_weights_with_more_links_than_any_snapshot_are_refused_without_a_long_walk(tmp_path, members, capfd,
                                                                                   monkeypatch, keras_loads):
    """256 MB of HDF5 could hold 300,000 groups, half a minute's walk; the walk stops at a limit
    (10,000 links, lowered here to 20 so that the real snapshot, with 38, passes it)."""
    import dqnviz.snapshot_checks

    monkeypatch.setattr(dqnviz.snapshot_checks, "MAX_WEIGHT_LINKS", 20)
    path = variant(tmp_path / "tangle.keras", members)
    load_via_api_and_cli(path, capfd, r"tangle.keras: its weights \(model.weights.h5\) hold more than 20 links; a "
                                      r"dqnviz snapshot's hold a few dozen: it is not a snapshot")
    assert keras_loads == []


def test_weights_that_are_not_hdf5_are_one_line(tmp_path, members, capfd, keras_loads):
    path = variant(tmp_path / "garbled.keras", members, {"model.weights.h5": b"not HDF5 at all" * 100})
    load_via_api_and_cli(path, capfd, r"garbled.keras: could not load the model \(")
    assert keras_loads == []


# --- a file that changes while it is loaded ------------------------------------------------------


def _swap_before_keras_reads(monkeypatch, path, replacement):
    """Make ``keras.saving.load_model`` first put ``replacement`` at ``path`` (as another process
    could, between dqnviz's checks and Keras's read), then load what it was given."""
    import keras

    original = keras.saving.load_model

    def swapping(filepath, *args, **kwargs):
        os.replace(replacement, path)
        return original(filepath, *args, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", swapping)


def test_a_file_swapped_for_code_after_the_checks_never_runs(tmp_path, members, monkeypatch):
    """The checks refuse a Lambda layer, so a file that passes them must be the one Keras
    loads: a Lambda snapshot swapped in after the checks must not reach Keras, even where
    Keras's own safe mode was switched off."""
    import keras
    from keras.src.backend.common import global_state

    from dqnviz.snapshot import load_snapshot

    marker = tmp_path / "pwned"
    evil = archive(tmp_path / "evil.keras", [*_lambda_members(marker).items(), ("dqnviz.json", members["dqnviz.json"])])
    path = variant(tmp_path / "good.keras", members)
    _swap_before_keras_reads(monkeypatch, path, evil)
    previous = global_state.get_global_attribute("safe_mode_saving")
    keras.config.enable_unsafe_deserialization()
    loaded = []
    try:
        with contextlib.suppress(UserError):  # whatever happens after the code ran, it ran
            loaded.append(load_snapshot(path))
    finally:
        global_state.set_global_attribute("safe_mode_saving", previous)
    assert not marker.exists(), "the swapped-in Lambda layer's code ran"
    assert loaded and "conv1" in {layer.name for layer in loaded[0].model.layers}


def test_a_file_swapped_after_the_checks_is_not_what_loads(tmp_path, members, monkeypatch):
    """What loads is the file that was checked, not whatever the path names when Keras reads."""
    from dqnviz.network import build_q_network
    from dqnviz.snapshot import load_snapshot, save_snapshot

    path = variant(tmp_path / "good.keras", members)
    other = save_snapshot(tmp_path / "other.keras", build_q_network(4, seed=1), json.loads(members["dqnviz.json"]))
    _swap_before_keras_reads(monkeypatch, path, other)
    loaded = load_snapshot(path).model.get_layer("conv1").get_weights()[0]
    expected = build_q_network(4, seed=0).get_layer("conv1").get_weights()[0]
    np.testing.assert_array_equal(loaded, expected)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_swapped_in_after_the_check_by_name_is_refused_not_waited_on(tmp_path, members, monkeypatch):
    """The path is checked by name, then opened: what was opened is checked again (fstat), and
    opening never waits for a pipe's writer."""
    import signal

    from dqnviz.snapshot import load_snapshot

    path = variant(tmp_path / "good.keras", members)
    original = os.stat

    def stat_then_swap(target, *args, **kwargs):
        info = original(target, *args, **kwargs)
        if str(target) == path and not os.path.exists(path + ".swapped"):
            open(path + ".swapped", "w").close()
            os.unlink(path)
            os.mkfifo(path)
        return info

    def hung(*_):
        raise AssertionError("loading a named pipe waited for a writer")

    monkeypatch.setattr(os, "stat", stat_then_swap)
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        with pytest.raises(UserError, match=r"is not a regular file \(a pipe, device or socket\)"):
            load_snapshot(path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- what --resume reads beside a snapshot -----------------------------------------------------


def _npz_declaring(path, name, shape):
    """An .npz whose member ``name`` holds 4 bytes but whose header declares ``shape`` (uint8)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as made:
        made.writestr(name, buffer.getvalue() + b"\0" * 4)
    return str(path)


def test_resume_files_that_declare_petabytes_are_ignored_not_allocated(tmp_path):
    """numpy allocates what an array's header declares before reading; the loaders give None."""
    from dqnviz.snapshot import load_optimizer_state, load_validation_states

    huge = (10**12, 84, 84, 4)
    assert load_validation_states(_npz_declaring(tmp_path / "v.npz", "states.npy", huge), (84, 84, 4)) is None
    assert load_optimizer_state(_npz_declaring(tmp_path / "o.npz", "train_steps_done.npy", huge), 0) is None


def test_resume_files_within_their_sizes_still_load(tmp_path):
    from dqnviz.snapshot import (load_optimizer_state, load_validation_states, save_optimizer_state,
                                 save_validation_states)

    states = np.arange(2 * 84 * 84 * 4, dtype=np.uint8).reshape(2, 84, 84, 4)
    np.testing.assert_array_equal(load_validation_states(save_validation_states(tmp_path / "v.npz", states),
                                                         (84, 84, 4)), states)
    state = {"rms/conv1": np.ones((8, 8, 4, 32), np.float32), "iterations": np.int64(7)}
    loaded = load_optimizer_state(save_optimizer_state(tmp_path / "o.npz", state, 12), 12)
    assert set(loaded) == set(state) and int(loaded["iterations"]) == 7
    np.testing.assert_array_equal(loaded["rms/conv1"], state["rms/conv1"])
