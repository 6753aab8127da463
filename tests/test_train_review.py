"""`dqnviz train` after a user review: a resume that changes the network's shape, a resume with
another --seed, a diverged run, a run without validation states, and an interrupted epoch resumed
with fewer --train-steps than it had played. Breakout, with games cut at 400 frames: short phases."""

import csv

import pytest

from dqnviz.cli import main
from dqnviz.snapshot import load_snapshot, starting_point
from tests.conftest import make_snapshot
from tests.helpers import TINY


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def folders(tmp_path):
    return ["--snapshot-dir", str(tmp_path / "snap"), "--report-dir", str(tmp_path / "rep")]


@pytest.mark.parametrize("flags, message", [
    (["--dueling"], "--dueling cannot change on --resume: the snapshot was trained without it"),
    (["--history", "2"], "--history 2 cannot change on --resume: the snapshot was trained with --history 4"),
])
def test_resume_refuses_a_change_of_the_network_shape(tmp_path, capsys, flags, message):
    snapshot = make_snapshot(tmp_path / "breakout_1.keras")
    argv = ["train", "--resume", str(snapshot), "--epochs", "2", "--name", "x", *TINY, *flags, *folders(tmp_path)]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and message in error
    assert not (tmp_path / "rep").exists() and not (tmp_path / "snap").exists()  # refused before any file


