"""The checks that a snapshot file must pass before anything in it is used: what a hostile file
(or one a careless user points at) is refused for, each in one line.

:mod:`dqnviz.snapshot` saves and loads; this module says what a valid file is. The file is opened
once and checked on its open descriptor (a regular file, not empty, not too big), then read once:
every check below runs on those bytes, and only those bytes reach Keras, so a file swapped in
between is never loaded. The archive's member names and declared sizes are checked before any
member is read (no path outside it, no name twice, no zip bomb), then its metadata's format and
field types, then its model config (no Lambda or other code-carrying layer, no class outside
Keras that the program has not registered), then its weights file (no HDF5 link, external
storage or virtual dataset that would make loading read other files). After Keras has loaded the
model, its weights must be finite. A bad file is a one-line :class:`~dqnviz.errors.UserError`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import stat
import zipfile
import zlib

from dqnviz.errors import UserError
from dqnviz.units import format_bytes

META_MEMBER = "dqnviz.json"
WEIGHTS_MEMBER = "model.weights.h5"
FORMAT_VERSION = 1

# What loading will read: far above any real snapshot, far below what would hurt. The biggest
# network dqnviz builds (dueling, 18 actions) has 3.3 M float32 weights, a 13 MB
# model.weights.h5, and its JSON members take a few kB. The sizes are those the archive
# declares, checked before anything is unpacked, so a zip bomb is refused without being inflated.
MAX_SNAPSHOT_BYTES = 256 * 2**20  # the file, any member, and all members unpacked together
MAX_JSON_BYTES = 4 * 2**20  # each of config.json, metadata.json and dqnviz.json
MAX_MEMBERS = 64  # a snapshot has 4
# Links in model.weights.h5 that the check for references to other files visits (80 µs each):
# a Nature network's weights have 38, and 256 MB of HDF5 could hold 300,000, half a minute's walk.
MAX_WEIGHT_LINKS = 10_000


# --- the file ----------------------------------------------------------------------------------


@contextlib.contextmanager
def opened_snapshot(path):
    """``(path as a string, its file open for reading)``, once the open file has passed the
    checks of :func:`_opened` and :func:`_check_contents` (for reading a few members only, as
    :func:`~dqnviz.snapshot.read_meta` does; loading reads :func:`snapshot_bytes`).

    Raises:
        UserError: missing, a dangling or looping link, a folder, a pipe or device, empty, too
            big, unreadable, a pickle or HDF5 file, or not a zip archive.
    """
    with _opened(path) as (path, file, _):
        _check_contents(file, path)
        yield path, file


def snapshot_bytes(path) -> tuple[str, bytes]:
    """``(path as a string, the file's bytes)``: the file opened once, checked on its open
    descriptor, read once, and those bytes checked (their size, and that they are a zip archive
    and neither a pickle nor an HDF5 file).

    Everything that loading checks and uses comes from these bytes, never from the path again,
    so a file swapped in after the checks is never loaded.

    Raises:
        UserError: as :func:`opened_snapshot`.
    """
    with _opened(path) as (path, file, size):
        try:
            data = file.read(size + 1)
            if len(data) > size:  # it grew since fstat: read on, to the limit
                data += file.read(MAX_SNAPSHOT_BYTES + 1 - len(data))
        except OSError as error:
            raise _cannot_read(path, error) from None
    _check_size(len(data), path)
    _check_contents(io.BytesIO(data), path)
    return path, data


@contextlib.contextmanager
def _opened(path):
    """``(path as a string, its file open for reading, its size)``, if what was opened is a
    regular file of a snapshot's size. The checks run on the opened descriptor (``fstat``), so
    they hold for the file that is read, whatever the path names by then; the check by name
    before it only keeps pipes and devices from being opened at all, and gives the messages
    about links."""
    path = str(path)
    try:
        _check_stat(os.stat(path), path)
        file = open(path, "rb", opener=_opener)
    except OSError as error:
        raise _cannot_open(path, error) from None
    with file:
        try:
            info = os.fstat(file.fileno())
        except OSError as error:
            raise _cannot_read(path, error) from None
        _check_stat(info, path)
        yield path, file, info.st_size


def _opener(path, flags):
    # O_NONBLOCK: a pipe swapped in after the stat above must not block the open for ever; it
    # is then refused by the fstat. It changes nothing for a regular file.
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))


def _cannot_open(path: str, error: OSError) -> UserError:
    if error.errno in (errno.ENOENT, errno.ELOOP) and os.path.lexists(path):
        # the link itself is there; what it points at is not
        return UserError(f"{path} is a symbolic link that leads nowhere (to a missing file, or round in a loop)")
    if error.errno == errno.ENOENT:
        return UserError(f"snapshot not found: {path}")
    if error.errno == errno.EISDIR:
        return UserError(f"{path} is a folder, not a snapshot file")
    if error.errno == errno.ENXIO:  # a socket, or a device without its driver
        return UserError(f"{path} is not a regular file (a pipe, device or socket), so not a snapshot")
    return _cannot_read(path, error)


def _check_stat(info: os.stat_result, path: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path} is a folder, not a snapshot file")
    if not stat.S_ISREG(info.st_mode):  # a pipe would block the read below for ever
        raise UserError(f"{path} is not a regular file (a pipe, device or socket), so not a snapshot")
    _check_size(info.st_size, path)


def _check_size(size: int, path: str) -> None:
    if size == 0:
        raise UserError(f"{path} is empty (0 bytes), not a snapshot")
    if size > MAX_SNAPSHOT_BYTES:
        raise UserError(f"{path} is {format_bytes(size)}, more than any dqnviz snapshot "
                        f"(at most {format_bytes(MAX_SNAPSHOT_BYTES)}; a Nature network takes 13 MB): not a snapshot")


def _check_contents(file, path: str) -> None:
    """Refuse a file (open, at its start) that is a pickle, an HDF5 file, or not a zip archive;
    the file is left at its start."""
    try:
        head = file.read(4)
        file.seek(0)
        is_zip = zipfile.is_zipfile(file)
        file.seek(0)
    except OSError as error:
        raise _cannot_read(path, error) from None
    if head[:1] == b"\x80" or path.endswith((".pkl", ".pickle", ".pt", ".pth")):
        raise UserError(f"{path} looks like a pickle; dqnviz snapshots are .keras files and never pickles, which could run code")
    if head == b"\x89HDF":
        raise UserError(f"{path} is an HDF5 file, not a dqnviz snapshot (.keras)")
    if not is_zip:
        raise UserError(f"{path} is not a dqnviz snapshot (not a .keras archive, or the file is corrupt)")


def _cannot_read(path, error: OSError) -> UserError:
    return UserError(f"cannot read {path}: {error.strerror or error}")


# --- the archive -------------------------------------------------------------------------------


# zipfile and zlib raise these for a damaged archive (a flipped bit, an encrypted or unknown
# compression member, a cut-off stream); they all mean "corrupt" to the user.
ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, RuntimeError,
                  NotImplementedError, ValueError, OSError)


@contextlib.contextmanager
def open_archive(file, path: str):
    """The snapshot's zip archive in ``file`` (an open file or a ``BytesIO`` of its bytes), open,
    after its member list has passed :func:`_check_members`; ``path`` is what messages name."""
    try:
        archive = zipfile.ZipFile(file)
    except ARCHIVE_ERRORS as error:
        raise _corrupt(path, error) from None
    with archive:
        _check_members(archive, path)
        yield archive


def _corrupt(path, error: BaseException) -> UserError:
    if isinstance(error, OSError) and not isinstance(error, zipfile.BadZipFile) and error.errno is not None:
        return _cannot_read(path, error)
    detail = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return UserError(f"{path}: the snapshot is corrupt ({detail})")


def _unsafe_member_name(name: str) -> bool:
    """True for a member name that would be unpacked outside its folder: absolute, with a drive,
    or with a ``..`` part (Keras unpacks every member of a snapshot into a temporary folder)."""
    name = name.replace("\\", "/")
    return name.startswith("/") or ".." in name.split("/") or name[1:2] == ":" or "\x00" in name


def _check_members(archive: zipfile.ZipFile, path: str) -> None:
    """Refuse an archive whose member list no dqnviz snapshot has, before any member is read.

    Sizes are the ones the archive declares, which bound what zipfile will ever inflate, so a
    zip bomb is refused without being unpacked.

    Raises:
        UserError: too many members, two with one name (which one would be read depends on the
            reader), a name pointing outside the archive, or a member bigger than any snapshot's.
    """
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise UserError(f"{path} holds {len(infos):,} members; a dqnviz snapshot holds 4: it is not a snapshot")
    seen = set()
    for info in infos:
        name = info.filename
        if name in seen:
            raise UserError(f"{path} holds two members named {name!r}: it is damaged or was tampered with, "
                            f"and dqnviz does not guess which one to trust")
        seen.add(name)
        if _unsafe_member_name(name):
            raise UserError(f"{path} holds a member named {name!r}, which points outside the archive: "
                            f"it was tampered with, not written by dqnviz")
        limit = MAX_JSON_BYTES if name.endswith(".json") else MAX_SNAPSHOT_BYTES
        if info.file_size > limit:
            raise UserError(f"{path}: its member {name!r} would unpack to {format_bytes(info.file_size)} (from "
                            f"{format_bytes(info.compress_size)}); a snapshot's is at most {format_bytes(limit)}, "
                            f"so it is damaged or a zip bomb, and was not unpacked")
    total = sum(info.file_size for info in infos)
    if total > MAX_SNAPSHOT_BYTES:
        raise UserError(f"{path}: its members would unpack to {format_bytes(total)}; a snapshot's are at most "
                        f"{format_bytes(MAX_SNAPSHOT_BYTES)}, so it is damaged or a zip bomb, and was not unpacked")


# --- the metadata and the model config ---------------------------------------------------------


def read_json(archive: zipfile.ZipFile, name: str, path: str):
    """Member ``name`` of a checked archive, parsed: dqnviz's metadata (checked with
    :func:`_check_meta`) or Keras's model config (a dict)."""
    if name not in archive.namelist():
        if name == META_MEMBER:
            if "config.json" in archive.namelist():
                raise UserError(f"{path} is a Keras model but not a dqnviz snapshot (it has no {META_MEMBER})")
            numpy = all(member.endswith(".npy") for member in archive.namelist())
            raise UserError(f"{path} is a {'numpy' if numpy else 'zip'} archive, not a dqnviz snapshot "
                            f"(it has no {META_MEMBER} and no Keras model)"
                            + ("; a run's .optimizer.npz and .validation.npz sit beside its snapshots"
                               if numpy else ""))
        raise UserError(f"{path}: the snapshot is damaged (it has no {name}, the model's description)")
    what = "the snapshot's metadata" if name == META_MEMBER else "the model's description"
    try:
        data = archive.read(name)
    except ARCHIVE_ERRORS as error:
        raise _corrupt(path, error) from None
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:  # deep nesting: RecursionError
        detail = "nested too deeply" if isinstance(error, RecursionError) else str(error)[:160]
        raise UserError(f"{path}: {what} ({name}) is corrupt ({detail})") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: {what} ({name}) is a JSON {_json_type(value)}, "
                        f"not an object: it is damaged or was not written by dqnviz")
    if name == META_MEMBER:
        _check_meta(value, path)
    return value


