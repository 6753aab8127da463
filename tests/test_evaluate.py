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


def test_the_csv_written_is_said_on_stderr_and_the_result_stays_the_last_line(breakout_snapshot, tmp_path, capsys):
    from dqnviz.cli import main

    out = tmp_path / "scores.csv"
    assert main(["test", breakout_snapshot, "--episodes", "2", "--max-frames", "200", "--csv", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1].startswith("average ")  # what the help promises
    assert f"wrote {out} (2 games)" in captured.err.splitlines()
    assert main(["test", breakout_snapshot, "--episodes", "2", "--max-frames", "200", "--csv", str(out),
                 "--quiet"]) == 0
    assert "wrote" not in capsys.readouterr().err


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


def test_a_csv_name_not_ending_in_csv_is_refused_and_the_file_kept(breakout_snapshot, tmp_path, capsys, monkeypatch):
    import dqnviz.agent
    from dqnviz.cli import main

    monkeypatch.setattr(dqnviz.agent, "evaluate", lambda *a, **k: pytest.fail("a game was played"))
    for name in ("breakout.bin", "train.py", "scores"):
        kept = tmp_path / name
        kept.write_bytes(b"not to be overwritten")
        assert main(["test", breakout_snapshot, "--csv", str(kept), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"dqnviz test: error: --csv {kept}: a CSV of the games is written there; give a name ending in .csv"
        assert kept.read_bytes() == b"not to be overwritten"


def test_an_empty_csv_name_is_refused_not_ignored(breakout_snapshot, capsys, monkeypatch):
    import dqnviz.agent
    from dqnviz.cli import main

    monkeypatch.setattr(dqnviz.agent, "evaluate", lambda *a, **k: pytest.fail("a game was played"))
    assert main(["test", breakout_snapshot, "--csv", "", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dqnviz test: error: --csv must not be empty") and len(err.splitlines()) == 1


def test_one_game_is_one_game_with_one_seed(tmp_path, capsys):
    from conftest import make_snapshot
    from dqnviz.cli import main

    paths = [str(make_snapshot(tmp_path / f"breakout_{epoch}.keras", epoch=epoch, seed=epoch)) for epoch in (1, 2)]
    assert main(["test", *paths, "--episodes", "1", "--max-frames", "200", "--seed", "4", "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "on the same 1 game (seed 4);" in last and "games" not in last and "4–4" not in last


def _with_meta(source, target, change):
    """A copy of the snapshot ``source`` at ``target`` whose dqnviz.json is ``change(meta)``."""
    import json
    import zipfile

    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["dqnviz.json"] = json.dumps(change(json.loads(members["dqnviz.json"])))
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return str(target)


def test_a_csv_that_names_a_snapshot_is_refused_and_the_snapshot_kept(tmp_path, capsys, monkeypatch):
    """`dqnviz test --csv snapshots/pong_2?.keras`: the shell hands --csv the first snapshot, which
    was overwritten by the CSV (a trained agent lost)."""
    import shutil

    import dqnviz.agent
    from conftest import make_snapshot
    from dqnviz.cli import main

    first = make_snapshot(tmp_path / "breakout_1.keras", epoch=1)
    second = tmp_path / "breakout_2.keras"
    shutil.copy(first, second)
    before = first.read_bytes()
    monkeypatch.setattr(dqnviz.agent, "evaluate", lambda *a, **k: pytest.fail("a game was played"))
    assert main(["test", "--csv", str(first), str(second), "--episodes", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--csv {first} is a snapshot" in err and len(err.splitlines()) == 1
    assert first.read_bytes() == before
    # A snapshot under another name is a zip archive, and refused too.
    renamed = tmp_path / "agent.bak"
    shutil.copy(first, renamed)
    assert main(["test", str(second), "--csv", str(renamed), "--quiet"]) == 2
    assert renamed.read_bytes() == before
    assert f"--csv {renamed} is a zip archive (as a snapshot is), not a CSV file" in capsys.readouterr().err


def test_the_csv_guard_refuses_any_archive_but_not_a_csv(tmp_path):
    """``not_a_csv`` checks the file's format, not whether dqnviz can load it: a snapshot whose
    metadata is damaged (which ``dqnviz.snapshot.read_meta`` refuses) is still kept; an old CSV
    file, or a path not there yet, may be written."""
    import zipfile

    from conftest import make_snapshot
    from dqnviz.commands.test import not_a_csv
    from dqnviz.errors import UserError
    from dqnviz.snapshot import read_meta

    snapshot = make_snapshot(tmp_path / "breakout_1.keras", epoch=1)
    damaged = tmp_path / "damaged.bak"
    with zipfile.ZipFile(snapshot) as source, zipfile.ZipFile(damaged, "w") as target:
        for name in source.namelist():
            if name != "dqnviz.json":
                target.writestr(name, source.read(name))
    with pytest.raises(UserError):
        read_meta(damaged)
    old_csv = tmp_path / "scores.csv"
    old_csv.write_text("episode,score,frames\n1,3,400\n")
    assert not_a_csv(snapshot) == "a snapshot" and not_a_csv(tmp_path / "missing.keras") == "a snapshot"
    assert not_a_csv(damaged) == "a zip archive (as a snapshot is)"
    assert not_a_csv(old_csv) is None and not_a_csv(tmp_path / "new.csv") is None
    assert not_a_csv(tmp_path) is None  # a folder: refused before, with its own message


@pytest.mark.parametrize("change, message", [
    (lambda meta: {k: v for k, v in meta.items() if k != "game"}, "does not name a game"),
    (lambda meta: [], "metadata (dqnviz.json) is a JSON list, not an object"),
    (lambda meta: {**meta, "preprocessing": {**meta["preprocessing"], "history": 2}},
     "the model takes 84×84×4 states but the snapshot's preprocessing makes 84×84×2"),
    (lambda meta: {**meta, "preprocessing": "4 frames"}, "metadata (dqnviz.json) is damaged"),
    # fields that would fail only once the game runs, in the emulator's loop
    (lambda meta: {**meta, "preprocessing": {**meta["preprocessing"], "frame_skip": "four"}},
     "is damaged (ValueError: preprocessing.frame_skip is 'four', not a whole number from 1 to 64)"),
    (lambda meta: {**meta, "preprocessing": {**meta["preprocessing"], "frame_skip": 0}},
     "preprocessing.frame_skip is 0, not a whole number from 1 to 64"),
    (lambda meta: {**meta, "preprocessing": {**meta["preprocessing"], "noop_max": "x"}},
     "preprocessing.noop_max is 'x', not a whole number from 0 to 108000"),
    (lambda meta: {**meta, "game": "pong"}, "it names the game 'pong' but its ROM is 'breakout'"),
])
@pytest.mark.parametrize("command", ["test", "record", "nvis", "compare"])
def test_damaged_metadata_is_one_line_not_a_traceback(breakout_snapshot, tmp_path, capfd, monkeypatch, change,
                                                       message, command):
    from dqnviz.cli import main

    monkeypatch.chdir(tmp_path)
    path = _with_meta(breakout_snapshot, tmp_path / "edited.keras", change)
    argv = {"test": ["test", path, "--episodes", "1", "--max-frames", "40", "--quiet"],
            "record": ["record", path, "--max-frames", "8", "--quiet"],
            "nvis": ["nvis", path, "--max-steps", "8", "--quiet"],
            "compare": ["compare", path, breakout_snapshot, "--max-steps", "8", "--quiet"]}[command]
    assert main(argv) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith(f"dqnviz {command}: error: {path}: ") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "reports").exists()


def test_equal_averages_are_a_tie_not_a_best(breakout_snapshot, tmp_path, capsys):
    import shutil

    from dqnviz.cli import main

    twin = tmp_path / "breakout_twin.keras"
    shutil.copy(breakout_snapshot, twin)
    assert main(["test", breakout_snapshot, str(twin), "--episodes", "2", "--max-frames", "200",
                 "--epsilon", "0.5", "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("best: tied between breakout_1 and breakout_twin, average "), last


def test_a_snapshot_given_twice_is_tested_once(breakout_snapshot, tmp_path, capsys, monkeypatch):
    from dqnviz.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["test", breakout_snapshot, "breakout_1.keras", "--episodes", "1", "--max-frames", "40"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines() == [captured.out.strip()]  # one summary line, no "best"
    assert captured.out.startswith("average ") and "given twice; testing it once" in captured.err


def test_one_game_gives_no_standard_error(tmp_path, capsys):
    """One game says nothing about the spread: a standard error of 0.0 would claim certainty."""
    from conftest import make_snapshot
    from dqnviz.cli import main

    paths = [str(make_snapshot(tmp_path / f"breakout_{epoch}.keras", epoch=epoch, seed=epoch)) for epoch in (1, 2)]
    assert main(["test", *paths, "--episodes", "1", "--max-frames", "120", "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "no standard errors from a single game" in last and "standard errors:" not in last


def test_the_numbers_printed_are_the_games_scores(breakout_snapshot, capsys, monkeypatch):
    """Mean ± population std, min and max of the per-game scores, written as scores are written
    (1976, not 1.98e+03), in the summary and in the progress line."""
    import numpy as np

    import dqnviz.agent
    from dqnviz.cli import main

    scores = [1976.0, 3.0, 21.0, 123456789.0]

    def evaluate(model, make_env, episodes, epsilon, seed, parallel, progress):
        results = []
        for i, score in enumerate(scores[:episodes]):
            results.append({"episode": i + 1, "score": score, "frames": 100})
            progress(i + 1, score)
        return results

    monkeypatch.setattr(dqnviz.agent, "evaluate", evaluate)
    assert main(["test", breakout_snapshot, "--episodes", "4"]) == 0
    captured = capsys.readouterr()
    values = np.array(scores)
    assert captured.out.strip() == (f"average {values.mean():.1f} ± {values.std():.1f} over 4 episodes "
                                    f"(min 3, max 123456789)")
    progress = captured.err.strip().splitlines()[-1]
    assert progress.startswith("testing breakout_1: 4/4 episodes") and "e+" not in progress, progress
    assert f"last 123456789  average {values.mean():.1f}" in progress


def test_best_of_several_snapshots_with_standard_errors(tmp_path, capsys, monkeypatch):
    """Two snapshots, the same 4 games: the best is the higher mean, and each standard error is
    s/√n with s the sample standard deviation (ddof 1), e.g. [0, 2, 4, 6]: s = √(20/3), s/2 = 1.29."""
    import dqnviz.agent
    from conftest import make_snapshot
    from dqnviz.cli import main

    paths = [str(make_snapshot(tmp_path / f"breakout_{epoch}.keras", epoch=epoch, seed=epoch)) for epoch in (1, 2)]
    scores = {1: [0.0, 2.0, 4.0, 6.0], 2: [10.0, 10.0, 13.0, 7.0]}
    calls = []

    def evaluate(model, make_env, episodes, epsilon, seed, parallel, progress):
        calls.append(model)
        return [{"episode": i + 1, "score": s, "frames": 100} for i, s in enumerate(scores[len(calls)][:episodes])]

    monkeypatch.setattr(dqnviz.agent, "evaluate", evaluate)
    assert main(["test", *paths, "--episodes", "4", "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == ("best: breakout_2, average 10.0, on the same 4 games (seeds 0–3); "
                    "standard errors: breakout_1 1.3, breakout_2 1.2")  # √(20/3)/2 = 1.29, √6/2 = 1.22


def test_played_states_are_joined_in_order_across_blocks(monkeypatch):
    """play_games keeps its states in blocks (so that they are not held twice while joined): the
    joined array is the states in the order played, across block boundaries, and its blocks are
    given up as they are copied."""
    import numpy as np

    from dqnviz.agent import _StateBlocks

    monkeypatch.setattr(_StateBlocks, "BLOCK", 4)
    rng = np.random.default_rng(3)
    played = rng.integers(0, 256, (10, 84, 84, 4), dtype=np.uint8)
    blocks = _StateBlocks()
    for state in played:
        blocks.append(state)
    assert len(blocks) == 10 and len(blocks.blocks) == 3
    joined = blocks.array((84, 84, 4))
    assert joined.dtype == np.uint8 and np.array_equal(joined, played)
    assert blocks.blocks == []
    assert _StateBlocks().array((84, 84, 4)).shape == (0, 84, 84, 4)


def test_games_cut_off_by_max_frames_are_said(breakout_snapshot, tmp_path, capsys):
    """A game cut off at --max-frames counts with its score so far (the protocol's), and a line on
    stderr says how many were, as compare and play say it."""
    from dqnviz.cli import main

    out = tmp_path / "cut.csv"
    assert main(["test", breakout_snapshot, "--episodes", "2", "--max-frames", "40", "--csv", str(out), "--quiet"]) == 0
    with open(out, newline="") as f:
        frames = [int(r["frames"]) for r in csv.DictReader(f)]
    assert frames == [40, 40]
    captured = capsys.readouterr()
    assert captured.err.strip() == "dqnviz test: 2 of 2 games cut off at --max-frames 40: their scores are the scores so far"
    assert captured.out.strip().startswith("average ")
