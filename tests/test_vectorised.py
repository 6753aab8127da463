"""Vectorised training (ale-py's AtariVectorEnv): tiny runs. That it makes the same updates as classic
mode for the same batches is tests/test_trainer.py's ``test_vectorised_and_classic_training_make_identical_updates_for_identical_batches``."""

import csv

import pytest

from dqnviz.cli import main
from dqnviz.config import TrainConfig
from dqnviz.snapshot import load_snapshot


@pytest.mark.parametrize("replay", ["host", "device", "device, launched from the worker thread"])
def test_tiny_vectorised_run_with_every_option(tmp_path, monkeypatch, replay):
    dirs = ["--snapshot-dir", str(tmp_path), "--report-dir", str(tmp_path)]
    dirs += ["--device-replay"] if replay.startswith("device") else []
    # a GPU's default under JAX (backend/jax.py's launch_thread); TensorFlow has no such thread
    monkeypatch.setenv("DQNVIZ_LAUNCH_THREAD", "1" if "worker" in replay else "0")
    argv = ["train", "pong", "--num-envs", "4", "--epochs", "1", "--random-steps", "64", "--train-steps", "64",
            "--test-steps", "32", "--replay-size", "400", "--batch-size", "8", "--validation-states", "8",
            "--double", "--dueling", "--n-step", "3", "--prioritized", "--optimizer", "adam", "--quiet",
            "--max-frames-per-episode", "400", *dirs]  # games cut at 100 agent steps: a short test phase
    assert main(argv) == 0
    with open(tmp_path / "pong.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["phase"] for r in rows] == ["random", "train", "test"]
    # 64 steps over 4 envs at one update per 4 steps: one update of batch 8 per iteration
    assert int(rows[1]["weight_updates"]) == 16 and int(rows[1]["replay_memory_count"]) == 128
    meta = load_snapshot(tmp_path / "pong_1.keras").meta
    assert meta["config"]["num_envs"] == 4 and meta["config"]["dueling"] and meta["action_names"][0] == "NOOP"


def test_fewer_test_environments(tmp_path, capsys):
    """--test-envs 2 with 4 training environments: the test phase plays 2 whole games, not 4. And
    --train-steps 14 with 4 environments plays 16, as the run says at its start."""
    dirs = ["--snapshot-dir", str(tmp_path), "--report-dir", str(tmp_path)]
    argv = ["train", "pong", "--num-envs", "4", "--test-envs", "2", "--epochs", "1", "--random-steps", "32",
            "--train-steps", "14", "--test-steps", "8", "--replay-size", "200", "--batch-size", "8",
            "--validation-states", "8", "--max-frames-per-episode", "400", "--quiet", *dirs]
    assert main(argv) == 0
    assert "4 environments take 4 agent steps at a time: --train-steps 14 plays 16\n" in capsys.readouterr().out
    with open(tmp_path / "pong.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    test = [r for r in rows if r["phase"] == "test"]
    assert [r["steps"] for r in rows if r["phase"] != "test"] == ["32", "16"]
    assert int(test[0]["nr_games"]) == 2  # each test environment plays its one game to the end
    assert load_snapshot(tmp_path / "pong_1.keras").meta["config"]["test_envs"] == 2


@pytest.mark.parametrize("threads", [0, 3])
def test_emulator_threads_reach_the_vector_interface(monkeypatch, threads):
    import os

    from dqnviz import atari
    from dqnviz.atari import make_envs, resolve_rom

    real, seen = atari._vector_interface(), []

    def recording(**options):
        seen.append(options["num_threads"])
        return real(**options)

    monkeypatch.setattr(atari, "_vector_interface", lambda: recording)
    env = make_envs(resolve_rom("pong"), TrainConfig(num_envs=4, emulator_threads=threads), training=True, seed=0)
    assert env.reset().shape == (4, 4, 84, 84)  # the trainer's frame stacks
    # 0: one thread per environment, up to the CPU count; otherwise as many as asked for
    assert seen == [threads or min(4, os.cpu_count())]


def test_classic_mode_in_an_emulator_thread_trains_exactly_as_the_python_loop(tmp_path, monkeypatch):
    """DQNVIZ_CLASSIC_THREAD=1 runs classic mode's one emulator in ale-py's C++ thread: without
    no-op starts (which each draws from its own generator, over the same range: test_atari.py) the
    same games, rows and updates as the Python AtariEnv, so the weights come out the same bit for bit."""
    import numpy as np

    from dqnviz.atari import SingleEnvBatch, VectorAtariEnv, make_envs, resolve_rom

    results = {}
    for switch in ("0", "1"):
        monkeypatch.setenv("DQNVIZ_CLASSIC_THREAD", switch)
        folder = tmp_path / switch
        argv = ["train", "breakout", "--epochs", "1", "--random-steps", "200", "--train-steps", "120",
                "--test-steps", "60", "--replay-size", "400", "--batch-size", "8", "--validation-states", "8",
                "--max-frames-per-episode", "400", "--noop-max", "0", "--quiet", "--snapshot-dir", str(folder),
                "--report-dir", str(folder)]
        assert main(argv) == 0
        with open(folder / "breakout.csv", newline="") as f:
            rows = [{k: v for k, v in row.items() if "time" not in k and k != "steps_per_second"}
                    for row in csv.DictReader(f)]
        results[switch] = rows, load_snapshot(folder / "breakout_1.keras").model.get_weights()
        kind = type(make_envs(resolve_rom("breakout"), TrainConfig(), training=True, seed=0))
        assert kind is (VectorAtariEnv if switch == "1" else SingleEnvBatch)
    (rows_python, weights_python), (rows_thread, weights_thread) = results["0"], results["1"]
    assert rows_thread == rows_python and int(rows_python[1]["nr_games"]) + int(rows_python[0]["nr_games"]) >= 1
    assert all(np.array_equal(a, b) for a, b in zip(weights_python, weights_thread))