def _json_type(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


# The types of the metadata fields that the commands read, where present (None where allowed).
_META_TYPES = {
    "game": (str,), "run": (str,), "epoch": (int,), "total_steps": (int,), "train_steps_done": (int,),
    "action_names": (list,), "actions": (list,), "preprocessing": (dict,), "config": (dict,),
    "rom": (dict,), "test_score": (dict, type(None)), "interrupted": (dict, bool, type(None)),
}
_TYPE_NAMES = {str: "a string", int: "a whole number", list: "a list", dict: "an object"}


def _check_meta(meta: dict, path: str) -> None:
    """Refuse metadata from a newer dqnviz, or whose fields have the wrong types.

    Raises:
        UserError: ``format`` is newer than :data:`FORMAT_VERSION` (naming the dqnviz that wrote
            it) or not a format number, or a field the commands read has another type.
    """
    from dqnviz import __version__

    if "format" in meta:
        fmt = meta["format"]
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
            raise UserError(f"{path}: the snapshot's metadata ({META_MEMBER}) is damaged "
                            f"('format' is {fmt!r:.40}, not a format number)")
        if fmt > FORMAT_VERSION:
            writer = meta.get("dqnviz_version")
            known = isinstance(writer, str) and len(writer) < 40 and writer.isprintable()
            needs = f"dqnviz {writer} or newer" if known else "a newer dqnviz"
            raise UserError(f"{path} is a snapshot of format {fmt}, which needs {needs}; this is dqnviz "
                            f"{__version__}, which reads format {FORMAT_VERSION}: upgrade dqnviz "
                            f"(pip install --upgrade dqnviz)")
    for key, types in _META_TYPES.items():
        value = meta.get(key)
        if key in meta and (not isinstance(value, types) or isinstance(value, bool) and bool not in types):
            raise UserError(f"{path}: the snapshot's metadata ({META_MEMBER}) is damaged ({key!r} is a JSON "
                            f"{_json_type(value)}, not {_TYPE_NAMES[types[0]]})")
    for key, kind in (("action_names", str), ("actions", int)):
        if any(not isinstance(item, kind) or isinstance(item, bool) for item in meta.get(key) or []):
            raise UserError(f"{path}: the snapshot's metadata ({META_MEMBER}) is damaged ({key!r} holds "
                            f"something other than {'strings' if kind is str else 'whole numbers'})")
    from dqnviz.config import TrainConfig

    wrong = TrainConfig.wrong_type(meta.get("config") or {})
    if wrong is None and isinstance(meta.get("interrupted"), dict):
        wrong = _sitting_wrong_type(meta["interrupted"])
    if wrong is not None:
        raise UserError(f"{path}: the snapshot's metadata ({META_MEMBER}) is damaged ({wrong})")


# The figures an ``_interrupted`` snapshot keeps of the phase it stopped in (statistics.PhaseStats.carried)
_SITTING_TYPES = {"phase": str, "steps_done": int, "updates": int, "cost_count": int, "seconds": float,
                  "cost_sum": float, "game_scores": list}


def _sitting_wrong_type(sitting: dict) -> str | None:
    """The first of an interrupted sitting's figures that is not what it should be (counts are
    whole numbers of at least 0, seconds and sums numbers, scores a list of numbers), in words."""
    if "seconds" in sitting and "steps_done" not in sitting:  # what the figures are counted against
        return "'interrupted' has 'seconds' but no 'steps_done'"
    for key, kind in _SITTING_TYPES.items():
        if key not in sitting:
            continue
        value = sitting[key]
        if kind is float:
            fits = _is_number(value)
        elif kind is int:
            fits = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif kind is list:
            fits = isinstance(value, list) and all(_is_number(item) for item in value)
        else:
            fits = isinstance(value, kind)
        if not fits:
            wanted = {str: "a string", int: "a whole number of at least 0", float: "a number",
                      list: "a list of numbers"}[kind]
            return f"'interrupted' has {key!r} {value!r:.40}, not {wanted}"
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def interrupted_sitting(meta: dict) -> dict | None:
    """What an ``_interrupted`` snapshot says of the phase it stopped in, or None for a snapshot
    that ends a phase: its figures (``phase``, ``steps_done``, ``seconds``, … as
    :meth:`dqnviz.statistics.PhaseStats.carried` keeps them), or, for an older snapshot that says only
    ``true``, ``{"phase": "train"}``: its steps are unknown, so a resumed epoch trains from its start."""
    value = meta.get("interrupted")
    if not value:
        return None
    return value if isinstance(value, dict) else {"phase": "train"}


def check_resumable(meta: dict, path) -> None:
    """Refuse, in one line, a snapshot that ``dqnviz train --resume`` cannot go on from: one whose
    metadata lacks the game or the epoch (other commands need neither)."""
    missing = [key for key in ("game", "epoch") if key not in meta]
    if missing:
        raise UserError(f"{path}: the snapshot's metadata ({META_MEMBER}) has no {' or '.join(map(repr, missing))}, "
                        f"so a run cannot resume from it: it is damaged or was not written by dqnviz train")


# Layers whose loading would run code stored in the file (a lambda's bytecode) or load a program
# or file that the config names. Keras refuses them in safe mode, but one call of
# keras.config.enable_unsafe_deserialization() turns safe mode off for the whole process, and
# dqnviz's networks never hold one: so they are refused here, before Keras reads the config.
_CODE_CLASSES = {"__lambda__", "Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer",
                 "StringLookup", "IntegerLookup", "TextVectorization"}


def check_model_config(config: dict, path: str) -> None:
    """Refuse a Keras model config that names code: a Lambda (or another code-running layer), or
    a class outside Keras that this program has not registered (dqnviz's ``DuelingQ`` is).

    The walk is iterative, as a hostile config may nest as deep as json allows.

    Raises:
        UserError: naming the layer or class.
    """
    import keras

    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        name, module = node.get("class_name"), node.get("module")
        if not isinstance(name, str):
            continue
        if name in _CODE_CLASSES:
            what = "a Lambda layer (Python code stored in the file)" if "ambda" in name else f"a {name} layer (it loads code or files named in the file)"
            raise UserError(f"{path}: refusing to load: its model holds {what}, which dqnviz never loads; "
                            f"dqnviz's networks have none")
        if isinstance(module, str) and module != "builtins" and module != "keras" and not module.startswith("keras."):
            registered = node.get("registered_name")
            if not (isinstance(registered, str) and keras.saving.get_registered_object(registered) is not None):
                shown = f"{module}.{name}" if f"{module}.{name}".isprintable() else ascii(f"{module}.{name}")
                raise UserError(f"{path}: refusing to load: its model names the class {shown[:120]}, which is "
                                f"neither part of Keras nor registered in this program (dqnviz's layers are); "
                                f"loading never imports code that a snapshot names")


# --- the weights -------------------------------------------------------------------------------


# What h5py and HDF5 raise for a weights member that is not a readable HDF5 file.
_HDF5_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError)


