"""``dqnviz play SNAPSHOT``: watch an agent play in a window, and take over with the keyboard."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
import types
from dataclasses import dataclass

from dqnviz.config import TEST_MAX_FRAMES
from dqnviz.errors import UserError

HELP = "watch an agent play in a window; take over and hand back with the keyboard"

DESCRIPTION = """\
Open a window with the game (scaled up) and, beside it, the agent's Q-value for every action
(the greedy action green, the action taken marked ▶), the score, lives, ε, who is playing
(the agent, or you and the action your keys send) and the speed.

Keys (in the window):
  m             take over from the agent; m again hands the game back to it
  arrows, space play while you have taken over: the keys held (or tapped) during a step give the
                game's closest action, e.g. ↑+→+space → UPRIGHTFIRE; in Pong ↑/↓ move your paddle
                (ALE calls these RIGHT/LEFT); nothing held is NOOP
  a / s         slower / faster: 1/8× to 8× (default: 1× = 60 emulator frames a second, real time)
  p             pause and resume
  q, Esc        quit (closing the window or Ctrl-C in the terminal also quits)

The agent acts as `dqnviz test` has it act: ε-greedy with --epsilon, the snapshot's frame skip,
history, sticky actions and random no-op start, and a game is cut off after --max-frames frames
(counted from the end of the no-op start). Game i uses emulator seed S+i-1 and its own ε stream, so while you
do not take over it is the game that `dqnviz test --seed S` plays as its episode i. While you
play, ε is off and the Q-values are what the agent would have done.

At the end (the last game over, q, the window closed or Ctrl-C) a line per game gives its score,
how it ended, and who played: "agent only", or how many of its steps you played. When the last
game ends, its last screen stays up with the scores ("game over") until you press a key or close
the window, or for 30 seconds if nobody does (p there stops that countdown).

Needs a display (and `pip install 'dqnviz[play]'` for pygame); without one,
`dqnviz record SNAPSHOT` makes a video instead.

  dqnviz play snapshots/pong_24.keras
  dqnviz play snapshots/breakout_13.keras --episodes 3 --epsilon 0 --scale 2
"""

SPEEDS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
PANEL_WIDTH = 300
DIRECTIONS = ("UP", "DOWN", "LEFT", "RIGHT", "FIRE")
# ALE's Pong reads a paddle controller turned by RIGHT (paddle up) and LEFT (paddle down), and
# has no UP or DOWN action: without this, ↑ and ↓ would send NOOP and the paddle would not move.
ARROWS_BY_GAME = {"pong": {"UP": "RIGHT", "DOWN": "LEFT"}}
WINDOWLESS_DRIVERS = ("dummy", "offscreen")  # SDL drivers that show no window
HOLD_SECONDS = 30.0  # the last game's last screen stays up this long when no key is pressed
HOLD_GRACE = 0.75  # seconds after the end in which a key (still playing) does not close the window


def help_lines(game: str = "") -> list:
    """The key help at the bottom of the window's panel."""
    arrows = "↑ ↓ space" if game in ARROWS_BY_GAME else "arrows, space"
    return [
        "m  take over / hand back",
        f"{arrows}  play (taken over)",
        "a / s  slower / faster",
        "p  pause     q, Esc  quit",
    ]



def add_arguments(parser) -> None:
    from dqnviz.commands.arguments import add_viewing_arguments, whole_number

    parser.add_argument("snapshot", metavar="SNAPSHOT", help="a .keras snapshot written by dqnviz train")
    add_viewing_arguments(parser, default_scale=3, episodes_help="games to play before the window closes",
                          scale_note=", a 480 × 630 game beside the Q-values")
    parser.add_argument("--max-frames", type=whole_number(minimum=1), default=TEST_MAX_FRAMES, metavar="N",
                        help="emulator frames per game before it is cut off, counted from the end of the no-op "
                             f"start as dqnviz test counts them (default: {TEST_MAX_FRAMES:,} = 5 minutes)")


