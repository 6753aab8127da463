"""``dqnviz record``: the MP4 it writes, the saliency overlay, frame capture and bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dqnviz.cli import main


def read_video(path):
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        frames = [frame for frame in reader]
        fps = reader.get_meta_data()["fps"]
    return np.asarray(frames), fps


def test_record_writes_every_emulator_frame(breakout_snapshot, tmp_path, capsys):
    out = tmp_path / "videos" / "breakout.mp4"
    assert main(["record", breakout_snapshot, "--out", str(out), "--max-frames", "200"]) == 0
    frames, fps = read_video(out)
    assert frames.shape == (200, 420, 320, 3)
    assert fps == 60
    assert frames.mean() > 5  # not black: the Breakout walls and bricks are there
    printed = capsys.readouterr().out
    assert "score" in printed and str(out) in printed
    assert "(200 frames, cut off by --max-frames)" in printed  # the cut is no game over
    assert os.listdir(out.parent) == ["breakout.mp4"]  # no temporary file left behind
    assert oct(out.stat().st_mode & 0o044) != "0o0"  # readable by others, not mkstemp's 0600


def test_record_with_saliency_and_png_frames(breakout_snapshot, tmp_path):
    out, frames_dir = tmp_path / "s.mp4", tmp_path / "frames"
    argv = ["record", breakout_snapshot, "--out", str(out), "--max-frames", "24", "--saliency", "gradient",
            "--frames-dir", str(frames_dir), "--scale", "1", "--episodes", "2"]
    assert main(argv) == 0
    frames, _ = read_video(out)
    pngs = sorted(frames_dir.iterdir())
    assert len(frames) == len(pngs) == 48  # two games of 24 frames
    from PIL import Image

    first = np.asarray(Image.open(pngs[0]))
    assert first.shape == frames.shape[1:] == (210, 160 + 232, 3)  # screen + Q-value panel
    assert np.abs(frames[0].astype(int) - first).mean() < 6  # the video shows the same image (lossy)


def test_a_game_whose_screen_is_taller_than_210_rows_is_tested_and_recorded(tmp_path, capsys):
    """Adventure's screen has 250 rows (Carnival's 214, Pooyan's 220): the emulator's size, not Breakout's."""
    from tests.helpers import make_history_snapshot

    snapshot = make_history_snapshot(tmp_path / "adventure_1.keras", 4, game="adventure")
    assert main(["test", snapshot, "--episodes", "1", "--max-frames", "60", "--quiet"]) == 0
    out, frames_dir = tmp_path / "a.mp4", tmp_path / "frames"
    assert main(["record", snapshot, "--out", str(out), "--max-frames", "12", "--saliency", "gradient",
                 "--frames-dir", str(frames_dir), "--scale", "1"]) == 0
    frames, _ = read_video(out)
    assert frames.shape == (12, 250, 160 + 232, 3)  # the whole screen, and the Q-value panel as tall


def test_record_takes_plays_largest_scale(breakout_snapshot, tmp_path):
    out = tmp_path / "big.mp4"
    assert main(["record", breakout_snapshot, "--out", str(out), "--max-frames", "4", "--scale", "6", "--quiet"]) == 0
    frames, _ = read_video(out)
    assert frames.shape == (4, 210 * 6, 160 * 6, 3)