def check_weights_file(archive: zipfile.ZipFile, path: str) -> None:
    """Refuse a weights member (``model.weights.h5``) that would make loading read other files.

    HDF5 can keep a dataset's data in other files (external storage), map it from datasets in
    other files (a virtual dataset), or link to an object in another file (an external link);
    reading such a dataset or following such a link opens files that the snapshot names. Keras
    writes none of these, nor soft links, so every object in the file is visited (through hard
    links only; no link is followed and no data is read) and the first one found is refused.
    An archive without this member is left to Keras, which then says what it lacks.

    Raises:
        UserError: one line naming the link or dataset, or saying the weights are unreadable.
    """
    import h5py

    if WEIGHTS_MEMBER not in archive.namelist():
        return
    try:
        data = archive.read(WEIGHTS_MEMBER)
    except ARCHIVE_ERRORS as error:
        raise _corrupt(path, error) from None
    try:
        with h5py.File(io.BytesIO(data), "r") as weights:
            found = _reference_outside(weights, h5py, path)
    except _HDF5_ERRORS as error:
        detail = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: could not load the model ({WEIGHTS_MEMBER} is not a readable HDF5 file: "
                        f"{detail})") from None
    if found:
        raise UserError(f"{path}: refusing to load: its weights ({WEIGHTS_MEMBER}) hold {found}; "
                        f"Keras never writes one, so the file was tampered with, and nothing in it was loaded")