def display_problem(environ=None, driver: str | None = None) -> str | None:
    """Why no window can be opened, or None when a display seems to be there.

    Without ``driver``, judged from the environment before pygame starts. With ``driver`` (what
    ``pygame.display.get_driver()`` says after ``pygame.display.init()``), whether SDL, unable
    to reach the display, fell back to a driver that shows nothing (``offscreen``, whose windows
    can crash the process when it opens one).
    """
    environ = os.environ if environ is None else environ
    asked = environ.get("SDL_VIDEODRIVER", "").strip().lower()
    if driver is not None:
        driver = driver.strip().lower()
        if driver not in WINDOWLESS_DRIVERS:
            return None
        if asked == driver:
            return f"SDL_VIDEODRIVER={driver} shows no window"
        shown = environ.get("WAYLAND_DISPLAY") or environ.get("DISPLAY")
        where = f"the display {shown} cannot be reached" if shown else "no display could be opened"
        return f"{where} (SDL fell back to its {driver} driver, which shows no window)"
    if asked in WINDOWLESS_DRIVERS:
        return f"SDL_VIDEODRIVER={asked} shows no window"
    if asked:
        return None
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
            return "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
    return None


def no_display(reason: str) -> UserError:
    return UserError(f"cannot open a window: {reason}; use `dqnviz record SNAPSHOT` to make a video instead")


def import_pygame():
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError:
        raise UserError("dqnviz play needs pygame: pip install 'dqnviz[play]'") from None
    return pygame


@contextlib.contextmanager
def stderr_held():
    """Hold what C libraries write to fd 2 (SDL probing Wayland prints "error: XDG_RUNTIME_DIR
    is invalid …"); ``held.text`` has it afterwards, for the caller to show or drop."""
    held = types.SimpleNamespace(text="")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (an embedding host): nothing to hold
        yield held
        return
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield held
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            held.text = log.read().decode("utf-8", "replace")


def open_display(pygame) -> None:
    """``pygame.display.init()``, or a one-line UserError when no window can be shown."""
    with stderr_held() as held:
        try:
            pygame.display.init()
            problem = display_problem(driver=pygame.display.get_driver())
        except pygame.error as error:
            problem = str(error) or "pygame could not start its display"
            asked = os.environ.get("SDL_VIDEODRIVER", "").strip()
            if asked:
                problem = f"SDL_VIDEODRIVER={asked}: {problem}"
    if problem:
        pygame.display.quit()
        raise no_display(problem)
    if held.text.strip():
        sys.stderr.write(held.text)


def run(args) -> int:
    from dqnviz.snapshot import read_meta

    read_meta(args.snapshot)  # a wrong path or a file that is no snapshot, before the display
    pygame = import_pygame()
    reason = display_problem()
    if reason:
        raise no_display(reason)
    open_display(pygame)

    from dqnviz.snapshot import load_snapshot

    player = None
    try:
        snapshot = load_snapshot(args.snapshot)
        player = Player(snapshot, epsilon=args.epsilon, episodes=args.episodes, seed=args.seed, scale=args.scale,
                        max_frames=args.max_frames)
        try:
            window = pygame.display.set_mode(player.size)
        except pygame.error as error:
            raise no_display(str(error) or "pygame could not open a window") from None
        pygame.display.set_caption(f"dqnviz play {snapshot.name}")
        main_loop(player, window)
        print_summary(player)  # now: the terminal has the scores while the last screen stays up
        if player.finished and not player.quit:  # the last game ended (not q, not the window closed)
            hold_last_screen(player, window)
    except KeyboardInterrupt:  # Ctrl-C: the games so far, then the command line's "interrupted"
        if player is not None and not player.summarised:
            print_summary(player)
        raise
    finally:
        pygame.display.quit()
    return 0


def print_summary(player) -> None:
    """One line per game: its score, how it ended, and who played it."""
    from dqnviz.commands.test import score_text

    player.summarised = True
    for number, game in enumerate(player.results, 1):
        ended = "game over" if game.game_over else "cut off by --max-frames"
        print(f"game {number}: score {score_text(game.score)} ({ended} after {game.frames:,} frames; {game.who})")
    current = player.current_game()
    if current is not None:
        print(f"stopped during game {len(player.results) + 1} at score {score_text(current.score)} "
              f"(after {current.frames:,} frames; {current.who})", flush=True)


