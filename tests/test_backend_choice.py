"""Which Keras backend the dqnviz command starts: KERAS_BACKEND, else keras.json, else an installed one."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from dqnviz.backend import choice
from dqnviz.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def require(*backends, skip_without: str = ""):
    """Fail unless each of ``backends`` is installed (tests/run.sh installs both: a missing one is a
    broken install, not a reason to skip); skip, saying ``skip_without``, if TensorFlow is not. The
    tests start Keras only in subprocesses, so this test process never imports it."""
    missing = [name for name in backends if importlib.util.find_spec(name) is None]
    assert not missing, f"not installed: {', '.join(missing)}"
    if skip_without and importlib.util.find_spec("tensorflow") is None:
        pytest.skip(skip_without)


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A machine with the given backends installed, no KERAS_BACKEND and an empty KERAS_HOME."""
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def with_backends(*names, config=None):
        if config is not None:
            (tmp_path / "keras.json").write_text(json.dumps(config))
        import importlib.util

        monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name in names else None)
        return choice.choose_backend

    yield with_backends
    os.environ.pop("KERAS_BACKEND", None)  # monkeypatch restores the test run's own value


def test_tensorflow_when_installed_else_jax(machine):
    assert machine("tensorflow", "jax")() == "tensorflow"
    assert os.environ["KERAS_BACKEND"] == "tensorflow"
    os.environ.pop("KERAS_BACKEND")
    assert machine("jax")() == "jax"  # a GPU machine with JAX and no TensorFlow
    assert os.environ["KERAS_BACKEND"] == "jax"


def test_the_environment_then_keras_json_decide(machine, monkeypatch):
    assert machine("tensorflow", "jax", config={"backend": "jax", "floatx": "float32"})() == "jax"
    # the keras.json Keras wrote on its first import names its default, which may not be installed
    assert machine("jax", config={"backend": "tensorflow"})() == "jax"
    assert machine("jax", config={"backend": "torch"})() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert machine("tensorflow", "jax")() == "tensorflow"


@pytest.mark.parametrize("installed, environment, message", [
    ((), None, "dqnviz needs TensorFlow or JAX as Keras's backend and neither is installed: "
               "pip install 'dqnviz[tensorflow]' (or 'dqnviz[jax]')"),
    (("jax",), "tensorflow", "the Keras backend 'tensorflow' is not installed: pip install 'dqnviz[tensorflow]', "
                             "or run with KERAS_BACKEND=jax"),
    (("tensorflow",), "jax", "the Keras backend 'jax' is not installed: pip install 'dqnviz[jax]', or run with "
                             "KERAS_BACKEND=tensorflow"),
    (("tensorflow", "jax"), "torch", "KERAS_BACKEND='torch' is not one dqnviz supports: use tensorflow or jax"),
])
def test_a_missing_or_unknown_backend_is_one_line(machine, monkeypatch, installed, environment, message):
    if environment:
        monkeypatch.setenv("KERAS_BACKEND", environment)
    with pytest.raises(UserError) as error:
        machine(*installed)()
    assert str(error.value) == message


