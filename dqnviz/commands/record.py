"""``dqnviz record SNAPSHOT``: an MP4 of the agent playing, optionally with its saliency."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from dqnviz.config import TEST_MAX_FRAMES
from dqnviz.errors import UserError

HELP = "record an MP4 of the agent playing (optionally with saliency and Q-values)"

DESCRIPTION = """\
Play whole games (until game over, or --max-frames emulator frames a game) with an ε-greedy
agent and write an H.264 MP4 at 60 fps showing every emulator frame, scaled up.

Game i is the game that `dqnviz test` plays as its episode i with the same --seed (emulator seed
S+i-1 and the same ε draws), so a score in its CSV can be watched: `--seed S --episodes i`. Both
count --max-frames from the end of the no-op start: the frames recorded.

With --saliency the chosen saliency map of the newest frame is drawn in colour over the game,
and the Q-value of every action is shown beside it (the greedy action green, the action taken
marked ▶). Gradient saliency costs one compiled forward+backward pass per agent step;
perturbation saliency is far slower.

The video is written only when the recording is complete: a failure or Ctrl-C leaves no video,
and no PNGs from --frames-dir (which must not already hold frame_*.png files of another
recording, nor be in use by another recording now: a second one into it is refused).

  dqnviz record snapshots/breakout_13.keras
  dqnviz record snapshots/pong_24.keras --saliency gradient --out reports/pong_saliency.mp4
"""

FPS = 60
PANEL_WIDTH = 232
FRAME_GLOB = "frame_*.png"
LOCK_NAME = ".dqnviz-record.lock"  # in --frames-dir while a recording writes there (see FramesDir)


def add_arguments(parser) -> None:
    from dqnviz.commands.arguments import add_viewing_arguments, nonempty, whole_number

    parser.add_argument("snapshot", metavar="SNAPSHOT", help="a .keras snapshot written by dqnviz train")
    parser.add_argument("--out", type=nonempty, metavar="FILE", help="the MP4 to write, made atomically, with any missing folders "
                                                      "(default: reports/<snapshot name>.mp4)")
    add_viewing_arguments(parser, default_scale=2, episodes_help="games to play, one after another",
                          scale_note=", a 320 × 420 game")
    parser.add_argument("--saliency", choices=["gradient", "perturbation"],
                        help="draw this saliency map over the game, with Q-value bars beside it")
    parser.add_argument("--frames-dir", type=nonempty, metavar="DIR", help="also keep every frame as a PNG in DIR "
                                                            "(frame_000001.png, …; DIR must hold none yet)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the lines that end the "
                                                             "recording (each game's score, the file written)")
    parser.add_argument("--max-frames", type=whole_number(minimum=1), default=TEST_MAX_FRAMES, metavar="N",
                        help=f"emulator frames at most per game (default: {TEST_MAX_FRAMES:,} = 5 minutes)")


def check_arguments(args) -> Path:
    """Check the output paths before anything is loaded or written (the parser checked the numbers)."""
    out = Path(args.out) if args.out else Path("reports") / f"{Path(args.snapshot).stem}.mp4"
    if out.suffix.lower() != ".mp4":
        raise UserError(f"--out must end in .mp4 (an H.264 MP4 is written), got {out}")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name ending in .mp4")
    if args.frames_dir and Path(args.frames_dir).exists() and not Path(args.frames_dir).is_dir():
        raise UserError(f"--frames-dir {args.frames_dir} exists and is not a folder")
    if args.frames_dir and Path(args.frames_dir).is_dir() and next(Path(args.frames_dir).glob(FRAME_GLOB), None):
        # new frames would overwrite the first of them and leave the rest: two recordings mixed
        raise UserError(f"--frames-dir {args.frames_dir} already holds frames ({FRAME_GLOB}) of another "
                        f"recording; give an empty or new folder")
    from dqnviz.outputs import check_output, check_writable

    ffmpeg()  # before the games: a missing encoder found after them would lose the recording
    check_output(out, inputs=[args.snapshot])
    if args.frames_dir:
        try:
            check_writable(Path(args.frames_dir) / "frame_000001.png")
        except UserError as error:
            raise UserError(f"--frames-dir {args.frames_dir}: {error}") from None
    return out


def ffmpeg() -> str:
    """The ffmpeg that imageio-ffmpeg ships (or finds); a one-line UserError when there is none."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError("dqnviz record needs imageio-ffmpeg to encode the video: pip install 'dqnviz[play]'") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as error:  # neither its own binary nor one on PATH
        raise UserError(f"dqnviz record cannot find ffmpeg: {error}") from None


