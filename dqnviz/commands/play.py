"""``dqnviz play SNAPSHOT``: watch an agent play in a window, and take over with the keyboard."""

from __future__ import annotations

import os
import sys

from dqnviz.errors import UserError

HELP = "watch an agent play in a window (take over with the keyboard)"

DESCRIPTION = """\
Open a window with the game (scaled up) and, beside it, the agent's Q-value for every action,
the score, lives, ε and who is playing.

Keys:
  m            manual control on/off (the agent takes back control when m is pressed again)
  arrows space play (manual mode): mapped to the closest action the game has, e.g.
               UP+RIGHT+space → UPRIGHTFIRE
  a / s        slower / faster
  p            pause
  q, Esc       quit

Needs a display; without one, `dqnviz record SNAPSHOT` makes a video instead.
"""

SPEEDS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
PANEL_WIDTH = 300
HELP_LINES = [
    "m  manual / agent",
    "arrows, space  play (manual)",
    "a / s  slower / faster",
    "p  pause     q, Esc  quit",
]
DIRECTIONS = ("UP", "DOWN", "LEFT", "RIGHT", "FIRE")


def add_arguments(parser) -> None:
    parser.add_argument("snapshot", metavar="SNAPSHOT", help="a .keras snapshot written by dqnviz train")
    from dqnviz.commands.arguments import add_viewing_arguments

    add_viewing_arguments(parser, max_scale=6, default_scale=3, episodes_help="games to play before the window closes")


def display_problem(environ=None) -> str | None:
    """Why no window can be opened (without trying), or None when a display seems to be there."""
    environ = os.environ if environ is None else environ
    driver = environ.get("SDL_VIDEODRIVER", "").strip().lower()
    if driver in ("dummy", "offscreen"):
        return f"SDL_VIDEODRIVER={driver} shows no window"
    if driver:
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


def run(args) -> int:
    reason = display_problem()
    if reason:
        raise no_display(reason)
    pygame = import_pygame()
    try:
        pygame.display.init()
    except pygame.error as error:
        raise no_display(str(error) or "pygame could not start its display") from None

    from dqnviz.snapshot import load_snapshot

    try:
        snapshot = load_snapshot(args.snapshot)
        player = Player(snapshot, epsilon=args.epsilon, episodes=args.episodes, seed=args.seed, scale=args.scale)
        try:
            window = pygame.display.set_mode(player.size)
        except pygame.error as error:
            raise no_display(str(error) or "pygame could not open a window") from None
        pygame.display.set_caption(f"dqnviz play {snapshot.name}")
        main_loop(player, window)
    finally:
        pygame.display.quit()
    for i, score in enumerate(player.scores, 1):
        print(f"game {i}: score {score:g}")
    if player.game < args.episodes and player.frames_played:
        print(f"stopped during game {player.game + 1} at score {player.env.episode_score:g}")
    return 0


def main_loop(player, window, max_steps: int | None = None, fps: float = 60.0) -> None:
    """Read pygame events, step the player and draw, until it stops (or ``max_steps`` agent steps).

    At speeds up to 2× every emulator frame is shown; faster, only the last frame of each step.
    Paused, the window is redrawn 30 times a second and no step is taken.
    """
    pygame = import_pygame()
    from dqnviz.viewer import one_blas_thread

    clock = pygame.time.Clock()
    steps = 0
    with one_blas_thread():
        show(window, player.render())
        while player.running and (max_steps is None or steps < max_steps):
            for event in pygame.event.get():
                player.handle_event(event)
            if not player.running:
                break
            if player.paused:
                show(window, player.render())
                clock.tick(30)
                continue
            frames = player.step()
            steps += 1
            every_frame = player.speed <= 2
            for frame in (frames if every_frame else frames[-1:]):
                show(window, player.render(frame))
                clock.tick(fps * player.speed / (1 if every_frame else len(frames) or 1))


def show(window, image) -> None:
    pygame = import_pygame()
    surface = pygame.image.frombuffer(image.tobytes(), (image.shape[1], image.shape[0]), "RGB")
    window.blit(surface, (0, 0))
    pygame.display.flip()


def closest_action(pressed, action_names) -> int:
    """The index of the action whose name best matches the pressed directions (and FIRE).

    ``pressed`` is a set drawn from UP, DOWN, LEFT, RIGHT, FIRE. An action scores +w for each
    of its parts that is pressed and −w for each part that is not (w = 1 for a direction, 0.75
    for FIRE, so moving wins over firing when the game has no action for both); the exact action,
    when the game has it, always wins. Nothing pressed → NOOP (the first action).
    """
    pressed = set(pressed)
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


