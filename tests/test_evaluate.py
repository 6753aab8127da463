"""``dqnviz test``: games played in parallel give exactly the scores of games played one by one."""

from __future__ import annotations

import csv


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