def run(args) -> int:
    from dqnviz.progress import plural

    out = check_arguments(args)

    from dqnviz.outputs import atomic_write
    from dqnviz.snapshot import load_snapshot

    frames_dir = Path(args.frames_dir) if args.frames_dir else None
    # claimed before the snapshot loads, so that a folder in use is refused at once
    claim = FramesDir(frames_dir) if frames_dir is not None else None
    with claim if claim is not None else contextlib.nullcontext():
        snapshot = load_snapshot(args.snapshot)
        recorder = Recorder(snapshot, saliency=args.saliency, epsilon=args.epsilon, seed=args.seed,
                            scale=args.scale, max_frames=args.max_frames)
        total = args.max_frames * args.episodes

        from dqnviz.progress import Progress

        with Progress(f"record {snapshot.name}", total=total, unit="frames", enabled=not args.quiet) as progress:
            def on_frame(done, score):
                if done % 16 == 0:
                    game = min(len(recorder.scores) + 1, args.episodes)
                    progress.update(done, score=f"{score:g}", **({"game": f"{game}/{args.episodes}"} if args.episodes > 1 else {}))

            def write(tmp):
                with VideoWriter(tmp, recorder.size, fps=FPS, name=out) as writer:
                    recorder.play(args.episodes, writer, frames_dir=frames_dir, on_frame=on_frame,
                                  saved=claim.written if claim is not None else None)

            atomic_write(out, write, suffix=".mp4")
            # Games end before their cap: the bar ends full at the frames recorded, not at the cap.
            progress.set_total(recorder.frames_written)
            progress.update(recorder.frames_written, score=f"{recorder.scores[-1]:g}" if recorder.scores else "0")

    for i, (score, frames) in enumerate(zip(recorder.scores, recorder.game_frames), 1):
        print(f"game {i}: score {score:g} ({frames:,} {plural('frame', frames)}, "
              f"{'game over' if recorder.game_overs[i - 1] else 'cut off by --max-frames'})")
    seconds = recorder.frames_written / FPS
    print(f"wrote {out} ({recorder.frames_written:,} {plural('frame', recorder.frames_written)}, {seconds:.1f} s at {FPS} fps"
          f"{', ' + args.saliency + ' saliency' if args.saliency else ''})")
    if frames_dir:
        print(f"frames in {frames_dir}/")
    return 0


class FramesDir:
    """``--frames-dir``, claimed for one recording: ``with FramesDir(path) as frames: ...``.

    Entering makes the folder (and its missing parents) and takes its lock: the file
    ``LOCK_NAME`` in it, held with an exclusive ``flock`` (as the trainer holds its CSV) until the
    block ends, so that a second recording into the same folder at the same time is refused in one
    line, and only then is the folder checked for another recording's frames (``check_arguments``
    checked before this claim, so two recordings started together could both pass). The lock
    goes with its process however it ends: a killed recording's lock file is taken over.

    The recording adds every PNG it begins to write to ``written``. If the block fails or is
    interrupted, exactly those are removed (a frame may be half written), as the video is, then
    the folders that entering made if they are empty: never a file that another process wrote.
    The lock file is removed whatever happens.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.written: list = []
        self._lock_path = self.path / LOCK_NAME
        self._fd = None
        self._made = []  # the folders entering made, innermost first
        self._refused = False  # another recording holds the folder

    def __enter__(self) -> "FramesDir":
        self._made = [folder for folder in (self.path, *self.path.parents) if not folder.exists()]
        try:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UserError(f"cannot write --frames-dir {self.path}: {error.strerror or error}") from None
            self._claim()
        except BaseException:
            if self._refused:  # the folder is the holder's (it may have made it), not ours
                self._made = []
            self._end(failed=True)
            raise
        try:
            if next(self.path.glob(FRAME_GLOB), None):  # a recording into it that has just ended
                raise UserError(f"--frames-dir {self.path} already holds frames ({FRAME_GLOB}) of another "
                                f"recording; give an empty or new folder")
        except BaseException:
            self._end(failed=True)
            raise
        return self

    def __exit__(self, exc_type, *exc):
        self._end(failed=exc_type is not None)
        return False

    def _claim(self) -> None:
        while True:
            try:
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                raise UserError(f"cannot write --frames-dir {self.path}: {error.strerror or error}") from None
            try:
                if not _lock(fd):
                    self._refused = True
                    holder = _lock_holder(fd)
                    raise UserError(f"--frames-dir {self.path} is in use by another dqnviz record"
                                    f"{f' (process {holder})' if holder else ''}; give another folder, "
                                    f"or wait until that recording ends")
                try:  # still the lock file? One that a recording just ending removed is no claim
                    ours = os.path.samestat(os.fstat(fd), os.stat(self._lock_path))
                except FileNotFoundError:
                    ours = False
                if ours:
                    with contextlib.suppress(OSError):  # for the refusal's message only
                        os.ftruncate(fd, 0)
                        os.write(fd, f"{os.getpid()}\n".encode())  # at 0: the file was just opened
                    self._fd = fd
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _end(self, failed: bool) -> None:
        from dqnviz.stopping import deferred_interrupts

        with deferred_interrupts():  # a second Ctrl-C waits until the PNGs are removed
            if failed:
                for path in self.written:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                self.written = []
            if self._fd is not None:
                fd, self._fd = self._fd, None
                if os.name != "nt":  # removed while still held: no other recording can hold it yet
                    with contextlib.suppress(OSError):
                        os.unlink(self._lock_path)
                    os.close(fd)
                else:  # Windows removes no open file
                    os.close(fd)
                    with contextlib.suppress(OSError):
                        os.unlink(self._lock_path)
            if failed:
                for folder in self._made:  # innermost first; one that holds anything stays, and those above it
                    try:
                        os.rmdir(folder)
                    except FileNotFoundError:  # never made: mkdir failed below its parent
                        continue
                    except OSError:
                        break
                self._made = []


def _lock(fd: int) -> bool:
    """Take an exclusive lock on the open file ``fd`` without waiting; False if another holds it.
    The system releases it when the process ends, however it ends."""
    from dqnviz.outputs import try_flock

    taken = try_flock(fd)
    if taken is not None:
        return taken
    try:
        import msvcrt
    except ImportError:  # neither: no lock, as the trainer then has none
        return True
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _lock_holder(fd: int) -> int | None:
    """The process id that the lock file's holder wrote in it, if it can be read."""
    try:
        text = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:  # Windows: the locked byte cannot be read
        return None
    return int(text) if text.isdigit() else None