def test_a_refused_resume_announces_no_new_run(tmp_path, capsys):
    """A resume that would branch off (its next epoch's snapshot exists) and is then refused for
    its network says only why: no "continuing as a new run" line for a run that never starts."""
    import shutil

    snapshot = make_snapshot(tmp_path / "snap" / "breakout_1.keras")
    shutil.copy(snapshot, tmp_path / "snap" / "breakout_2.keras")
    argv = ["train", "--resume", str(snapshot), "--epochs", "3", *TINY, "--history", "2", *folders(tmp_path)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "--history 2 cannot change on --resume" in captured.err and captured.err.count("\n") == 1
    assert "new run" not in captured.out
    assert not list((tmp_path / "rep").glob("*.csv")) if (tmp_path / "rep").exists() else True


def test_resume_into_another_game_action_set_is_refused():
    """The trainer's own check (the Python API has no flag merge): outputs against the actions."""
    from dqnviz.config import TrainConfig
    from dqnviz.errors import UserError
    from dqnviz.network import build_q_network
    from dqnviz.snapshot import Snapshot
    from dqnviz.resume import check_same_network

    snapshot = Snapshot(model=build_q_network(4, seed=0))
    check_same_network(snapshot, TrainConfig(), num_actions=4)
    with pytest.raises(UserError, match="4 outputs, but this game's minimal action set has 6 actions"):
        check_same_network(snapshot, TrainConfig(), num_actions=6)
    with pytest.raises(UserError, match="--dueling cannot change on --resume: the snapshot was trained with it"):
        check_same_network(Snapshot(model=build_q_network(4, dueling=True, seed=0)), TrainConfig())


def test_the_network_shape_is_checked_once_by_the_trainer(tmp_path, monkeypatch):
    """One check, the Trainer's (with the game's action count), for `train --resume` and for the
    Python API alike; the CLI's refusal is the same line and exit code (the test above)."""
    from dqnviz import trainer
    from dqnviz.atari import resolve_rom
    from dqnviz.config import TrainConfig
    from dqnviz.errors import UserError

    calls = []
    real_check = trainer.check_same_network

    def counting_check(snapshot, config, num_actions=None):
        calls.append(num_actions)
        return real_check(snapshot, config, num_actions)

    monkeypatch.setattr(trainer, "check_same_network", counting_check)
    monkeypatch.setattr(trainer.Trainer, "train", lambda self: None)  # built, and so checked, but not run
    snapshot = make_snapshot(tmp_path / "breakout_1.keras")
    assert main(["train", "--resume", str(snapshot), "--epochs", "2", "--name", "x", *TINY, *folders(tmp_path)]) == 0
    assert calls == [4]  # once, with breakout's 4 actions
    calls.clear()
    with pytest.raises(UserError, match="^--dueling cannot change on --resume: the snapshot was trained without it"):
        trainer.Trainer(resolve_rom("breakout"), TrainConfig(dueling=True, replay_size=500), run="y",
                        snapshot_dir=tmp_path / "api", report_dir=tmp_path / "api", resume=load_snapshot(snapshot),
                        show_progress=False, log=lambda *_: None)
    assert calls == [4] and not (tmp_path / "api").exists()


def test_resume_with_another_seed_keeps_the_starting_point(tmp_path):
    first = make_snapshot(tmp_path / "breakout_1.keras", seed=0)
    # A snapshot without init_seed (older ones) starts from config.seed, as before.
    assert "init_seed" not in load_snapshot(first).meta and starting_point(load_snapshot(first)).seed == 0
    assert main(["train", "--resume", str(first), "--epochs", "2", "--seed", "5", "--name", "rz", *TINY,
                 *folders(tmp_path)]) == 0
    resumed = load_snapshot(tmp_path / "snap" / "rz_2.keras")
    assert resumed.meta["config"]["seed"] == 5 and resumed.meta["init_seed"] == 0
    start = starting_point(resumed)
    assert start.seed == 0 and start.source == "rebuilt"
    # rebuilt from seed 5, conv1 "moved" about 1.4; from seed 0 it moved what the trainer recorded
    for layer, figures in resumed.meta["movement"].items():
        assert start.movement[layer]["change"] == pytest.approx(figures["change"], rel=1e-5, abs=1e-7)
    assert start.movement["conv1"]["change"] < 0.1
    # a later resume without --seed keeps both
    assert main(["train", "--resume", str(tmp_path / "snap" / "rz_2.keras"), "--epochs", "3", *TINY,
                 *folders(tmp_path)]) == 0
    again = load_snapshot(tmp_path / "snap" / "rz_3.keras")
    assert again.meta["config"]["seed"] == 5 and again.meta["init_seed"] == 0
    assert starting_point(again).movement["conv1"]["change"] == pytest.approx(
        again.meta["movement"]["conv1"]["change"], rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("random_steps, meanq", [("64", "nan"), ("1", "")])
def test_a_diverged_run_stops_without_a_snapshot(tmp_path, capsys, random_steps, meanq):
    """meanq shows the NaN where there are validation states; without them the weights do."""
    argv = ["train", "breakout", "--epochs", "2", *TINY, "--random-steps", random_steps, "--learning-rate", "1e30",
            *folders(tmp_path)]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "the network diverged at epoch 1" in error and "lower --learning-rate" in error
    table = rows(tmp_path / "rep" / "breakout.csv")
    assert [(r["epoch"], r["phase"]) for r in table] == [("0", "random"), ("1", "train")]
    assert table[1]["meanq"] == meanq
    assert not list((tmp_path / "snap").glob("*.keras")) and not (tmp_path / "snap" / "breakout.optimizer.npz").exists()


def test_without_validation_states_meanq_is_empty_not_zero(tmp_path, capsys):
    assert main(["train", "breakout", "--epochs", "1", *TINY, "--random-steps", "1", *folders(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("warning: no validation states") == 1 and "meanq 0.000" not in out and "meanq –" in out
    csv_path = tmp_path / "rep" / "breakout.csv"
    assert [r["meanq"] for r in rows(csv_path)] == ["", "", ""]
    assert main(["plot", str(csv_path), "--out", str(tmp_path / "plot.html")]) == 0
    assert (tmp_path / "plot.html").stat().st_size > 0


def test_interrupted_epoch_resumed_with_fewer_train_steps_plays_none(tmp_path, capsys):
    from dqnviz.atari import AtariEnv, resolve_rom
    from dqnviz.config import TrainConfig
    from dqnviz.network import build_q_network
    from dqnviz.snapshot import save_snapshot
    from dqnviz.resume import snapshot_meta

    rom = resolve_rom("breakout")
    env = AtariEnv(rom, seed=0)
    # trained with TINY's 400-frame games (a resumed run keeps its task: --max-frames-per-episode included)
    config = TrainConfig(epochs=1, train_steps=48, max_frames_per_episode=400)
    meta = snapshot_meta(rom, env, config, run="breakout", epoch=1, total_steps=104,
                         train_steps_done=40, weight_updates=10, interrupted={"phase": "train", "steps_done": 40})
    saved = save_snapshot(tmp_path / "snap" / "breakout_1_interrupted.keras",
                          build_q_network(env.num_actions, seed=0), meta)
    assert main(["train", "--resume", str(saved), *TINY, "--train-steps", "16", *folders(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "epoch 1 train: 40 steps were played before the interruption, --train-steps 16 asks for no more" in out
    assert "no update was made" not in out
    table = rows(tmp_path / "rep" / "breakout.csv")
    assert [(r["epoch"], r["phase"]) for r in table] == [("1", "refill"), ("1", "train"), ("1", "test")]
    assert table[1]["steps"] == "0" and table[1]["weight_updates"] == "10" and table[1]["total_train_steps"] == "40"
    assert float(table[1]["last_exploration_rate"]) < 1.0  # the ε the phase would have used, not a default
    snapshot = load_snapshot(tmp_path / "snap" / "breakout_1.keras")
    assert snapshot.meta["train_steps_done"] == 40 and "interrupted" not in snapshot.meta


def test_a_phase_interrupted_twice_counts_every_sitting_in_its_row():
    """carried() → add_earlier() over two interruptions: steps, games, updates, seconds and the mean
    loss add up over all three sittings; adding the same sitting twice counts it once; a snapshot
    from before these figures were kept (steps_done alone) adds nothing."""
    from dqnviz.statistics import PhaseStats

    first = PhaseStats(epoch=3, phase="train", steps=100, game_scores=[2.0], costs=[1.0, 3.0], updates=25, seconds=2.0)
    second = PhaseStats(epoch=3, phase="train", steps=60, game_scores=[5.0], costs=[6.0], updates=15, seconds=1.0)
    second.add_earlier(first.carried())
    second.add_earlier(first.carried())  # once only
    third = PhaseStats(epoch=3, phase="train", steps=40, game_scores=[], costs=[], updates=10, seconds=1.0)
    third.add_earlier(second.carried())
    assert (third.steps, third.steps_before, third.updates, third.game_scores) == (200, 160, 50, [2.0, 5.0])
    assert third.meancost == pytest.approx((1.0 + 3.0 + 6.0) / 3)
    row = third.row(total_train_steps=200, replay_count=10, meanq=None, weight_updates=50, total_time=4.0, epoch_time=1.0)
    assert row["steps"] == 200 and row["nr_games"] == 2 and row["average_reward"] == 3.5
    assert row["steps_per_second"] == pytest.approx(200 / 4.0)

    old = PhaseStats(epoch=3, phase="train", steps=40, updates=10, seconds=1.0)
    old.add_earlier({"phase": "train", "steps_done": 160})
    assert (old.steps, old.updates, old.seconds, old.earlier_added) == (40, 10, 1.0, False)


def test_ctrl_c_between_phases_keeps_no_other_phase_s_figures(tmp_path, monkeypatch):
    """Ctrl-C after the random phase ends but before the train phase starts: the _interrupted
    snapshot's figures are the train phase's (none yet), not the random phase's 64 steps."""
    from tests.conftest import stop_in_phase

    stop_in_phase(monkeypatch, "train")
    dirs = ["--snapshot-dir", str(tmp_path / "snap"), "--report-dir", str(tmp_path / "rep")]
    assert main(["train", "pong", "--epochs", "1", *TINY, *dirs]) == 130
    interrupted = load_snapshot(tmp_path / "snap" / "pong_1_interrupted.keras").meta["interrupted"]
    assert interrupted["steps_done"] == 0 and interrupted["seconds"] == 0
    assert interrupted["updates"] == 0 and interrupted["game_scores"] == [] and interrupted["cost_count"] == 0


def test_every_layer_starts_from_its_own_random_draw():
    """One initialiser object shared by the layers made Keras 3 draw every kernel from one seed:
    conv3 began as conv2 scaled, and a dueling network's fc_value as its fc. Now each kernel is
    drawn on its own, the same for the same seed; "shared" rebuilds the old networks exactly."""
    import numpy as np

    from dqnviz.network import build_q_network
    from dqnviz.snapshot import layer_kernels

    kernels = layer_kernels(build_q_network(6, dueling=True, seed=3))
    assert not np.array_equal(kernels["fc"], kernels["fc_value"])
    conv2, conv3 = kernels["conv2"].ravel(), kernels["conv3"].ravel()
    assert abs(np.corrcoef(conv2, conv3[:conv2.size])[0, 1]) < 0.05
    assert np.array_equal(layer_kernels(build_q_network(6, dueling=True, seed=3))["conv3"], kernels["conv3"])
    for name, kernel in kernels.items():  # He (fan-in) for the hidden layers: std ≈ √(2 / fan_in)
        if name.startswith(("conv", "fc")):
            fan_in = int(np.prod(kernel.shape[:-1]))
            assert kernel.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.15), name
    old = layer_kernels(build_q_network(6, dueling=True, seed=3, initialisation="shared"))
    assert np.array_equal(old["fc"], old["fc_value"])
    with pytest.raises(ValueError, match="initialisation"):
        build_q_network(6, initialisation="other")


def test_an_older_snapshot_rebuilds_its_shared_start_and_a_resume_keeps_it(tmp_path):
    """Snapshots without ``initialisation`` were drawn "shared": their start is rebuilt so (moved
    0 from it), and a run resumed from one records "shared" too; a new run records "independent"."""
    from dqnviz.network import build_q_network
    from dqnviz.snapshot import save_snapshot

    made = load_snapshot(make_snapshot(tmp_path / "made_1.keras", seed=0))
    assert made.meta["initialisation"] == "independent" and starting_point(made).movement["conv2"]["change"] == 0
    meta = {k: v for k, v in made.meta.items() if k != "initialisation"}
    for part in ("config", "preprocessing"):  # trained with TINY's 400-frame games: a resume keeps its task
        meta[part] = {**meta[part], "max_frames_per_episode": 400}
    old_model = build_q_network(made.model.output_shape[-1], seed=0, initialisation="shared")
    old = save_snapshot(tmp_path / "breakout_1.keras", old_model, {**meta, "run": "breakout"})
    start = starting_point(load_snapshot(old))
    assert start.initialisation == "shared" and start.source == "rebuilt"
    assert all(figures["change"] == 0 for figures in start.movement.values())
    assert main(["train", "--resume", str(old), "--epochs", "2", *TINY, *folders(tmp_path)]) == 0
    resumed = load_snapshot(tmp_path / "snap" / "breakout_2.keras")
    assert resumed.meta["initialisation"] == "shared"
    for layer, figures in resumed.meta["movement"].items():  # recorded against the shared start
        assert starting_point(resumed).movement[layer]["change"] == pytest.approx(figures["change"], rel=1e-5, abs=1e-7)


def test_resuming_an_older_rmsprop_snapshot_keeps_its_steps_and_says_so(tmp_path, capsys):
    """A snapshot from before RMSProp's ε was in DeepMind's units (no rmsprop_epsilon_units in its
    metadata): its ε is read as ε·B² and said so in one line; the resumed run's snapshots then
    carry the units, so a later resume reads them as they are."""
    import json
    import zipfile

    made = make_snapshot(tmp_path / "made.keras")
    older = tmp_path / "snap" / "breakout_1.keras"
    older.parent.mkdir()
    with zipfile.ZipFile(made) as source, zipfile.ZipFile(older, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "dqnviz.json":
                meta = json.loads(data)
                del meta["rmsprop_epsilon_units"]
                data = json.dumps(meta).encode()
            target.writestr(item, data)
    argv = ["train", "--resume", str(older), "--epochs", "2", "--name", "r", *TINY, *folders(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # TINY's --batch-size 8 is the resumed run's; the snapshot's ε 0.01 was for its batches of 32
    assert "breakout_1.keras: this snapshot predates RMSProp's ε in DeepMind's units" in out
    assert "its ε 0.01 is kept as --rmsprop-epsilon 10.24, the same steps" in out
    resumed = load_snapshot(tmp_path / "snap" / "r_2.keras").meta
    assert resumed["config"]["rmsprop_epsilon"] == pytest.approx(10.24)
    assert resumed["rmsprop_epsilon_units"] == "summed loss"