def _reference_outside(weights, h5py, path: str) -> str:
    """What in the open HDF5 file ``weights`` could lead a reader to other files (or anywhere but
    a hard link), described for a message; "" if nothing does. Iterative, each object once, at
    most :data:`MAX_WEIGHT_LINKS` links (more is a UserError naming ``path``)."""
    stack = [("", weights)]
    seen = {weights.id}
    links = 0
    while stack:
        where, group = stack.pop()
        for name in group:  # the names of its links, none resolved
            links += 1
            if links > MAX_WEIGHT_LINKS:
                raise UserError(f"{path}: its weights ({WEIGHTS_MEMBER}) hold more than {MAX_WEIGHT_LINKS:,} "
                                f"links; a dqnviz snapshot's hold a few dozen: it is not a snapshot")
            at = _shown(f"{where}/{name}")
            try:
                link = group.get(name, getlink=True)
            except TypeError:  # h5py knows hard, soft and external links only
                return f"a user-defined link (of a kind h5py does not know) at {at}"
            if isinstance(link, h5py.ExternalLink):
                return (f"an external link at {at} (to {_shown(link.path)} in the file {_shown(link.filename)}), "
                        f"which would make loading read that file")
            if isinstance(link, h5py.SoftLink):
                return f"a soft link at {at} (to {_shown(link.path)})"
            item = group[name]
            if item.id in seen:
                continue
            seen.add(item.id)
            if isinstance(item, h5py.Group):
                stack.append((f"{where}/{name}", item))
            elif isinstance(item, h5py.Dataset):
                if item.external:
                    files = ", ".join(_shown(str(entry[0])) for entry in item.external[:3])
                    return (f"a dataset at {at} whose data is stored in other files ({files}), "
                            f"which loading would read")
                if item.is_virtual:
                    return (f"a virtual dataset at {at} (its data is mapped from other files, "
                            f"which loading would read)")
    return ""