class VideoWriter:
    """H.264 (yuv420p) MP4 through imageio-ffmpeg's bundled ffmpeg; ``write(rgb uint8)`` per frame.

    ffmpeg runs in its own session, so a Ctrl-C reaches only us. Leaving the block on an error or
    an interrupt kills ffmpeg before its input is closed: the video is thrown away anyway, and a
    half-written frame must not reach it ("[rawvideo] Invalid buffer size" on the terminal).
    ffmpeg's own messages are kept and become the error if it fails.
    """

    def __init__(self, path, size, fps=FPS, crf=18, preset="veryfast", name=None):
        width, height = size
        if width % 2 or height % 2:
            raise ValueError(f"H.264 needs even frame sizes, got {width}×{height}")
        self.path, self.size, self.fps = str(path), (int(width), int(height)), fps
        self.name = str(name if name is not None else path)  # what messages call it (not a temporary file)
        self.crf, self.preset = crf, preset
        self._process = None
        self._log = None
        self.frames = 0

    def __enter__(self):
        import subprocess
        import tempfile
        import warnings

        width, height = self.size
        command = [ffmpeg(), "-y", "-loglevel", "error",
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(self.fps), "-i", "pipe:0",
                   "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(self.crf), "-preset", self.preset,
                   "-movflags", "+faststart", "-f", "mp4", self.path]
        self._log = tempfile.TemporaryFile()  # not a pipe: ffmpeg can never block on a full one
        with warnings.catch_warnings():
            # JAX warns about any fork; subprocess forks and immediately execs ffmpeg, which is safe.
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                             stderr=self._log, start_new_session=True)
        return self

    def write(self, frame) -> None:
        import numpy as np

        if frame.shape[:2] != (self.size[1], self.size[0]):
            raise ValueError(f"frame of shape {frame.shape} in a {self.size[0]}×{self.size[1]} video")
        try:
            self._process.stdin.write(np.ascontiguousarray(frame, np.uint8).data)
        except BrokenPipeError:  # ffmpeg has quit: say why, not "Broken pipe"
            self._process.wait()
            raise UserError(f"ffmpeg stopped after {self.frames} frames of {self.name}: "
                            f"{self._ffmpeg_said(self._process)}") from None
        self.frames += 1

    def _ffmpeg_said(self, process) -> str:
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1].strip() if lines else f"exit status {process.returncode}"

    def __exit__(self, exc_type, *exc):
        process, self._process = self._process, None
        if process is None:
            return False
        try:
            if exc_type is None:
                try:
                    process.stdin.close()  # end of input: ffmpeg finishes the file
                except BrokenPipeError:
                    pass  # ffmpeg quit early: its exit status says so
                if process.wait() != 0:
                    raise UserError(f"ffmpeg could not write {self.name}: {self._ffmpeg_said(process)}")
        finally:
            if process.poll() is None:  # leaving on an error or Ctrl-C, here or in the block
                process.kill()
                process.wait()
            try:
                process.stdin.close()
            except OSError:  # bytes still buffered for the killed ffmpeg
                pass
            self._log.close()
        return False