def read_events(player) -> None:
    pygame = import_pygame()
    for event in pygame.event.get():
        player.handle_event(event)


def main_loop(player, window, max_steps: int | None = None, fps: float = 60.0) -> None:
    """Read pygame events, step the player and draw, until it stops (or ``max_steps`` agent steps).

    At speeds up to 2× every emulator frame is shown; faster, only the last frame of each step
    (the last game's last step too: its final frame is on screen when the loop ends).
    Events are read between the frames too, so q and p answer within a frame at any speed.
    Paused, the window is redrawn 30 times a second and no step is taken.
    """
    pygame = import_pygame()
    from dqnviz.viewer import one_blas_thread

    clock = pygame.time.Clock()
    steps = 0
    with one_blas_thread():
        show(window, player.render())
        while player.running and (max_steps is None or steps < max_steps):
            read_events(player)
            if not player.running:
                break
            if player.paused:
                show(window, player.render())
                clock.tick(30)
                continue
            frames = player.step()
            scores = player.step_scores
            steps += 1
            every_frame = player.speed <= 2
            shown = range(len(frames)) if every_frame else range(len(frames))[-1:]
            for k in shown:
                show(window, player.render(frames[k], scores[k]))
                clock.tick(fps * player.speed / (1 if every_frame else len(frames) or 1))
                if k != shown[-1]:
                    read_events(player)
                    if player.quit or player.paused:
                        break


def hold_last_screen(player, window, seconds: float | None = None, grace: float = HOLD_GRACE,
                     clock=time.monotonic, wait=None) -> None:
    """After the last game: keep its last screen up under a "game over" banner with the scores.

    It stays until a key is pressed (one pressed within ``grace`` seconds of the end, while still
    playing, does not count), the window is closed, or ``seconds`` pass with no key (default
    :data:`HOLD_SECONDS`; a countdown says so). p stops the countdown: then only a key or closing
    the window ends it. On a driver that shows no window (tests, no display) nobody can watch:
    the banner is drawn once and it returns at once. Ctrl-C ends the wait quietly (the games are
    over and reported already).

    ``clock()`` gives the time in seconds, and ``wait()`` is called after each look at the events
    (by default it paces the loop at 20 looks a second); tests pass their own, to run without
    waiting.
    """
    pygame = import_pygame()
    if seconds is None:
        seconds = 0.0 if str(pygame.display.get_driver()).lower() in WINDOWLESS_DRIVERS else HOLD_SECONDS
    if wait is None:
        ticker = pygame.time.Clock()

        def wait():
            ticker.tick(20)
    start = clock()
    kept, drawn, image = False, None, None
    try:
        while True:
            left = None if kept else max(0.0, seconds - (clock() - start))
            shown = None if left is None else math.ceil(left)
            if shown != drawn or image is None:  # the countdown changed: draw the banner anew
                image, drawn = player.render_end(shown), shown
            show(window, image)
            if left is not None and left <= 0:
                return
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    return
                if event.type == pygame.KEYDOWN and clock() - start >= grace:
                    if event.key == pygame.K_p and not kept:
                        kept = True
                    else:
                        return
            wait()
    except KeyboardInterrupt:
        return


def show(window, image) -> None:
    pygame = import_pygame()
    surface = pygame.image.frombuffer(image.tobytes(), (image.shape[1], image.shape[0]), "RGB")
    window.blit(surface, (0, 0))
    pygame.display.flip()


