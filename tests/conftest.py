"""Shared fixtures: tiny snapshots made on the fly (fixed seeds), so no test needs a download."""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

JAX_CACHE_VARIABLES = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")

# Test modules whose tests use no Keras backend in the test process (tests/backend_free.txt). Run
# under TensorFlow and under JAX they would run the same code twice, so tests/run.sh runs them
# once, in a process where importing Keras fails (DQNVIZ_TESTS=backend-free), which proves the
# claim on every run; the two backends' suites (DQNVIZ_TESTS=backends) leave them out. Without
# DQNVIZ_TESTS, pytest runs every module under its one backend, as before.
with open(os.path.join(os.path.dirname(__file__), "backend_free.txt")) as _listed:
    BACKEND_FREE_MODULES = frozenset(line.strip() for line in _listed if line.strip() and not line.startswith("#"))
assert all(os.path.exists(os.path.join(os.path.dirname(__file__), name)) for name in BACKEND_FREE_MODULES)
SELECTION = os.environ.get("DQNVIZ_TESTS", "all")
if SELECTION not in ("all", "backends", "backend-free"):
    raise SystemExit(f"DQNVIZ_TESTS={SELECTION}: use backends, backend-free or all")


class _OtherSelection(pytest.Module):
    """A test module outside the DQNVIZ_TESTS selection: collected as empty, never imported."""

    def collect(self):
        return []


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path, parent):
    """Collect only the modules of the DQNVIZ_TESTS selection (see BACKEND_FREE_MODULES), whether
    found in tests/ or named on the command line."""
    if SELECTION != "all" and (module_path.name in BACKEND_FREE_MODULES) != (SELECTION == "backend-free"):
        return _OtherSelection.from_parent(parent, path=module_path)
    return None


