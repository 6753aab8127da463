"""``dqnviz test``: games played in parallel give exactly the scores of games played one by one."""

from __future__ import annotations

import csv

import pytest


def _scores(snapshot, tmp_path, parallel):
    from dqnviz.cli import main

    out = tmp_path / f"episodes_{parallel}.csv"
    assert main(["test", snapshot, "--episodes", "5", "--max-frames", "600", "--epsilon", "0.3",
                 "--parallel", str(parallel), "--csv", str(out), "--quiet"]) == 0
    with open(out, newline="") as f:
        return [(int(r["episode"]), float(r["score"]), int(r["frames"])) for r in csv.DictReader(f)]


def test_parallel_games_do_not_change_the_scores(breakout_snapshot, tmp_path, capsys):
    one_by_one = _scores(breakout_snapshot, tmp_path, 1)
    batched = _scores(breakout_snapshot, tmp_path, 3)
    assert one_by_one == batched
    assert [e for e, _, _ in batched] == [1, 2, 3, 4, 5]
    assert all(0 < frames <= 600 for _, _, frames in batched)
    # Each game has its own seed: the five games are not all the same game.
    assert len({(score, frames) for _, score, frames in batched}) > 1
    assert "over 5 episodes" in capsys.readouterr().out


def test_evaluate_plays_each_game_with_its_own_seed(pong_snapshot):
    from dqnviz.agent import env_for_snapshot, evaluate
    from dqnviz.snapshot import load_snapshot

    snapshot = load_snapshot(pong_snapshot)
    seeds = []

    def make_env(seed):
        seeds.append(seed)
        return env_for_snapshot(snapshot.meta, seed=seed, max_frames_per_episode=200)

    done = []
    results = evaluate(snapshot.model, make_env, episodes=4, epsilon=1.0, seed=7, parallel=2,
                       progress=lambda n, score: done.append(n))
    assert sorted(seeds) == [7, 8, 9, 10]
    assert done == [1, 2, 3, 4]
    assert [r["episode"] for r in results] == [1, 2, 3, 4]


def test_several_snapshots_play_the_same_games_and_the_best_is_named(tmp_path, capsys):
    from conftest import make_snapshot
    from dqnviz.cli import main

    paths = [str(make_snapshot(tmp_path / f"breakout_{epoch}.keras", epoch=epoch, seed=epoch)) for epoch in (1, 2)]
    options = ["--episodes", "3", "--max-frames", "400", "--epsilon", "0.2", "--quiet"]
    alone = []
    for path in paths:
        out = tmp_path / "alone.csv"
        assert main(["test", path, *options, "--csv", str(out)]) == 0
        with open(out, newline="") as f:
            alone.append([float(r["score"]) for r in csv.DictReader(f)])
    capsys.readouterr()
    together = tmp_path / "together.csv"
    assert main(["test", *paths, *options, "--csv", str(together)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    with open(together, newline="") as f:
        rows = list(csv.DictReader(f))
    # Each snapshot scores exactly what it scores when tested alone: the same three games.
    assert [[float(r["score"]) for r in rows if r["snapshot"] == name] for name in ("breakout_1", "breakout_2")] == alone
    assert lines[0].startswith("breakout_1  average ") and "over 3 episodes" in lines[0]
    assert lines[1].startswith("breakout_2  average ")
    best = ["breakout_1", "breakout_2"][max(range(2), key=lambda i: sum(alone[i]))]
    assert lines[2].startswith(f"best: {best}, average ") and "seeds 0–2" in lines[2]


def test_snapshots_of_different_games_are_not_ranked(breakout_snapshot, pong_snapshot, capsys):
    from dqnviz.cli import main

    assert main(["test", breakout_snapshot, pong_snapshot, "--episodes", "1", "--max-frames", "200", "--quiet"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("no best named: the snapshots play different games")


def test_a_missing_snapshot_stops_before_any_game(breakout_snapshot, tmp_path, capsys):
    from dqnviz.cli import main

    assert main(["test", breakout_snapshot, str(tmp_path / "nope.keras"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "snapshot not found" in captured.err and "average" not in captured.out


def test_a_csv_path_that_is_a_folder_is_refused_before_any_game(breakout_snapshot, tmp_path, capsys, monkeypatch):
    import dqnviz.agent
    from dqnviz.cli import main

    monkeypatch.setattr(dqnviz.agent, "evaluate", lambda *a, **k: pytest.fail("a game was played"))
    assert main(["test", breakout_snapshot, "--csv", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--csv {tmp_path} is a folder" in err and len(err.strip().splitlines()) == 1


def test_one_game_is_one_game_with_one_seed(tmp_path, capsys):
    from conftest import make_snapshot
    from dqnviz.cli import main

    paths = [str(make_snapshot(tmp_path / f"breakout_{epoch}.keras", epoch=epoch, seed=epoch)) for epoch in (1, 2)]
    assert main(["test", *paths, "--episodes", "1", "--max-frames", "200", "--seed", "4", "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "on the same 1 game (seed 4);" in last and "games" not in last and "4–4" not in last
