"""Shared fixtures: tiny snapshots made on the fly (fixed seeds), so no test needs a download."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

JAX_CACHE_VARIABLES = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")


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


def make_snapshot(path, game="breakout", epoch=1, dueling=False, seed=0, test_score=None, scale=None, run=None):
    """Save a randomly initialised Nature-CNN snapshot for ``game`` with full metadata.

    ``scale`` maps layer names to a factor c: that layer's kernel is saved as c·W₀, so it has
    moved ‖W − W₀‖ / ‖W₀‖ = |c − 1| from its start, with cos(W, W₀) = sign(c).
    """
    from dqnviz.atari import AtariEnv, resolve_rom
    from dqnviz.network import build_q_network
    from dqnviz.snapshot import save_snapshot
    from dqnviz.resume import snapshot_meta
    from dqnviz.config import TrainConfig

    rom = resolve_rom(game)
    env = AtariEnv(rom, seed=seed)
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