class _NoKeras(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes importing Keras or a backend's framework fail, while ``importlib.util.find_spec`` still
    says whether it is installed: what the backend-free selection runs under, so that a module in
    BACKEND_FREE_MODULES that uses Keras fails loudly instead of passing for a backend it did not
    declare (its subprocesses import what they like)."""

    BLOCKED = ("keras", "tensorflow", "jax", "jaxlib")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in self.BLOCKED:
            return None
        installed = any(finder.find_spec(name, path, target) for finder in sys.meta_path
                        if finder is not self and hasattr(finder, "find_spec"))
        return importlib.util.spec_from_loader(name, self) if installed else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise ImportError(f"{module.__name__} imported by a backend-free test module "
                          "(tests/conftest.py, BACKEND_FREE_MODULES)")


if SELECTION == "backend-free":
    sys.meta_path.insert(0, _NoKeras())


def pytest_configure(config):
    """Under JAX, one persistent compilation cache for the test session, in a temporary folder of
    its own (not the user's ~/.cache): every Learner and every CLI training compiles the same
    Nature-CNN update, and all but the first read it from the cache. Set before any test module
    imports jax, and through the environment so that the subprocesses some tests start use it too."""
    if os.environ.get("KERAS_BACKEND") != "jax" or any(name in os.environ for name in JAX_CACHE_VARIABLES):
        return
    folder = tempfile.mkdtemp(prefix="dqnviz-tests-jax-cache-")
    config.stash[JAX_CACHE] = folder
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # cache every compile, not only slow ones
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def pytest_unconfigure(config):
    folder = config.stash.get(JAX_CACHE, None)
    if folder is not None:
        for name in JAX_CACHE_VARIABLES:
            os.environ.pop(name, None)
        shutil.rmtree(folder, ignore_errors=True)


JAX_CACHE = pytest.StashKey[str]()


@pytest.fixture(scope="session", autouse=True)
def close_the_shared_browser():
    """tests/browser.py keeps one Chromium for the session: close it at the end."""
    yield
    for name in ("tests.browser", "browser"):  # the one module, whichever way a test imported it
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "close_shared_browser"):
            module.close_shared_browser()


@functools.lru_cache(maxsize=None)
def _game_env(game):
    """An emulator of ``game``, for the actions and their names that a snapshot's metadata records
    (the same for every seed): loading a ROM takes 0.1–0.2 s, so each game loads once a session."""
    from dqnviz.atari import AtariEnv, resolve_rom

    return AtariEnv(resolve_rom(game))


def make_snapshot(path, game="breakout", epoch=1, dueling=False, seed=0, test_score=None, scale=None, run=None):
    """Save a randomly initialised Nature-CNN snapshot for ``game`` with full metadata.

    ``scale`` maps layer names to a factor c: that layer's kernel is saved as c·W₀, so it has
    moved ‖W − W₀‖ / ‖W₀‖ = |c − 1| from its start, with cos(W, W₀) = sign(c).
    """
    from dqnviz.atari import resolve_rom
    from dqnviz.network import build_q_network
    from dqnviz.snapshot import save_snapshot
    from dqnviz.resume import snapshot_meta
    from dqnviz.config import TrainConfig

    rom = resolve_rom(game)
    env = _game_env(game)
    model = build_q_network(env.num_actions, dueling=dueling, seed=seed)
    for name, factor in (scale or {}).items():
        kernel = model.get_layer(name).kernel
        kernel.assign(kernel.numpy() * factor)
    config = TrainConfig(dueling=dueling, seed=seed)
    meta = snapshot_meta(rom, env, config, run=run or game, epoch=epoch, total_steps=1000 * epoch,
                         test_score=test_score or {"average": 1.5, "std": 0.5, "min": 1.0, "max": 2.0, "episodes": 2})
    save_snapshot(path, model, meta)
    return path


def quiet_trainer(folder, config, game="pong", run="t", log=lambda *_: None, **options):
    """A :class:`~dqnviz.trainer.Trainer` writing into ``folder``, with no progress and no log, ready
    to run phases (its clock started)."""
    from dqnviz.atari import resolve_rom
    from dqnviz.trainer import Trainer

    made = Trainer(resolve_rom(game), config, run=run, snapshot_dir=folder, report_dir=folder,
                   show_progress=False, log=log, **options)
    made.started = 0.0
    return made


# The report pages that several modules look at (accessibility, dark mode, compare): made once per
# test session, and only read by the tests.
FAST_NVIS = ["--filters", "2", "--max-steps", "60", "--quiet"]
FAST_COMPARE = ["--filters", "2", "--max-steps", "40", "--quiet"]


@pytest.fixture(scope="session")
def nvis_page(tmp_path_factory):
    """An nvis page of a random-weight Breakout snapshot."""
    from tests.helpers import run_cli

    folder = tmp_path_factory.mktemp("shared-nvis")
    snapshot = make_snapshot(folder / "breakout_1.keras", "breakout", 1)
    out = folder / "nvis.html"
    assert run_cli(["nvis", str(snapshot), *FAST_NVIS, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def compare_page(tmp_path_factory):
    """A compare page of random-weight Breakout and Pong snapshots, beside it as breakout_1.keras
    and pong_2.keras."""
    from tests.helpers import run_cli

    folder = tmp_path_factory.mktemp("shared-compare")
    a = str(make_snapshot(folder / "breakout_1.keras", "breakout", 1))
    b = str(make_snapshot(folder / "pong_2.keras", "pong", 2, seed=1))
    out = folder / "cmp.html"
    assert run_cli(["compare", a, b, "--out", str(out), *FAST_COMPARE]) == 0
    return out


@pytest.fixture(scope="session")
def plot_page(tmp_path_factory):
    """A plot page of a run of 5 epochs resumed at epoch 3 (beside it as pong.csv)."""
    from tests.helpers import run_cli
    from tests.test_plot import write_sittings

    folder = tmp_path_factory.mktemp("shared-plot")
    csv = write_sittings(folder / "pong.csv", epochs=5, resume_at=3)
    out = folder / "pong.html"
    assert run_cli(["plot", str(csv), "--out", str(out)]) == 0
    return out


@pytest.fixture
def breakout_snapshot(tmp_path):
    return str(make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1))


@pytest.fixture
def pong_snapshot(tmp_path):
    return str(make_snapshot(tmp_path / "pong_2.keras", "pong", 2, seed=1))


def stop_in_phase(monkeypatch, phase: str) -> None:
    """Make the trainer's ``phase`` (random, refill, train or test) raise KeyboardInterrupt as it
    begins, as Ctrl-C there would."""
    from dqnviz import trainer

    original = trainer.Trainer.run_phase

    def stopped(self, epoch, name, steps, progress_label=None):
        if name == phase:
            raise KeyboardInterrupt
        return original(self, epoch, name, steps, progress_label)

    monkeypatch.setattr(trainer.Trainer, "run_phase", stopped)