class Player:
    """The game, the agent and the person at the keyboard; drawing is separate from stepping.

    ``handle_key``/``handle_key_up`` (or ``handle_event`` for pygame events) change the state:
    ``manual``, ``paused``, ``speed``, ``running`` and the held direction keys. ``step()`` plays
    one agent step (4 emulator frames) — the person's action in manual mode, the ε-greedy agent's
    otherwise — and returns its screens. ``render(frame)`` draws window contents as an RGB array.
    """

    def __init__(self, snapshot, env=None, evaluator=None, epsilon=0.05, episodes=1, seed=0, scale=3):
        import numpy as np

        from dqnviz.agent import checked_env_for_snapshot
        from dqnviz.viewer import Evaluator, FrameEnv, Panel, even

        self.snapshot, self.epsilon, self.episodes, self.scale = snapshot, epsilon, episodes, scale
        self.env = env if env is not None else FrameEnv.capture(checked_env_for_snapshot(snapshot, seed))
        if not isinstance(self.env, FrameEnv):
            self.env = FrameEnv.capture(self.env)
        self.evaluator = evaluator if evaluator is not None else Evaluator(snapshot.model)
        self.action_names = list(self.env.action_names)
        self.rng = np.random.default_rng(seed)
        self.panel = Panel(210 * scale, even(PANEL_WIDTH), self.action_names, help_lines=HELP_LINES)
        self.size = (160 * scale + self.panel.width, 210 * scale)
        self.manual = self.paused = False
        self.running = True
        self.speed_index = SPEEDS.index(1.0)
        self.held: set = set()
        self.game, self.scores, self.frames_played = 0, [], 0
        self.state = self.env.reset()
        self.has_lives = self.env.lives > 0
        self.q = self.evaluator(self.state)[0]
        self.action = None
        self.frame = self.env.screen_rgb().copy()
        self._keys = None

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
        elif key == pygame.K_m:
            self.manual = not self.manual
        elif key == pygame.K_a:
            self.speed_index = max(0, self.speed_index - 1)
        elif key == pygame.K_s:
            self.speed_index = min(len(SPEEDS) - 1, self.speed_index + 1)
        elif key == pygame.K_p:
            self.paused = not self.paused
        elif key in (pygame.K_q, pygame.K_ESCAPE):
            self.running = False

    def handle_key_up(self, key) -> None:
        """A key was released."""
        direction = self._keymap().get(key)
        if direction:
            self.held.discard(direction)

    def handle_event(self, event) -> None:
        pygame = import_pygame()
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.KEYDOWN:
            self.handle_key(event.key)
        elif event.type == pygame.KEYUP:
            self.handle_key_up(event.key)
        elif event.type in (getattr(pygame, "WINDOWFOCUSLOST", -1), getattr(pygame, "ACTIVEEVENT", -1)):
            if event.type != getattr(pygame, "ACTIVEEVENT", -1) or not getattr(event, "gain", 1):
                self.held.clear()  # released keys are not reported to an unfocused window

    def manual_action(self) -> int:
        return closest_action(self.held, self.action_names)

    # ---- stepping

    def step(self):
        """Play one agent step; return its (n, 210, 160, 3) screens (none while paused or stopped)."""
        import numpy as np

        from dqnviz.agent import epsilon_greedy

        if self.paused or not self.running:
            return np.zeros((0, 210, 160, 3), np.uint8)
        q = self.q = self.evaluator(self.state)[0]
        if self.manual:
            action = self.manual_action()
        else:
            action = int(epsilon_greedy(q, self.epsilon, self.rng)[0])
        step = self.env.step(action)
        frames = self.env.captured().copy()
        self.frames_played += len(frames)
        self.action = action
        if len(frames):
            self.frame = frames[-1]
        if step.game_over:
            self.scores.append(float(self.env.episode_score))
            self.game += 1
            if self.game >= self.episodes:
                self.running = False
                return frames
            self.state = self.env.reset()
        else:
            self.state = step.state
        return frames

    # ---- drawing

    def render(self, frame=None):
        """The window's contents, (210·scale, 160·scale + panel width, 3) uint8."""
        from dqnviz.viewer import compose, glyph, scale_screen

        frame = self.frame if frame is None else frame
        mode = "manual" if self.manual else "agent"
        if self.manual:
            mode += f" ({self.action_names[self.manual_action()]})"
        speed = f"{self.speed:g}×" if glyph("×", "x") == "×" else f"{self.speed:g}x"
        lines = [("score", f"{self.env.episode_score:g}")]
        if self.has_lives:  # Pong and others have no lives: ALE reports 0
            lines.append(("lives", str(self.env.lives)))
        lines += [
            (glyph("ε", "eps"), f"{self.epsilon:g}" + (" (off)" if self.manual else "")),
            ("mode", mode),
            ("speed", speed + ("  PAUSED" if self.paused else "")),
            ("game", f"{min(self.game + 1, self.episodes)}/{self.episodes}"),
        ]
        panel = self.panel.render(self.snapshot.name, lines, self.q, self.action)
        return compose(scale_screen(frame, self.scale), panel)