def closest_action(pressed, action_names, game: str = "") -> int:
    """The index of the action whose name best matches the pressed directions (and FIRE).

    ``pressed`` is a set drawn from UP, DOWN, LEFT, RIGHT, FIRE; in ``game`` = ``"pong"`` UP and
    DOWN first become RIGHT and LEFT, the actions that move its paddle up and down (see
    :data:`ARROWS_BY_GAME`). An action scores +w for each of its parts that is pressed and −w
    for each part that is not (w = 1 for a direction, 0.75 for FIRE, so moving wins over firing
    when the game has no action for both); the exact action, when the game has it, always wins.
    Opposite directions cancel. Nothing pressed → NOOP (the first action).
    """
    pressed = set(pressed)
    for arrow, action in ARROWS_BY_GAME.get(str(game).lower(), {}).items():
        if arrow in pressed:
            pressed = (pressed - {arrow}) | {action}
    if "UP" in pressed and "DOWN" in pressed:
        pressed -= {"UP", "DOWN"}
    if "LEFT" in pressed and "RIGHT" in pressed:
        pressed -= {"LEFT", "RIGHT"}
    weight = {"UP": 1.0, "DOWN": 1.0, "LEFT": 1.0, "RIGHT": 1.0, "FIRE": 0.75}
    best, best_score = 0, None
    for index, name in enumerate(action_names):
        parts = action_parts(name)
        score = sum(weight[p] for p in parts & pressed) - sum(weight[p] for p in parts - pressed)
        if best_score is None or score > best_score:
            best, best_score = index, score
    return best


def action_parts(name: str) -> set:
    """``UPRIGHTFIRE`` → {UP, RIGHT, FIRE}; ``NOOP`` → {}."""
    return {part for part in DIRECTIONS if part in name.upper()}


@dataclass
class GameResult:
    """One game as :func:`print_summary` reports it."""

    score: float
    frames: int  # emulator frames played, the no-op start not counted (dqnviz test's CSV column)
    steps: int  # agent steps
    person_steps: int  # of which the person at the keyboard chose the action
    game_over: bool = True  # False: cut off by --max-frames

    @property
    def who(self) -> str:
        if not self.person_steps:
            return "agent only"
        if self.person_steps == self.steps:
            return f"you played all {self.steps:,} steps"
        return f"you played {self.person_steps:,} of {self.steps:,} steps"


