"""The trained agents shipped in snapshots/: they load safely, match their statistics, and play well."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (ROOT / "snapshots").glob("*.keras") if not p.stem.endswith("_interrupted"))


def test_the_repository_ships_a_trained_pong_agent():
    assert any(_game(p) == "pong" for p in SHIPPED), "snapshots/ should hold a trained Pong agent"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_snapshot_is_weights_only_and_matches_its_csv(path):
    from dqnviz.snapshot import load_snapshot

    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    assert {"config.json", "model.weights.h5", "dqnviz.json"} <= names
    assert not any(name.endswith((".pkl", ".pickle", ".npy")) for name in names)
    import h5py
    import io

    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        assert "optimizer" not in weights  # weights only, no optimizer state

    snapshot = load_snapshot(path)
    meta = snapshot.meta
    assert path.name == f"{meta['run']}_{meta['epoch']}.keras"
    # Its training statistics are shipped too.
    with open(ROOT / "reports" / f"{meta['run']}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    tests = [r for r in rows if r["phase"] == "test" and int(r["epoch"]) == meta["epoch"]]
    if meta.get("interrupted"):
        # Stopped inside its epoch's train phase (a time budget's end): no test row yet, and its
        # steps are the previous epoch's plus those of the unfinished phase.
        assert not tests and meta["test_score"] is None and meta["interrupted"]["phase"] == "train"
        (previous,) = [r for r in rows if r["phase"] == "train" and int(r["epoch"]) == meta["epoch"] - 1]
        assert int(previous["total_train_steps"]) + meta["interrupted"]["steps_done"] == meta["train_steps_done"]
    else:  # the snapshot's test score is that epoch's test row
        assert len(tests) == 1
        assert float(tests[0]["average_reward"]) == pytest.approx(meta["test_score"]["average"], abs=1e-3)
        assert int(tests[0]["total_train_steps"]) == meta["train_steps_done"]
    # and so are its 30 games of the Nature test, whose average ± std (min, max) the README's table quotes
    with open(ROOT / "reports" / f"{path.stem}_test.csv", newline="") as f:
        games = list(csv.DictReader(f))
    assert [int(g["episode"]) for g in games] == list(range(1, 31))
    scores = np.array([float(g["score"]) for g in games])
    (row,) = [line for line in (ROOT / "README.md").read_text().splitlines()  # the "Shipped agents" table
              if line.startswith("| ") and line.split(" | ")[1:2] == [f"`snapshots/{path.name}`"]]
    quoted = f"**{scores.mean():.1f} ± {scores.std():.1f}** ({scores.min():g}, {scores.max():g})"
    assert quoted in row, f"README quotes {row!r}, the CSV gives {quoted}"


def _game(path) -> str:
    from dqnviz.snapshot import read_meta

    return read_meta(path)["game"]


@pytest.mark.parametrize("path", [p for p in SHIPPED if _game(p) == "pong"], ids=lambda p: p.name)
def test_shipped_pong_agent_wins_a_game(path):
    """A random policy loses Pong 21–0 (about −20.5 on average); the shipped agent wins a whole game."""
    from dqnviz.agent import env_for_snapshot, play_games
    from dqnviz.snapshot import load_snapshot

    snapshot = load_snapshot(path)
    env = env_for_snapshot(snapshot.meta, seed=123)
    record = play_games(snapshot.model, env, games=1, epsilon=0.05, seed=123)
    score = record.scores[0]
    assert score > 0, f"the shipped agent lost its game {score:+g}"
    # It acts on what it sees: its Q-values are not constant across the game's states.
    assert np.ptp(record.q_values.max(axis=1)) > 0.05


def _best_random_game(game: str) -> float:
    """The best game score in the random phases (epoch 0) of the shipped runs of ``game`` that
    finished 20 games or more (128 environments end no game of Pong in 50,000 random steps)."""
    from dqnviz.snapshot import read_meta

    best, games = -np.inf, 0
    for run in {read_meta(p)["run"] for p in SHIPPED if _game(p) == game}:
        with open(ROOT / "reports" / f"{run}.csv", newline="") as f:
            (row,) = [r for r in csv.DictReader(f) if r["phase"] == "random"]
        if int(row["nr_games"]) >= 20:
            best, games = max(best, float(row["max_game_reward"])), games + int(row["nr_games"])
    assert games >= 20, f"no shipped {game} run finished 20 random games"
    return best


@pytest.mark.parametrize("path", [p for p in SHIPPED if _game(p) != "pong"], ids=lambda p: p.name)
def test_shipped_agent_beats_the_best_random_game(path):
    """One game of the shipped agent (ε = 0.05) outscores the best of the 20+ games that
    uniformly random play finished in the random phases of the shipped runs of its game. (A Pong
    agent's won game, above, says more: random play loses every game of Pong. One game each.)"""
    from dqnviz.agent import env_for_snapshot, play_games
    from dqnviz.snapshot import load_snapshot

    snapshot = load_snapshot(path)
    env = env_for_snapshot(snapshot.meta, seed=321)
    record = play_games(snapshot.model, env, games=1, epsilon=0.05, seed=321)
    assert record.scores[0] > _best_random_game(snapshot.meta["game"])


def test_the_help_examples_that_a_new_user_copies_name_shipped_snapshots():
    import re

    from dqnviz import cli
    from dqnviz.commands import nvis, record, test, train

    texts = {"dqnviz --help": cli.DESCRIPTION, "nvis": nvis.DESCRIPTION, "record": record.DESCRIPTION,
             "test": test.DESCRIPTION, "train": train.DESCRIPTION}
    named = {(where, path) for where, text in texts.items() for path in re.findall(r"snapshots/[\w.-]+\.keras", text)}
    assert len({where for where, _ in named}) == len(texts)  # every text gives a runnable example
    missing = sorted((where, path) for where, path in named if not (ROOT / path).is_file())
    assert not missing, f"help examples name snapshots that do not ship: {missing}"


def test_the_readmes_python_example_runs_as_written(tmp_path, monkeypatch):
    """The README's Python API block, run as a user would paste it (with fewer steps), gives the
    shapes its comments promise, and writes its page."""
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Looking inside: the Python API"):readme.index("## Performance")]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    assert "max_steps=200" in code
    assert 'filters="top8")' in code
    code = code.replace("max_steps=200", "max_steps=6").replace('"snapshots/', f'"{ROOT}/snapshots/')
    code = code.replace('filters="top8")', 'filters="top1", layers="conv1")')  # one card: the page, not the analysis
    namespace = {}
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "my_agent.html").stat().st_size > 100_000
    states = namespace["states"]
    assert states.shape == (6, 84, 84, 4) and states.dtype == np.uint8
    assert namespace["images"].shape == states.shape and namespace["maps"].shape[:3] == states.shape[:3]
    assert namespace["rgb"].shape == (6, 84, 84, 3)


def test_the_top_level_names_resolve_and_are_listed():
    import importlib

    import dqnviz

    assert dqnviz.__all__ and set(dqnviz.__all__) <= set(dir(dqnviz))
    for name in dqnviz.__all__:
        # the very object of the module that defines it, and named in the package's docstring
        assert getattr(dqnviz, name) is getattr(importlib.import_module(dqnviz._LAZY[name]), name), name
        assert name in dqnviz.__doc__, name
        assert name in dir(dqnviz)
    assert callable(dqnviz.full_history) and callable(dqnviz.play_games)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        dqnviz.nonsense