def _shown(text: str) -> str:
    """``text`` quoted for a one-line message: escaped if not printable, cut at 120 characters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    shown = repr(text) if text.isprintable() else ascii(text)
    return shown if len(shown) <= 120 else shown[:117] + "..."


def check_loaded(model, meta: dict, path: str) -> None:
    """Refuse a loaded model whose metadata names another number of actions, or whose weights
    hold NaN or ±inf (the trainer never saves those: a diverged run stops without a snapshot).

    Raises:
        UserError: one line naming the mismatch, or the first layer with a non-finite weight.
    """
    import numpy as np

    names = meta.get("action_names")
    outputs = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
    if names and outputs is not None and len(names) != outputs:
        raise UserError(f"{path}: the snapshot's metadata ({META_MEMBER}) is damaged (it names {len(names)} "
                        f"action{'' if len(names) == 1 else 's'}, but the network has {outputs} outputs)")
    for layer in model.layers:
        bad = sum(int(np.size(w) - np.count_nonzero(np.isfinite(w))) for w in layer.get_weights())
        if bad:
            raise UserError(f"{path}: the network's weights hold {bad:,} NaN or infinite values (layer "
                            f"{layer.name}), so its Q-values mean nothing: the file is damaged or its "
                            f"training diverged; use an earlier snapshot")


# --- what --resume reads beside a snapshot -----------------------------------------------------


def npz_within_limits(path) -> bool:
    """Whether the ``.npz`` at ``path`` is a zip archive whose members are within
    :data:`MAX_SNAPSHOT_BYTES` and whose arrays declare no more bytes than their members hold.

    numpy allocates an array of the shape its header declares before reading the data, so a
    file of a few bytes could otherwise ask for petabytes (a MemoryError, not a None).
    """
    import math

    from numpy.lib import format as npy

    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if sum(info.file_size for info in infos) > MAX_SNAPSHOT_BYTES:
                return False
            for info in infos:
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    major, _ = npy.read_magic(member)
                    read_header = getattr(npy, f"read_array_header_{major}_0", npy.read_array_header_2_0)
                    shape, _, dtype = read_header(member)
                if math.prod(shape) * dtype.itemsize > info.file_size:
                    return False
    except (*ARCHIVE_ERRORS, TypeError):
        return False
    return True