def test_without_tensorflow_the_command_runs_on_jax(tmp_path):
    """TensorFlow made unimportable, KERAS_BACKEND unset: Keras starts on JAX instead of failing on import."""
    require("jax")
    script = textwrap.dedent("""
        import importlib.abc, sys
        class NoTensorFlow(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tensorflow":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, NoTensorFlow())
        from dqnviz.backend.choice import choose_backend
        choose_backend()
        import keras
        from dqnviz.snapshot import load_snapshot
        snapshot = load_snapshot("snapshots/pong-h100-10min_6.keras")
        print(keras.config.backend(), snapshot.model.name, "tensorflow" in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    backend, _, tensorflow_imported = done.stdout.split()
    assert (backend, tensorflow_imported) == ("jax", "False")


def test_under_jax_the_commands_leave_an_installed_tensorflow_unimported(tmp_path):
    """As on a GPU machine without TensorFlow: training (its snapshots' get_config), test, nvis and
    compare (its untrained networks' set_random_seed) never import it, where Keras would (4 s)."""
    require("jax", skip_without="the test is of an installed TensorFlow left unimported")

    script = textwrap.dedent("""
        import shutil, sys
        from dqnviz.cli import main
        run = ["--epochs", "1", "--random-steps", "64", "--train-steps", "32", "--test-steps", "16",
               "--replay-size", "500", "--batch-size", "8", "--validation-states", "8", "--name", "t", "--quiet",
               "--max-frames-per-episode", "400"]
        codes = [main(["train", "pong", *run]),
                 main(["test", "snapshots/t_1.keras", "--episodes", "1", "--max-frames", "200", "--quiet"]),
                 main(["nvis", "snapshots/t_1.keras", "--max-steps", "20", "--filters", "1", "--quiet"]),
                 shutil.copy("snapshots/t_1.keras", "u_1.keras"),
                 main(["compare", "snapshots/t_1.keras", "u_1.keras", "--max-steps", "20", "--filters", "1",
                       "--quiet"])]
        del codes[3]  # the copy's path
        print(codes, "tensorflow" in sys.modules)
    """)
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT, XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the test session's own, under JAX
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 0, 0] False", done.stdout
    # and the compiled passes were kept for the next command (dqnviz.backend.choice.compilation_cache)
    assert len(list((tmp_path / "cache" / "dqnviz" / "jax").iterdir())) >= 5


@pytest.mark.parametrize("setting, expected", [
    ({}, "{cache}/dqnviz/jax"),
    ({"DQNVIZ_COMPILE_CACHE": "0"}, "None None"),
    ({"JAX_COMPILATION_CACHE_DIR": "{tmp}/own"}, "{tmp}/own {tmp}/own"),  # the user's own choice stands
])
def test_the_jax_compilation_cache_folder(tmp_path, setting, expected):
    require("jax")

    script = ("import keras, jax\nfrom dqnviz.backend.choice import compilation_cache\n"
              "print(compilation_cache(), jax.config.jax_compilation_cache_dir)")
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "DQNVIZ_COMPILE_CACHE")}
    env.update(KERAS_BACKEND="jax", XDG_CACHE_HOME=str(tmp_path / "cache"),
               **{k: v.format(tmp=tmp_path) for k, v in setting.items()})
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    folder = f"{tmp_path}/cache/dqnviz/jax"
    wanted = f"{folder} {folder}" if expected == "{cache}/dqnviz/jax" else expected.format(tmp=tmp_path)
    assert done.stdout.strip() == wanted
    assert (tmp_path / "cache" / "dqnviz" / "jax").is_dir() is (not setting)


def test_empty_entries_of_the_compilation_cache_are_cleared(tmp_path):
    """JAX writes a cache entry in place and never rewrites one that exists: an entry a killed
    command left empty was recompiled by every later command. dqnviz's own cache folder drops
    empty entries when a command starts; whole ones, other files (JAX's lock file) and a folder
    of the user's own are kept."""
    require("jax")

    folder = tmp_path / "cache" / "dqnviz" / "jax"
    folder.mkdir(parents=True)
    (folder / "jit_step-abc-cache").write_bytes(b"")
    (folder / "jit_act-def-cache").write_bytes(b"compiled")
    (folder / ".lockfile").write_bytes(b"")
    own = tmp_path / "own"
    own.mkdir()
    (own / "empty-cache").write_bytes(b"")
    script = "import keras\nfrom dqnviz.backend.choice import compilation_cache\nprint(compilation_cache())"
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "DQNVIZ_COMPILE_CACHE")}
    for extra in ({}, {"JAX_COMPILATION_CACHE_DIR": str(own)}):
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env=dict(env, KERAS_BACKEND="jax", XDG_CACHE_HOME=str(tmp_path / "cache"), **extra))
        assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == [".lockfile", "jit_act-def-cache"]
    assert (own / "empty-cache").exists()


def test_the_python_api_starts_the_backend_quietly_and_leaves_jaxs_cache_alone(tmp_path):
    """From a notebook, the first dqnviz name that needs Keras started it bare: TensorFlow's C++
    start-up lines in the cell, and under JAX Keras importing TensorFlow (4 s) to read a model's
    config. Now as the command line starts it, except JAX's compilation cache (the process's
    setting), which stays the user's."""
    require("jax", skip_without="the test is of an installed TensorFlow left unimported")
    script = ("import sys, dqnviz\n"
              "snapshot = dqnviz.load_snapshot('snapshots/pong_24.keras')\n"
              "dqnviz.build_q_network(6, seed=0).get_config()  # seeds, and describes its layers\n"
              "import jax\n"
              "print('tensorflow' in sys.modules, jax.config.jax_compilation_cache_dir)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "TF_CPP_MIN_LOG_LEVEL")}
    env.update(KERAS_BACKEND="jax", XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "None"]
    assert not (tmp_path / "cache").exists()
