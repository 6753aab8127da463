"""Which Keras backend a command runs, chosen before Keras is imported, and TensorFlow's start-up
log kept off the terminal.

Keras reads ``KERAS_BACKEND`` once, on its first import, so this module imports no Keras (nor
TensorFlow or JAX) until :func:`quiet_backends`, called once the backend is chosen: under
TensorFlow it imports TensorFlow with its log silenced, under JAX it keeps Keras from importing
TensorFlow at all (:func:`keras_without_tensorflow`); nor does
:mod:`dqnviz.backend`, which Python runs first to import this one: it imports Keras only when one
of its functions is first used.
"""

from __future__ import annotations

import importlib
import os
import sys

__all__ = ["BACKEND_PACKAGES", "choose_backend", "compilation_cache", "keras_without_tensorflow", "quiet_backends",
           "start_for_the_api"]

BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax"}


def choose_backend() -> str:
    """The Keras backend to run: ``KERAS_BACKEND`` when set, else the one in Keras's own config
    file (``$KERAS_HOME/keras.json``, default ``~/.keras/keras.json``) when it is installed, else
    TensorFlow when it is installed and JAX when only JAX is (a GPU machine with JAX but no
    TensorFlow). The choice is written to ``KERAS_BACKEND`` before Keras is imported.

    Raises:
        UserError: the chosen backend, or both, are not installed (one line saying what to install).
    """
    from importlib.util import find_spec

    from dqnviz.errors import UserError

    def installed(name):
        try:
            return find_spec(BACKEND_PACKAGES[name]) is not None
        except (ImportError, ValueError):
            return False

    name = os.environ.get("KERAS_BACKEND")
    if not name:
        # Keras writes keras.json on its first import, naming the backend of that moment (its
        # default, tensorflow): a backend it names that is not installed is no user's choice.
        configured = _configured_backend()
        name = configured if configured in BACKEND_PACKAGES and installed(configured) else None
    if not name:
        name = next((b for b in ("tensorflow", "jax") if installed(b)), None)
        if name is None:
            raise UserError("dqnviz needs TensorFlow or JAX as Keras's backend and neither is installed: "
                            "pip install 'dqnviz[tensorflow]' (or 'dqnviz[jax]')")
    if name not in BACKEND_PACKAGES:
        raise UserError(f"KERAS_BACKEND={name!r} is not one dqnviz supports: use tensorflow or jax")
    if not installed(name):
        other = next(b for b in BACKEND_PACKAGES if b != name)
        hint = f", or run with KERAS_BACKEND={other}" if installed(other) else ""
        raise UserError(f"the Keras backend {name!r} is not installed: pip install 'dqnviz[{name}]'{hint}")
    os.environ["KERAS_BACKEND"] = name
    return name


def _configured_backend() -> str | None:
    """The ``backend`` of Keras's config file, if there is one and it names one."""
    import json

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as file:
            backend = json.load(file).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return backend if isinstance(backend, str) and backend else None


def keras_without_tensorflow() -> None:
    """Under JAX, keep Keras from importing TensorFlow where it is installed: as on a GPU machine
    that has JAX and no TensorFlow.

    Keras imports TensorFlow, when it finds it, only to look for its types while describing a
    layer (``get_config``, so saving a snapshot too) and to seed its generator beside JAX's
    (``keras.utils.set_random_seed``): 4 s of a 2-core CPU's time and 0.5 GB, for nothing a JAX
    run uses. Keras's own switch for this is the lazy module's ``_available``; on a Keras
    without it, nothing changes.
    """
    from keras.src.utils import module_utils  # keras itself: KERAS_BACKEND is set by now

    tensorflow = getattr(module_utils, "tensorflow", None)
    if tensorflow is not None and getattr(tensorflow, "_available", True) is None:  # not imported yet
        tensorflow._available = False


def compilation_cache() -> str | None:
    """Under JAX, keep compiled functions on disk between commands: the same network's passes are
    compiled by every ``dqnviz test``, ``nvis`` and ``compare`` (10–12 s of a 2-core CPU's time,
    about a quarter of a second ``nvis``), and a resumed or repeated training run compiles its
    update again. JAX keys each entry by the computation and its own version, so a stale entry
    is never used.

    The folder is ``$XDG_CACHE_HOME/dqnviz/jax`` (``~/.cache/dqnviz/jax``); a
    ``JAX_COMPILATION_CACHE_DIR`` of the user's own is left as it is, ``DQNVIZ_COMPILE_CACHE=0``
    turns the cache off, and a folder that cannot be made leaves it off. Returns the folder used,
    or None.
    """
    import jax

    if os.environ.get("DQNVIZ_COMPILE_CACHE", "").strip() == "0":
        return None
    if os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir or os.environ["JAX_COMPILATION_CACHE_DIR"]
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(home, "dqnviz", "jax")
    try:
        os.makedirs(folder, exist_ok=True)
        # JAX writes an entry in place, not atomically, and never rewrites one that exists: an
        # entry left empty by a killed command would be recompiled by every command after it
        with os.scandir(folder) as entries:
            for entry in entries:
                if (entry.name.endswith("-cache") and entry.is_file(follow_symlinks=False)
                        and entry.stat(follow_symlinks=False).st_size == 0):
                    os.unlink(entry.path)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)  # ours take 0.2–0.6 s each
    return folder


def quiet_backends(cache: bool = True) -> None:
    """Keep TensorFlow's start-up log lines (oneDNN, CPU features) off the user's terminal; under
    JAX keep Keras from importing TensorFlow, and (``cache``, the commands) keep what JAX compiles."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ["KERAS_BACKEND"] == "jax":
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # should anything import TensorFlow after all
        keras_without_tensorflow()
        if cache:
            compilation_cache()
        return
    if "tensorflow" in sys.modules:
        return
    # The remaining lines come from C++ before logging is configured: silence fd 2 during import.
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                importlib.import_module("tensorflow")
            except Exception:
                pass  # keras reports a missing or broken TensorFlow itself, with the real message
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def start_for_the_api() -> None:
    """The first use of a dqnviz name that needs Keras, from Python (a notebook): start the backend
    as the command line does, TensorFlow's start-up log kept off the notebook and, under JAX,
    Keras kept from importing TensorFlow. Nothing when Keras is already imported (the user's own
    set-up stands) or no backend can be chosen (Keras then says what is missing in its own
    words); JAX's compilation cache, a setting of the whole process, stays the user's to turn on
    (:func:`compilation_cache`)."""
    if "keras" in sys.modules:
        return
    try:
        choose_backend()
    except Exception:
        return
    quiet_backends(cache=False)
