"""Snapshots: one ``.keras`` file holding the model and dqnviz's metadata, loaded safely.

Between training and analysis in the data flow: the trainer writes them; test, play, record,
nvis and compare load them. Also here: the network a run started from
(:func:`starting_point`) and how far each kernel moved from it (:func:`kernel_movement`).

A snapshot is the zip archive that ``model.save`` writes (``config.json``, ``model.weights.h5``)
plus one more member, ``dqnviz.json``, with the metadata: game, ROM MD5, action set and names,
preprocessing, epoch, total steps, config, backend, and that epoch's test score. There is no
pickle anywhere, and nothing in the file can run code: :func:`load_snapshot` reads the file once
and, before Keras sees those bytes, checks its member names and declared sizes (no path outside
it, no name twice, no zip bomb), its metadata's format, that its model config names no Lambda
layer and no class outside Keras that the program has not registered, and that its weights file
reads no other file; Keras then loads those same bytes in safe mode. The checks live in
:mod:`dqnviz.snapshot_checks`. A bad file is a one-line :class:`~dqnviz.errors.UserError`. Files
are written to a temporary name in the target folder and moved into place with ``os.replace``
(:func:`dqnviz.outputs.atomic_write`), so a crash never leaves half a snapshot.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dqnviz.errors import UserError
from dqnviz.outputs import atomic_write
from dqnviz.snapshot_checks import (FORMAT_VERSION, MAX_JSON_BYTES, MAX_MEMBERS, MAX_SNAPSHOT_BYTES, META_MEMBER,
                                    check_loaded, check_model_config, check_weights_file, npz_within_limits,
                                    open_archive, opened_snapshot, read_json, snapshot_bytes)

if TYPE_CHECKING:  # numpy is imported where it is used, so that reading a snapshot's metadata stays light
    import numpy as np

# The limits are kept importable from here, where they were first defined; the limits that loading
# applies are those of dqnviz.snapshot_checks. The output-file helpers live in dqnviz.outputs.
__all__ = ["FORMAT_VERSION", "MAX_JSON_BYTES", "MAX_MEMBERS", "MAX_SNAPSHOT_BYTES", "META_MEMBER", "Snapshot",
           "StartingPoint", "kernel_changes", "kernel_movement", "layer_kernels",
           "load_optimizer_state", "load_snapshot", "load_validation_states", "read_meta", "save_optimizer_state",
           "save_snapshot", "save_validation_states", "starting_point"]


@dataclass
class Snapshot:
    """A loaded snapshot.

    Attributes:
        model: the ``keras.Model`` (uint8 states (N, 84, 84, history) → Q-values), weights only;
            None once ``dqnviz compare`` has let it go (``gather(…, let_go=True)``).
        meta: the metadata (``dqnviz.json``): ``game``, ``rom_md5``, ``actions`` (ALE action
            ids) and ``action_names``, ``preprocessing`` (frame skip, history, no-op starts,
            sticky actions, frame cap), ``run``, ``epoch``, ``total_steps`` and
            ``train_steps_done``, ``config`` (the training options; ``config.seed`` is the seed the
            last run played with), ``init_seed`` (the seed that drew the run's first weights, kept
            through every resume) and ``initialised_under`` (the backend that drew them), ``movement``
            (how far each kernel moved from them), ``backend`` and the Keras and
            dqnviz versions, ``test_score`` (``average``, ``std``, ``min``, ``max``, …; None when
            the epoch was not tested), ``created``, ``run_id`` (one run's, kept through its
            resumes; absent before 0.1.0's run identities) and ``format``.
        path: the file it was loaded from (None for one built in memory).
        label: the name a report shows, where the file's own would be ambiguous (None: :attr:`name`
            is the file's stem).
    """

    model: object
    meta: dict = field(default_factory=dict)
    path: str | None = None
    label: str | None = None

    def __repr__(self) -> str:
        """Which agent, not its whole metadata (``meta`` has it): a notebook cell shows a line."""
        score = (self.meta.get("test_score") or {}).get("average")
        return (f"Snapshot({self.name!r}: {self.meta.get('game', '?')}, epoch {self.meta.get('epoch', '?')}, "
                f"test {'–' if score is None else f'{score:.2f}'}, "
                f"{'network let go' if self.model is None else f'{self.model.count_params():,} weights'}, "
                f"path={self.path!r})")

    @property
    def name(self) -> str:
        """``breakout_77`` for ``snapshots/breakout_77.keras`` (or :attr:`label`, when set)."""
        if self.label:
            return self.label
        return Path(self.path).stem if self.path else f"{self.meta.get('game', 'model')}_{self.meta.get('epoch', 0)}"

    @property
    def action_names(self) -> list[str]:
        """The ALE names of the network's outputs (NOOP, FIRE, …), or ``"0"``, ``"1"``, … when
        the metadata has none."""
        return list(self.meta.get("action_names") or [str(i) for i in range(self.model.output_shape[-1])])

    @property
    def history(self) -> int:
        """Frames stacked per state: the network input's channels (``train --history``)."""
        return int(self.model.inputs[0].shape[-1])

    def check_history(self, command: str, needs: str, least: int, most: int | None = None, why: str = "") -> None:
        """Refuse, before any game is played, a snapshot whose states stack too few or too many
        frames for ``command``, e.g. ``needs="4"`` with ``least=most=4``.

        Raises:
            UserError: ``history`` is outside ``least..most``; the message says ``why``.
        """
        from dqnviz.progress import plural

        if self.history < least or (most is not None and self.history > most):
            raise UserError(f"{self.name} stacks {self.history} {plural('frame', self.history)} per state (trained "
                            f"with --history {self.history}); {command} needs {needs}, as {why}")


def save_snapshot(path, model, meta: dict) -> Path:
    """Write ``model`` and ``meta`` to ``path`` atomically (weights only: no optimizer state).

    Args:
        path: the ``.keras`` file to write; its folder must exist. A crash leaves either the old
            file or the new one, never half of one.
        model: a ``keras.Model``; custom layers must be registered Keras serialisables, as
            loading runs in safe mode.
        meta: JSON-serialisable metadata (numpy scalars and arrays are converted). Nothing is
            required, but the commands read ``game`` (to replay it), ``action_names``,
            ``preprocessing``, ``epoch`` and ``run`` (see :class:`Snapshot`); ``format`` is added.

    Returns:
        The path written.
    """
    meta = {"format": FORMAT_VERSION, **meta}
    text = json.dumps(meta, indent=1, sort_keys=True, default=_json_default)

    def write(tmp):
        model.save(tmp, include_optimizer=False) if _accepts_include_optimizer() else model.save(tmp)
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(META_MEMBER, text)

    return atomic_write(path, write)


def save_optimizer_state(path, state: dict, train_steps_done: int) -> Path:
    """Write an optimizer's variables (``{name: array}``) to an ``.npz`` file, atomically.

    This is what ``--resume`` needs besides the weights; snapshots themselves stay weights only.
    ``train_steps_done`` ties the file to the snapshot it belongs with.
    """
    import numpy as np

    names = list(state)
    arrays = {f"v{i}": np.asarray(state[name]) for i, name in enumerate(names)}
    return atomic_write(path, lambda tmp: np.savez(tmp, names=np.array(names, dtype=str),
                                                   train_steps_done=np.int64(train_steps_done), **arrays))


def load_optimizer_state(path, train_steps_done: int) -> dict | None:
    """The state saved by :func:`save_optimizer_state`, or None if it belongs to another point of
    the run (another ``train_steps_done``), cannot be read, or is not one an optimizer could have
    saved (members of the wrong shape or kind, values that are not finite real numbers). Never
    unpickles, and never allocates more than the file holds (see
    :func:`~dqnviz.snapshot_checks.npz_within_limits`)."""
    import numpy as np

    def read(stored):
        steps, names = stored["train_steps_done"], stored["names"]
        if steps.shape != () or steps.dtype.kind not in "iu" or int(steps) != int(train_steps_done):
            return None
        if names.ndim != 1 or names.dtype.kind != "U":
            return None
        state = {str(name): stored[f"v{i}"] for i, name in enumerate(names)}
        # a hand-made or damaged file: only real, finite numbers are an optimizer's state (NaN
        # moments would pass for a diverged network, complex ones for nothing at all)
        if not all(v.dtype.kind in "iuf" and np.all(np.isfinite(v)) for v in state.values()):
            return None
        return state

    return _read_npz(path, read)


def save_validation_states(path, states) -> Path:
    """Write the fixed states that ``meanq`` averages over to a compressed ``.npz``, atomically.

    They are drawn once, from epoch 0's random play. Kept beside the snapshots, they let a resumed
    run measure meanq on the same states, so its curve continues instead of stepping. Atari
    frames compress well: 500 Breakout states (14 MB of uint8) take 0.2 MB.
    """
    import numpy as np

    states = np.asarray(states, np.uint8)
    return atomic_write(path, lambda tmp: np.savez_compressed(tmp, states=states))


def load_validation_states(path, state_shape: tuple) -> np.ndarray | None:
    """The states saved by :func:`save_validation_states`, or None if absent, unreadable or of
    another state shape (``(H, W, history)``). Never unpickles, and never allocates more than
    the file holds (see :func:`~dqnviz.snapshot_checks.npz_within_limits`)."""
    import numpy as np

    states = _read_npz(path, lambda stored: stored["states"])
    if states is None or states.dtype != np.uint8 or states.ndim != 4 \
            or tuple(states.shape[1:]) != tuple(state_shape) or len(states) == 0:
        return None
    return states


def _read_npz(path, read):
    """``read(stored)`` on the ``.npz`` file ``path`` opened without pickles, or None if the file
    is absent, unreadable, damaged, or lacks a member ``read`` asks for. Never unpickles, and never
    allocates more than the file holds (see :func:`~dqnviz.snapshot_checks.npz_within_limits`)."""
    import numpy as np

    if not npz_within_limits(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return read(stored)
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
        return None


def _accepts_include_optimizer() -> bool:
    import inspect

    import keras

    try:
        return "include_optimizer" in inspect.signature(keras.Model.save).parameters
    except (TypeError, ValueError):
        return False


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_meta(path) -> dict:
    """Read only the metadata of a snapshot (fast: no model is built).

    The archive is checked first (see :func:`load_snapshot`), and only ``dqnviz.json`` is read.

    Raises:
        UserError: the file is missing, unreadable, not a snapshot, damaged or tampered with, or
            from a newer dqnviz; one line that says which.
    """
    with opened_snapshot(path) as (path, file), open_archive(file, path) as archive:
        meta = read_json(archive, META_MEMBER, path)
    return meta


def load_snapshot(path) -> Snapshot:
    """Load a snapshot safely: no pickle, and nothing in the file can run code.

    The file is read once (see :func:`~dqnviz.snapshot_checks.snapshot_bytes`), and before Keras
    sees those bytes the archive is checked: every member name stays inside it, no name appears
    twice, the sizes it declares are within :data:`MAX_SNAPSHOT_BYTES` and
    :data:`MAX_JSON_BYTES` (so a zip bomb is never inflated), the metadata is from this format
    or an older one, the model config names no Lambda layer and no class outside Keras that
    this program has not registered (this holds even where
    ``keras.config.enable_unsafe_deserialization()`` was called), and the weights file holds no
    link, external storage or virtual dataset that would read other files. Keras then loads
    those same bytes (never the path again) in safe mode, and the weights must be finite.

    Args:
        path: a snapshot written by ``dqnviz train`` or :func:`save_snapshot`. Any suffix is
            accepted (a copied ``breakout_13.keras.bak``, say): the contents decide.

    Returns:
        A :class:`Snapshot` with ``.model`` (a ``keras.Model``) and ``.meta`` (a dict).

    Raises:
        UserError: the file is missing, unreadable, a pickle, corrupt, tampered with, from a
            newer dqnviz, holds NaN or infinite weights, or is not a dqnviz snapshot; one line.

    Example::

        snapshot = load_snapshot("snapshots/pong_24.keras")
        snapshot.model.predict(states)  # (N, 84, 84, 4) uint8 -> (N, actions) Q-values
    """
    import importlib
    import warnings

    import keras

    importlib.import_module("dqnviz.network")  # registers DuelingQ for deserialisation

    path, data = snapshot_bytes(path)  # the file is read here, once: all below uses these bytes
    with open_archive(io.BytesIO(data), path) as archive:
        meta = read_json(archive, META_MEMBER, path)
        check_model_config(read_json(archive, "config.json", path), path)
        check_weights_file(archive, path)
    # Keras reads a path, so it gets the checked bytes as a file of their own, in a folder that
    # only this user can enter; whatever ``path`` names by now is never read again. The name
    # also gives Keras the .keras suffix it insists on, whatever the snapshot's own is.
    with tempfile.TemporaryDirectory(prefix="dqnviz-") as folder:
        readable = os.path.join(folder, "snapshot.keras")
        try:
            with open(readable, "xb") as copy:
                copy.write(data)
        except OSError as error:
            raise UserError(f"cannot load {path}: writing the copy that Keras reads to {folder} failed "
                            f"({error.strerror or error})") from None
        del data
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with _no_random_initial_weights():
                    model = keras.saving.load_model(readable, compile=False, safe_mode=True)
            except Exception as error:  # keras raises many kinds for a broken archive
                # its warnings about the half-loaded model say nothing the error does not
                raise UserError(f"{path}: could not load the model ({_keras_reason(error)})") from None
    for warning in caught:  # a model that loaded: its warnings go on, as if never caught
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    check_loaded(model, meta, path)
    return Snapshot(model=model, meta=meta, path=path)


@contextlib.contextmanager
def _no_random_initial_weights():
    """While Keras builds a model it loads, its random initializers return zeros.

    The file's weights replace whatever the layers start with, and under JAX each kernel shape's
    random draw first compiles a function: about 6 s of a Nature network's 6.5 s load on a 2-core
    CPU. (Keras refuses a file that lacks a weight, so no zero is ever kept.) The initializers are
    restored on the way out, so networks built afterwards draw as usual; one built by another
    thread during the load would start from zeros.
    """
    try:
        from keras.src.initializers.random_initializers import RandomInitializer
    except ImportError:  # another Keras layout: load as Keras does
        yield
        return
    import keras

    def zeros(self, shape, dtype=None):
        return keras.ops.zeros(shape, dtype=dtype)

    classes, pending = [], [RandomInitializer]
    while pending:
        cls = pending.pop()
        classes.append(cls)
        pending.extend(cls.__subclasses__())
    saved = {cls: cls.__dict__["__call__"] for cls in classes if "__call__" in cls.__dict__}
    for cls in saved:
        cls.__call__ = zeros
    try:
        yield
    finally:
        for cls, call in saved.items():
            cls.__call__ = call


def _keras_reason(error: Exception) -> str:
    """The line of a Keras loading error that says what is wrong, at most 200 characters."""
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    reason = lines[0]
    if "Exception encountered: " in text:  # a failed deserialisation wraps the real reason
        reason = text.split("Exception encountered: ", 1)[1].splitlines()[0]
    elif reason.endswith(":") and len(lines) > 1:  # "…could not be loaded. Example error message for <layer>:"
        layer = re.search(r"name=([^,>]+)", reason)
        reason = (f"layer {layer.group(1)}: " if layer else "") + lines[1]
    reason = re.sub(r"\s*(Target variable|Full object config):.*", "", reason)
    return reason[:200]


@dataclass
class StartingPoint:
    """Where one snapshot's training started, and how far its weights have moved since.

    ``movement`` maps each layer with a kernel to ``{"change": ‖W − W₀‖ / ‖W₀‖, "cosine": cos(W, W₀)}``
    (kernels flattened); it is empty when W₀ cannot be rebuilt and the snapshot recorded no
    figures of its own, and ``reason`` says why. ``source`` says where the figures came from:
    ``"rebuilt"`` (W₀ rebuilt here, so ``initial`` and ``change`` are set too, until ``dqnviz
    compare`` lets them go once the pairs that read them are done) or ``"recorded"`` (stored in
    the snapshot's metadata when the trainer saved it).
    """

    seed: int | None
    backend: str | None  # the backend whose seeded initialisers drew W₀
    initial: dict | None = None  # layer name -> initial kernel W₀
    change: dict = field(default_factory=dict)  # layer name -> W − W₀, flattened (float32)
    movement: dict = field(default_factory=dict)
    reason: str = ""
    source: str = ""
    # how build_q_network drew W₀: "independent", or "shared" for snapshots from before the
    # metadata recorded it (see dqnviz.network.build_q_network)
    initialisation: str = "shared"


def layer_kernels(model) -> dict:
    """Layer name -> kernel (the first weight) of every layer that has weights."""
    return {layer.name: layer.get_weights()[0] for layer in model.layers if layer.get_weights()}


def kernel_movement(trained: dict, initial: dict) -> dict:
    """How far each kernel moved: ``{name: {"change", "cosine"}}``.

    change = ‖W − W₀‖ / ‖W₀‖ and cosine = W·W₀ / (‖W‖ ‖W₀‖), kernels flattened, in float64
    (``nan`` where a norm is 0). Layers missing from ``initial`` are left out.
    """
    import numpy as np

    movement = {}
    for name, weights in trained.items():
        if name not in initial:
            continue
        w, w0 = np.ravel(weights).astype(np.float64), np.ravel(initial[name]).astype(np.float64)
        norm, norm_w = np.linalg.norm(w0), np.linalg.norm(w)
        movement[name] = {
            "change": float(np.linalg.norm(w - w0) / norm) if norm else float("nan"),
            "cosine": float(w @ w0 / (norm_w * norm)) if norm and norm_w else float("nan"),
        }
    return movement


def kernel_changes(trained: dict, initial: dict) -> dict:
    """``{name: W − W₀}``, flattened, float32 (what nvis and compare draw; the norms use float64)."""
    import numpy as np

    return {name: np.ravel(w).astype(np.float32) - np.ravel(initial[name]).astype(np.float32)
            for name, w in trained.items() if name in initial}


def _recorded_movement(meta: dict) -> dict:
    """The ``movement`` figures a snapshot's metadata holds, checked; {} if absent or malformed."""
    recorded = meta.get("movement")
    if not isinstance(recorded, dict):
        return {}
    movement = {}
    for name, figures in recorded.items():
        try:
            movement[str(name)] = {"change": float(figures["change"]), "cosine": float(figures["cosine"])}
        except (TypeError, KeyError, ValueError):
            return {}
    return movement


def starting_point(snapshot, measure: bool = True) -> StartingPoint:
    """Rebuild the weights a snapshot's run started from, and measure how far it moved from them
    (``measure=False``: only rebuild them, as a resumed trainer needs).

    The trainer builds its network as ``build_q_network(actions, dueling, history, seed)`` before
    the first update, with the seed the metadata records as ``init_seed`` (``config.seed`` in
    snapshots older than that key), and Keras's seeded initialisers draw from the backend's own generator, so
    the rebuild is exact under the backend the run started with (``initialised_under`` in the
    metadata, else ``backend``), and only there. ``initialisation`` in the metadata says how the
    kernels were drawn; snapshots without it drew them all from one initialiser ("shared"). Under another backend the figures the trainer
    recorded when it saved the snapshot are used, where it recorded them.
    """
    import keras

    from dqnviz.network import build_q_network

    meta, model = snapshot.meta, snapshot.model
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    # ``init_seed`` is the seed that drew W₀, kept unchanged by every resume; ``config.seed`` is
    # the seed the last run played with, which a resume with --seed changes. Older snapshots have
    # only the latter (right unless one of their resumes changed --seed).
    seed = meta["init_seed"] if "init_seed" in meta else config.get("seed")
    backend = meta.get("initialised_under") or meta.get("backend")
    start = StartingPoint(seed=int(seed) if seed is not None else None, backend=backend,
                          initialisation=meta.get("initialisation", "shared"))
    if seed is None:
        start.reason = "its metadata records no seed"
        return start
    if backend != keras.config.backend():
        start.movement = _recorded_movement(meta) if measure else {}
        if start.movement:
            start.source = "recorded"
        else:
            start.reason = (f"it started under {backend}, whose seeded initialisers draw other numbers than "
                            f"{keras.config.backend()}'s (KERAS_BACKEND={backend} shows it)")
        return start
    trained = layer_kernels(model)
    try:
        rebuilt = build_q_network(int(model.output_shape[-1]), dueling=bool(config.get("dueling")),
                                  history=int(config.get("history", 4)), seed=int(seed),
                                  initialisation=start.initialisation)
    except Exception as error:  # an unusual configuration: say so rather than fail the page
        start.reason = f"its network could not be rebuilt ({error})"
        return start
    initial = layer_kernels(rebuilt)
    if set(initial) != set(trained) or any(initial[k].shape != trained[k].shape for k in trained):
        start.reason = "its layers differ from the network dqnviz builds"
        return start
    start.initial = initial
    if measure:
        start.source = "rebuilt"
        start.movement, start.change = kernel_movement(trained, initial), kernel_changes(trained, initial)
    return start