def test_overlay_changes_pixels_only_where_saliency_is_non_zero():
    from dqnviz.viewer import saliency_overlay, upsample_map

    rng = np.random.default_rng(0)
    screen = rng.integers(0, 256, (210, 160, 3), dtype=np.uint8)
    saliency = np.zeros((84, 84, 4), np.float32)
    saliency[40, 30, -1] = 3.0
    saliency[10, 70, -1] = -1.5  # the magnitude counts
    saliency[60, 60, 0] = 100.0  # an older frame: not shown
    out = saliency_overlay(screen, saliency)
    changed = np.any(out != screen, axis=-1)
    cells = np.zeros((84, 84), np.float32)
    cells[40, 30] = cells[10, 70] = 1
    allowed = upsample_map(cells) > 0
    assert changed.any()
    assert not (changed & ~allowed).any()
    # The screen pixels inside cell (40, 30): rows 100-102, columns 57-58 (210/84 = 2.5, 160/84 ≈ 1.9).
    assert changed[101, 57] and changed[101, 58]
    assert not changed[60 * 5 // 2, 60 * 160 // 84]  # the older frame's cell
    assert np.array_equal(saliency_overlay(screen, np.zeros((84, 84))), screen)
    assert saliency_overlay(screen, saliency).dtype == np.uint8


def test_frame_env_keeps_atari_env_preprocessing(breakout_snapshot):
    from dqnviz.agent import env_for_snapshot
    from dqnviz.snapshot import read_meta
    from dqnviz.viewer import FrameEnv

    meta = read_meta(breakout_snapshot)
    plain, framed = env_for_snapshot(meta, 3), FrameEnv.capture(env_for_snapshot(meta, 3))
    assert np.array_equal(plain.reset(), framed.reset())
    actions = np.random.default_rng(0).integers(0, plain.num_actions, 120)
    for action in actions:
        a, b = plain.step(action), framed.step(action)
        assert np.array_equal(a.state, b.state) and a.reward == b.reward and a.lives == b.lives
        assert framed.n_frames == 4
        assert np.array_equal(framed.captured()[-1], plain.screen_rgb())
    assert framed.episode_score == plain.episode_score
    assert framed.frame_scores[framed.n_frames - 1] == framed.episode_score


def test_gradient_evaluator_gives_q_values_and_input_gradient(breakout_snapshot):
    from dqnviz.agent import QFunction
    from dqnviz.analysis._model import graph_runner
    from dqnviz.backend import input_gradient
    from dqnviz.snapshot import load_snapshot
    from dqnviz.viewer import Evaluator

    model = load_snapshot(breakout_snapshot).model
    state = np.random.default_rng(1).integers(0, 256, (84, 84, 4), dtype=np.uint8)
    q, gradient = Evaluator(model, "gradient")(state)
    np.testing.assert_allclose(q, QFunction(model)(state), rtol=1e-4, atol=1e-5)
    run = graph_runner(model)
    best = int(np.argmax(q))
    _, expected = input_gradient(lambda x: run(x)[:, best], state[None].astype(np.float32))
    assert gradient.shape == state.shape
    np.testing.assert_allclose(gradient, expected[0], rtol=1e-3, atol=1e-6 * np.abs(expected).max())
    try:
        from dqnviz.analysis import saliency
    except ImportError:
        return
    reference = np.abs(np.asarray(saliency(model, state[None], method="gradient"))[0])
    # Same map up to scale (the analysis may normalise): compare the shapes of |saliency|.
    assert np.corrcoef(reference.ravel(), np.abs(gradient).ravel())[0, 1] > 0.99


@pytest.mark.parametrize("extra, message", [
    (["--episodes", "0"], "--episodes must be between 1 and 100,000, got 0"),
    (["--max-frames", "0"], "--max-frames"),
    (["--epsilon", "1.5"], "--epsilon"),
    (["--out", "x.avi"], ".mp4"),
    (["--out", ""], "--out must not be empty"),  # not silently reports/<name>.mp4
])
def test_bad_numbers_fail_before_anything_is_written(breakout_snapshot, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["record", breakout_snapshot, *extra, "--frames-dir", "frames"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "reports").exists() and not (tmp_path / "frames").exists()
    assert not list(tmp_path.glob("*.avi"))


@pytest.mark.parametrize("content", [None, b"not a zip at all", b"PK\x03\x04broken"])
def test_missing_or_corrupt_snapshot(tmp_path, capsys, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "agent.keras"
    if content is not None:
        path.write_bytes(content)
    assert main(["record", str(path), "--max-frames", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dqnviz record: error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "reports").exists()


def _record_into(snapshot, out, frames_dir, *options) -> int:
    """``dqnviz record SNAPSHOT --out OUT --frames-dir FRAMES_DIR OPTIONS --quiet``: its exit status."""
    return main(["record", snapshot, "--out", str(out), "--frames-dir", str(frames_dir), *options, "--quiet"])


def test_an_unwritable_frames_dir_is_named_before_anything_is_played(breakout_snapshot, tmp_path, capfd):
    (tmp_path / "a_file").write_text("")
    frames_dir, out = tmp_path / "a_file" / "frames", tmp_path / "b.mp4"
    assert _record_into(breakout_snapshot, out, frames_dir, "--max-frames", "50") == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # no stray ffmpeg or imageio line
    assert f"--frames-dir {frames_dir}" in err and "b.mp4" not in err
    assert not out.exists()


def test_ctrl_c_in_the_middle_of_a_frame_leaves_no_video_and_no_ffmpeg_complaint(breakout_snapshot, tmp_path,
                                                                                   capfd, monkeypatch):
    """ffmpeg must never read the half frame that a Ctrl-C leaves in its pipe ("Invalid buffer size")."""
    import subprocess
    import time

    class HalfFrameThenCtrlC:
        def __init__(self, pipe):
            self.pipe, self.frames = pipe, 0

        def write(self, data):
            self.frames += 1
            if self.frames == 20:
                raw = bytes(memoryview(data).cast("B"))
                self.pipe.write(raw[: len(raw) // 2])
                self.pipe.flush()
                raise KeyboardInterrupt
            return self.pipe.write(data)

        def close(self):
            self.pipe.close()
            time.sleep(0.5)  # a busy machine: ffmpeg gets to read what it was given before it is killed

        def __getattr__(self, name):
            return getattr(self.pipe, name)

    class Popen(subprocess.Popen):
        def __init__(self, command, *args, **kwargs):
            super().__init__(command, *args, **kwargs)
            if "ffmpeg" in os.path.basename(str(command[0])) and self.stdin is not None:
                self.stdin = HalfFrameThenCtrlC(self.stdin)

    monkeypatch.setattr(subprocess, "Popen", Popen)
    out = tmp_path / "videos" / "c.mp4"
    assert main(["record", breakout_snapshot, "--out", str(out), "--max-frames", "100", "--quiet"]) == 130
    err = capfd.readouterr().err
    assert err.strip() == "dqnviz record: interrupted", err
    assert not out.exists() and not out.parent.exists()  # nor the folder made for it


class NullWriter:
    frames = 0

    def write(self, frame):
        self.frames += 1


def test_record_plays_the_games_that_test_plays(breakout_snapshot, tmp_path, capsys):
    """Game i of `record --seed S` is episode i of `test --seed S` (emulator seed S+i-1, the same ε
    draws), so a score in test's CSV can be watched; and the progress bar ends full at the frames
    recorded, not at the games' cap."""
    import re

    from dqnviz.agent import env_for_snapshot, evaluate
    from dqnviz.snapshot import load_snapshot

    snapshot = load_snapshot(breakout_snapshot)
    tested = evaluate(snapshot.model, lambda seed: env_for_snapshot(snapshot.meta, seed=seed), 2, 0.5, 3, parallel=2)
    out = tmp_path / "games.mp4"
    assert main(["record", breakout_snapshot, "--out", str(out), "--episodes", "2", "--epsilon", "0.5",
                 "--seed", "3", "--scale", "1"]) == 0
    captured = capsys.readouterr()
    games = re.findall(r"game (\d): score (\S+) \(([\d,]+) frames, game over\)", captured.out)
    assert [(int(i), float(score)) for i, score, _ in games] == [(r["episode"], r["score"]) for r in tested]
    total = sum(int(frames.replace(",", "")) for *_, frames in games)
    assert captured.err.strip().splitlines()[-1].startswith(f"record breakout_1: {total:,}/{total:,} frames")
    assert len(read_video(out)[0]) == total


def test_recorder_games_do_not_depend_on_what_played_before(breakout_snapshot):
    from dqnviz.commands.record import Recorder
    from dqnviz.snapshot import load_snapshot

    snapshot = load_snapshot(breakout_snapshot)
    both = Recorder(snapshot, epsilon=1.0, seed=11, max_frames=400)
    both.play(2, NullWriter())
    second = Recorder(snapshot, epsilon=1.0, seed=12, max_frames=400)
    second.play(1, NullWriter())
    assert both.game_frames[1] == second.game_frames[0] and both.scores[1] == second.scores[0]
    again = Recorder(snapshot, epsilon=1.0, seed=11, max_frames=400)
    again.play(1, NullWriter())
    again.play(1, NullWriter())  # a second play() starts from game 1 again
    assert again.game_frames == [both.game_frames[0]] * 2


def test_the_snapshot_is_checked_against_its_game_once_not_once_a_game(breakout_snapshot, monkeypatch):
    """Every game builds its own environment (its own seed), but the snapshot is the same: it is checked
    against its game once, when the recorder is made, and the later games are not checked again."""
    import dqnviz.agent
    from dqnviz.commands.record import Recorder
    from dqnviz.snapshot import load_snapshot

    checked = []
    real = dqnviz.agent.checked_env_for_snapshot
    monkeypatch.setattr(dqnviz.agent, "checked_env_for_snapshot",
                        lambda snapshot, seed=0, **kw: checked.append(seed) or real(snapshot, seed, **kw))
    recorder = Recorder(load_snapshot(breakout_snapshot), epsilon=1.0, seed=3, max_frames=40)
    assert checked == [3]
    recorder.play(3, NullWriter())
    recorder.play(2, NullWriter())  # a second play() makes game 1's environment again
    assert checked == [3] and len(recorder.scores) == 5


def test_a_frames_dir_with_another_recordings_frames_is_refused(breakout_snapshot, tmp_path, capsys):
    """New frames would overwrite the first old ones and leave the rest: two recordings mixed."""
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    (frames_dir / "frame_000099.png").write_bytes(b"old")
    out = tmp_path / "v.mp4"
    assert _record_into(breakout_snapshot, out, frames_dir, "--max-frames", "8") == 2
    err = capsys.readouterr().err.strip()
    assert f"--frames-dir {frames_dir} already holds frames" in err and len(err.splitlines()) == 1
    assert not out.exists() and sorted(p.name for p in frames_dir.iterdir()) == ["frame_000099.png"]


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_recording_leaves_no_frames(breakout_snapshot, tmp_path, capsys, monkeypatch, existing):
    """Like the video, the PNGs go when the recording fails or is interrupted; a folder that was
    there stays, with what it held."""
    from dqnviz.commands import record

    frames_dir = tmp_path / "frames" / "run1"
    if existing:
        frames_dir.mkdir(parents=True)
        (frames_dir / "notes.txt").write_text("mine")
    write = record.VideoWriter.write

    def interrupted(self, frame):
        if self.frames == 10:
            raise KeyboardInterrupt
        write(self, frame)

    monkeypatch.setattr(record.VideoWriter, "write", interrupted)
    out = tmp_path / "v.mp4"
    assert _record_into(breakout_snapshot, out, frames_dir, "--max-frames", "40", "--scale", "1") == 130
    assert not out.exists()
    if existing:
        assert sorted(p.name for p in frames_dir.iterdir()) == ["notes.txt"]
    else:
        assert not (tmp_path / "frames").exists()
    assert capsys.readouterr().err.strip() == "dqnviz record: interrupted"


def test_an_ffmpeg_failure_names_the_video_not_its_temporary_file(breakout_snapshot, tmp_path, capsys,
                                                                   monkeypatch):
    import imageio_ffmpeg

    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\ncat > /dev/null\necho 'Error closing file: No space left on device' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(fake))
    out = tmp_path / "videos" / "full.mp4"
    assert main(["record", breakout_snapshot, "--out", str(out), "--max-frames", "8", "--scale", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"dqnviz record: error: ffmpeg could not write {out}: Error closing file: No space left on device"
    assert not out.parent.exists()  # no temporary file, nor the folder made for the video


def test_without_an_encoder_record_fails_in_one_line_before_playing(breakout_snapshot, tmp_path, capsys,
                                                                     monkeypatch):
    """imageio-ffmpeg comes with the [play] extra: without it, one line says so before any game."""
    import sys

    import dqnviz.commands.record as record

    played = []
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed: import fails
    monkeypatch.setattr(record.Recorder, "play", lambda *args, **kwargs: played.append(1))
    out = tmp_path / "x.mp4"
    assert main(["record", breakout_snapshot, "--out", str(out), "--max-frames", "8", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == ("dqnviz record: error: dqnviz record needs imageio-ffmpeg to encode "
                                               "the video: pip install 'dqnviz[play]'")
    assert played == [] and [p.name for p in tmp_path.iterdir()] == ["breakout_1.keras"]  # no video begun


def test_a_frames_dir_in_use_by_another_recording_is_refused(breakout_snapshot, tmp_path, capsys):
    """Two recordings started together both find the folder without frames: the second is refused
    in one line while the first holds the folder, and writes nothing; once the first ends, the
    folder is free again, and the lock file goes with it."""
    from dqnviz.commands.record import LOCK_NAME, FramesDir

    frames_dir, out = tmp_path / "frames", tmp_path / "v.mp4"
    argv = ["record", breakout_snapshot, "--out", str(out), "--frames-dir", str(frames_dir),
            "--max-frames", "8", "--scale", "1", "--quiet"]
    with FramesDir(frames_dir) as first:  # the first recording, as record holds it, in this process
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"dqnviz record: error: --frames-dir {frames_dir} is in use by another dqnviz record "
                       f"(process {os.getpid()}); give another folder, or wait until that recording ends")
        assert not out.exists() and [p.name for p in frames_dir.iterdir()] == [LOCK_NAME]
        assert first.written == []
    assert frames_dir.is_dir() and list(frames_dir.iterdir()) == []  # the first ended well: its folder stays
    assert main(argv) == 0
    assert sorted(p.name for p in frames_dir.iterdir()) == [f"frame_{i:06d}.png" for i in range(1, 9)]


def test_a_recording_killed_while_it_holds_the_folder_does_not_block_it(breakout_snapshot, tmp_path, capsys):
    """Another process holds the folder: refused. Killed, it cannot remove its lock file, but the
    system releases its lock, and the file is taken over."""
    import subprocess
    import sys

    from dqnviz.commands.record import LOCK_NAME

    frames_dir, out = tmp_path / "frames", tmp_path / "v.mp4"
    argv = ["record", breakout_snapshot, "--out", str(out), "--frames-dir", str(frames_dir),
            "--max-frames", "4", "--scale", "1", "--quiet"]
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from dqnviz.commands.record import FramesDir; "
                               "FramesDir(sys.argv[1]).__enter__(); print('held', flush=True); sys.stdin.read()",
                               str(frames_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert main(argv) == 2
        assert f"is in use by another dqnviz record (process {holder.pid})" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.communicate()
    assert [p.name for p in frames_dir.iterdir()] == [LOCK_NAME]  # left by the killed process
    assert main(argv) == 0
    assert sorted(p.name for p in frames_dir.iterdir()) == [f"frame_{i:06d}.png" for i in range(1, 5)]


def test_frames_that_appear_before_the_folder_is_claimed_are_refused(breakout_snapshot, tmp_path, capsys,
                                                                      monkeypatch):
    """A recording into the folder that ends between the first check and the claim leaves its frames:
    they are found again under the lock, and kept."""
    from dqnviz.commands import record

    frames_dir, out = tmp_path / "frames", tmp_path / "v.mp4"
    check = record.check_arguments

    def then_another_recording_ends(args):
        checked = check(args)
        frames_dir.mkdir()
        (frames_dir / "frame_000001.png").write_bytes(b"theirs")
        return checked

    monkeypatch.setattr(record, "check_arguments", then_another_recording_ends)
    assert _record_into(breakout_snapshot, out, frames_dir, "--max-frames", "4", "--scale", "1") == 2
    err = capsys.readouterr().err.strip()
    assert f"--frames-dir {frames_dir} already holds frames" in err and len(err.splitlines()) == 1
    assert not out.exists() and [p.name for p in frames_dir.iterdir()] == ["frame_000001.png"]
    assert (frames_dir / "frame_000001.png").read_bytes() == b"theirs"


@pytest.mark.parametrize("existing", [False, True])
def test_an_interrupted_recording_removes_exactly_the_frames_it_wrote(breakout_snapshot, tmp_path, capsys,
                                                                       monkeypatch, existing):
    """Files that another process puts in the folder while the recording runs (even one named like a
    frame) stay, and so does the folder that the recording made for them; the recording's own PNGs
    and its lock file go."""
    from dqnviz.commands import record

    frames_dir = tmp_path / "frames" / "run1"
    if existing:
        frames_dir.mkdir(parents=True)
    write = record.VideoWriter.write
    seen = []

    def interrupted(self, frame):
        if self.frames == 3:  # another process writes there while we record
            (frames_dir / "frame_999999.png").write_bytes(b"theirs")
            (frames_dir / "notes.txt").write_text("theirs")
        if self.frames == 10:
            seen.extend(sorted(p.name for p in frames_dir.iterdir()))
            raise KeyboardInterrupt
        write(self, frame)

    monkeypatch.setattr(record.VideoWriter, "write", interrupted)
    out = tmp_path / "v.mp4"
    assert _record_into(breakout_snapshot, out, frames_dir, "--max-frames", "40", "--scale", "1") == 130
    assert capsys.readouterr().err.strip() == "dqnviz record: interrupted"
    ours = [f"frame_{i:06d}.png" for i in range(1, 11)]
    assert seen == sorted([record.LOCK_NAME, *ours, "frame_999999.png", "notes.txt"])
    assert sorted(p.name for p in frames_dir.iterdir()) == ["frame_999999.png", "notes.txt"]
    assert (frames_dir / "frame_999999.png").read_bytes() == b"theirs" and not out.exists()