class Recorder:
    """Plays games with a snapshot's agent and renders every emulator frame.

    ``size`` is the video's (width, height). ``play`` sends frames to ``writer.write`` (and PNGs
    to ``frames_dir``) and fills ``scores``, ``game_frames``, ``game_overs`` and ``frames_written``.
    """

    def __init__(self, snapshot, saliency=None, epsilon=0.05, seed=0, scale=2, max_frames=TEST_MAX_FRAMES,
                 panel_width=PANEL_WIDTH):
        from dqnviz.viewer import Evaluator, Panel, even

        self.snapshot, self.saliency, self.epsilon = snapshot, saliency, epsilon
        self.scale, self.max_frames, self.seed = scale, max_frames, seed
        # game 1's, made now to check the snapshot against its game (once: later games are not checked again)
        self.env, self.rng = self._game(0, check=True)
        self._fresh = True  # self.env and self.rng have not played yet
        self.evaluator = Evaluator(snapshot.model, saliency)
        height, width = (side * scale for side in self.env.screen_shape)  # 210 × 160 in most games
        self.panel = Panel(height, even(panel_width), self.env.action_names) if saliency else None
        self.size = (width + (self.panel.width if self.panel else 0), height)
        self.scores, self.game_frames, self.game_overs = [], [], []
        self.frames_written = 0

    def _game(self, game: int, check: bool = False):
        """Game ``game``'s (from 0) environment and ε stream, as ``dqnviz test`` plays its episode
        ``game``, cut off where test cuts it: ``max_frames`` frames after the no-op start.
        ``check``: check the snapshot against its game first (the constructor does, once)."""
        from dqnviz.viewer import FrameEnv

        return FrameEnv.for_episode(self.snapshot, self.seed, game, self.max_frames, check=check)

    def play(self, episodes, writer, frames_dir=None, on_frame=None, saved=None) -> None:
        """``saved``: a list that the path of each PNG is added to before it is written (so that
        a failed recording can remove exactly the PNGs it wrote, see :class:`FramesDir`)."""
        from dqnviz.viewer import one_blas_thread

        with one_blas_thread():  # 3-10x faster on a small CPU, see one_blas_thread
            self._play(episodes, writer, frames_dir, on_frame, saved)

    def _play(self, episodes, writer, frames_dir, on_frame, saved=None) -> None:
        from dqnviz.agent import epsilon_greedy
        from dqnviz.viewer import blend, compose, glyph, saliency_layer, scale_screen

        if frames_dir is not None:
            try:
                frames_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:  # a UserError, so atomic_write does not blame the video
                raise UserError(f"cannot write --frames-dir {frames_dir}: {error.strerror or error}") from None
        for game in range(episodes):
            # Each game its own emulator seed and ε stream, as in dqnviz test (agent.evaluate).
            if game > 0 or not self._fresh:
                self.env, self.rng = self._game(game)
            self._fresh = False
            env = self.env
            state = env.reset()
            has_lives = env.lives > 0
            frames, score = 0, 0.0
            game_over = False
            while frames < self.max_frames and not game_over:
                q, saliency = self.evaluator(state)
                action = int(epsilon_greedy(q, self.epsilon, self.rng)[0])
                step = env.step(action)
                layer = saliency_layer(saliency, env.screen_shape) if saliency is not None else None
                for k in range(env.n_frames):
                    if frames >= self.max_frames:
                        break
                    image = scale_screen(blend(env.frames[k], layer), self.scale)
                    if self.panel is not None:
                        lines = [("score", f"{env.frame_scores[k]:g}")]
                        if has_lives:  # Pong and others have no lives: ALE reports 0
                            lines.append(("lives", str(step.lives)))
                        lines += [(glyph("ε", "eps"), f"{self.epsilon:g}"), ("game", f"{game + 1}/{episodes}"),
                                  ("saliency", self.saliency)]
                        image = compose(image, self.panel.render(self.snapshot.name, lines, q, action))
                    writer.write(image)
                    frames += 1
                    score = float(env.frame_scores[k])
                    self.frames_written += 1
                    if frames_dir is not None:
                        png = frames_dir / f"frame_{self.frames_written:06d}.png"
                        if saved is not None:
                            saved.append(png)
                        _save_png(png, image)
                    if on_frame:
                        on_frame(self.frames_written, score)
                state = step.state
                game_over = bool(env.ale.game_over())  # the game's own end, not the --max-frames cut
            self.scores.append(score)
            self.game_frames.append(frames)
            self.game_overs.append(bool(game_over))


def _save_png(path, image) -> None:
    from PIL import Image

    try:
        Image.fromarray(image).save(path, compress_level=1)
    except OSError as error:  # a full disk, say: name the frame, not the video
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None