class Player:
    """The game, the agent and the person at the keyboard; drawing is separate from stepping.

    ``handle_key``/``handle_key_up`` (or ``handle_event`` for pygame events) change the state:
    ``manual``, ``paused``, ``speed``, ``running`` and the direction keys held or tapped. ``step()``
    plays one agent step (``frame_skip`` emulator frames) — the person's action in manual mode,
    the ε-greedy agent's otherwise — and returns its screens (``step_scores`` has the score after
    each). ``render(frame, score)`` draws the window's contents as an RGB array.

    Game ``i`` (from 0) is played as ``dqnviz test`` plays its episode ``i``: emulator seed
    ``seed + i``, ε draws from ``default_rng([seed, i])``, the snapshot's preprocessing and a
    cap of ``max_frames`` emulator frames (see :func:`dqnviz.agent.evaluate`). ``env``, if given,
    is game 0's environment. ``results`` holds a :class:`GameResult` per finished game.
    """

    def __init__(self, snapshot, env=None, evaluator=None, epsilon=0.05, episodes=1, seed=0, scale=3,
                 max_frames=TEST_MAX_FRAMES):
        import numpy as np

        from dqnviz.agent import episode_seeds
        from dqnviz.viewer import Evaluator, FrameEnv, Panel, even

        self.snapshot, self.epsilon, self.episodes, self.scale = snapshot, epsilon, episodes, scale
        self.seed, self.max_frames = seed, max_frames
        self.env, self.rng = FrameEnv.for_episode(snapshot, seed, 0, max_frames) if env is None else \
            (env, episode_seeds(seed, 0)[1])
        if not isinstance(self.env, FrameEnv):
            self.env = FrameEnv.capture(self.env)
        self.evaluator = evaluator if evaluator is not None else Evaluator(snapshot.model)
        self.action_names = list(self.env.action_names)
        self.game_name = str(getattr(getattr(self.env, "rom", None), "name", "") or "").lower()
        height, width = (side * scale for side in self.env.screen_shape)  # 210 × 160 in most games
        self.panel = Panel(height, even(PANEL_WIDTH), self.action_names, help_lines=help_lines(self.game_name))
        self.size = (width + self.panel.width, height)
        self.manual = self.paused = False
        self.running = True
        self.quit = False  # q, Esc or the window closed (not the last game ending)
        self.summarised = False  # print_summary has reported the games
        self.end_frame, self.end_score = None, 0.0  # the last game's last screen and its score
        self.speed_index = SPEEDS.index(1.0)
        self.held: set = set()
        self.tapped: set = set()  # pressed since the last step, though perhaps released already
        self.game, self.results, self.frames_played = 0, [], 0
        self.steps = self.person_steps = 0  # of the game being played
        self.state = self.env.reset()
        self.has_lives = self.env.lives > 0
        self.q = self.evaluator(self.state)[0]
        self.action = None
        self.frame = self.env.screen_rgb().copy()
        self.step_scores = np.zeros(0)
        self.score = 0.0  # shown: the score after the frame on screen
        self._keys = None

    @property
    def scores(self) -> list:
        return [result.score for result in self.results]

    @property
    def finished(self) -> bool:
        """Every game has been played to its end (game over or --max-frames)."""
        return self.game >= self.episodes

    def current_game(self) -> GameResult | None:
        """The game being played, if it has begun and not ended (None otherwise)."""
        if self.game >= self.episodes or not self.steps:
            return None
        return GameResult(float(self.env.episode_score), int(self.env.episode_frames), self.steps,
                          self.person_steps, game_over=False)

    # ---- input

    @property
    def speed(self) -> float:
        return SPEEDS[self.speed_index]

    def _keymap(self):
        if self._keys is None:
            pygame = import_pygame()
            self._keys = {
                pygame.K_UP: "UP", pygame.K_DOWN: "DOWN", pygame.K_LEFT: "LEFT", pygame.K_RIGHT: "RIGHT",
                pygame.K_SPACE: "FIRE",
            }
        return self._keys

    def handle_key(self, key) -> None:
        """A key was pressed (a pygame key code)."""
        pygame = import_pygame()
        direction = self._keymap().get(key)
        if direction:
            self.held.add(direction)
            self.tapped.add(direction)
        elif key == pygame.K_m:
            self.manual = not self.manual
        elif key == pygame.K_a:
            self.speed_index = max(0, self.speed_index - 1)
        elif key == pygame.K_s:
            self.speed_index = min(len(SPEEDS) - 1, self.speed_index + 1)
        elif key == pygame.K_p:
            self.paused = not self.paused
        elif key in (pygame.K_q, pygame.K_ESCAPE):
            self.running, self.quit = False, True

    def handle_key_up(self, key) -> None:
        """A key was released (a tap shorter than a step still counts for the next step)."""
        direction = self._keymap().get(key)
        if direction:
            self.held.discard(direction)

    def handle_event(self, event) -> None:
        pygame = import_pygame()
        if event.type == pygame.QUIT:
            self.running, self.quit = False, True
        elif event.type == pygame.KEYDOWN:
            self.handle_key(event.key)
        elif event.type == pygame.KEYUP:
            self.handle_key_up(event.key)
        elif event.type in (getattr(pygame, "WINDOWFOCUSLOST", -1), getattr(pygame, "ACTIVEEVENT", -1)):
            if event.type != getattr(pygame, "ACTIVEEVENT", -1) or not getattr(event, "gain", 1):
                self.held.clear()  # released keys are not reported to an unfocused window
                self.tapped.clear()

    def manual_action(self) -> int:
        """The action the keys held, or tapped since the last step, ask for."""
        return closest_action(self.held | self.tapped, self.action_names, self.game_name)

    # ---- stepping

    def step(self):
        """Play one agent step; return its (n, height, width, 3) screens (none while paused or stopped)."""
        import numpy as np

        from dqnviz.agent import epsilon_greedy

        if self.paused or not self.running:
            self.step_scores = np.zeros(0)
            return np.zeros((0,) + self.env.screen_shape + (3,), np.uint8)
        q = self.q = self.evaluator(self.state)[0]
        if self.manual:
            action = self.manual_action()
            self.person_steps += 1
        else:
            action = int(epsilon_greedy(q, self.epsilon, self.rng)[0])
        self.tapped.clear()
        step = self.env.step(action)
        frames = self.env.captured().copy()
        self.step_scores = self.env.frame_scores[:len(frames)].copy()
        self.steps += 1
        self.frames_played += len(frames)
        self.action = action
        if len(frames):
            self.frame, self.score = frames[-1], float(self.step_scores[-1])
        if step.game_over:
            self._end_game()
        else:
            self.state = step.state
        return frames

    def _end_game(self) -> None:
        env = self.env
        try:
            over = bool(env.ale.game_over(with_truncation=False))
        except (AttributeError, TypeError):  # an ale-py without truncation, or a stand-in env
            over = True
        self.results.append(GameResult(float(env.episode_score), int(env.episode_frames), self.steps,
                                       self.person_steps, game_over=over))
        self.game += 1
        self.steps = self.person_steps = 0
        if self.game >= self.episodes:
            self.running = False
            self.end_frame, self.end_score = self.frame, self.score
            return
        from dqnviz.viewer import FrameEnv

        # the snapshot was checked against its game with the first game's environment: not again
        self.env, self.rng = FrameEnv.for_episode(self.snapshot, self.seed, self.game, self.max_frames, check=False)
        self.state = self.env.reset()
        self.has_lives = self.env.lives > 0

    # ---- drawing

    def render(self, frame=None, score=None):
        """The window's contents, (height·scale, width·scale + panel width, 3) uint8 (210 × 160 in most games).

        ``frame`` and ``score``: an emulator frame of the last step and the score after it
        (default: the last frame shown)."""
        from dqnviz.commands.test import score_text
        from dqnviz.viewer import compose, glyph, scale_screen

        if frame is not None:
            self.frame = frame
            self.score = float(score) if score is not None else float(self.env.episode_score)
        playing = f"you ({self.action_names[self.manual_action()]})" if self.manual else "agent"
        speed = f"{self.speed:g}" + glyph("×", "x")
        lines = [("score", score_text(self.score))]
        if self.has_lives:  # Pong and others have no lives: ALE reports 0
            lines.append(("lives", str(self.env.lives)))
        lines += [
            (glyph("ε", "eps"), f"{self.epsilon:g}" + (" (off)" if self.manual else "")),
            ("playing", playing),
            ("speed", speed + ("  PAUSED" if self.paused else "")),
            ("game", f"{min(self.game + 1, self.episodes)}/{self.episodes}"),
        ]
        panel = self.panel.render(self.snapshot.name, lines, self.q, self.action)
        return compose(scale_screen(self.frame, self.scale), panel)

    def render_end(self, seconds_left: int | None = None):
        """The window after the last game: its last screen under a banner with how it ended, the
        scores and how to close the window (``seconds_left`` of the countdown; None: kept open)."""
        import numpy as np

        from dqnviz.commands.test import score_text
        from dqnviz.viewer import banner, glyph

        dot = glyph("·", "-")
        frame = self.frame if self.end_frame is None else self.end_frame
        image = self.render(frame, self.end_score if self.end_frame is not None else None)
        last = self.results[-1] if self.results else None
        title = "GAME OVER" if last is None or last.game_over else "CUT OFF (--max-frames)"
        scores = self.scores
        if len(scores) <= 1:
            line = f"score {score_text(scores[0] if scores else self.score)}"
        elif len(scores) <= 5:
            line = f"scores {', '.join(score_text(v) for v in scores)} {dot} average {np.mean(scores):.1f}"
        else:
            line = f"last game {score_text(scores[-1])} {dot} average {np.mean(scores):.1f} over {len(scores)} games"
        keys = "press any key or close the window"
        if seconds_left is None:
            dim = [f"{keys} (kept open)"]
        else:
            dim = [f"{keys} {dot} p keeps it open", f"closes by itself in {seconds_left} s"]
        screen = self.frame.shape[1] * self.scale  # the band covers the game, not the panel's Q-values
        return np.concatenate([banner(image[:, :screen], title, [line], dim), image[:, screen:]], axis=1)
