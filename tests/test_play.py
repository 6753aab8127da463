"""``dqnviz play``: keys (manual control, pause, speed, quit), drawing, and no display.

Runs headless with SDL's dummy video driver; key presses are posted as pygame events or given
to ``Player.handle_key`` directly, and the actions the environment receives are recorded.
"""

from __future__ import annotations

import numpy as np
import pytest

from dqnviz.cli import main

import pygame  # noqa: E402  (a dependency of the play extra, which the tests install)


@pytest.fixture
def display(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    pygame.display.init()
    yield
    pygame.display.quit()


class RightLover:
    """A stub agent whose argmax is always RIGHT."""

    def __init__(self, names):
        self.q = np.where(np.array(names) == "RIGHT", 1.0, -1.0).astype(np.float32)

    def __call__(self, state):
        return self.q, None


@pytest.fixture
def player(breakout_snapshot, display):
    from dqnviz.agent import env_for_snapshot
    from dqnviz.commands.play import Player
    from dqnviz.snapshot import load_snapshot
    from dqnviz.viewer import FrameEnv

    snapshot = load_snapshot(breakout_snapshot)
    env = FrameEnv.capture(env_for_snapshot(snapshot.meta, 0))
    sent = []
    original = env.step

    def step(action):
        sent.append(env.action_names[int(action)])
        return original(action)

    env.step = step
    player = Player(snapshot, env=env, evaluator=RightLover(env.action_names), epsilon=0.0, scale=2)
    player.sent = sent
    return player


def key(kind, code):
    return pygame.event.Event(kind, key=code, mod=0, unicode="", scancode=0)


def feed(player, *events):
    """Post events to pygame's queue and let the player read them, as the main loop does."""
    pygame.event.clear()
    for event in events:
        pygame.event.post(event)
    for event in pygame.event.get():
        player.handle_event(event)


def test_manual_mode_sends_the_persons_actions(player):
    player.step()
    assert player.sent == ["RIGHT"]  # the agent
    feed(player, key(pygame.KEYDOWN, pygame.K_m), key(pygame.KEYDOWN, pygame.K_LEFT))
    assert player.manual
    player.step()
    player.step()
    assert player.sent[1:] == ["LEFT", "LEFT"]  # held LEFT, though the agent wants RIGHT
    feed(player, key(pygame.KEYUP, pygame.K_LEFT), key(pygame.KEYDOWN, pygame.K_SPACE))
    player.step()
    assert player.sent[-1] == "FIRE"
    feed(player, key(pygame.KEYUP, pygame.K_SPACE))
    player.step()
    assert player.sent[-1] == "NOOP"
    feed(player, key(pygame.KEYDOWN, pygame.K_m))  # the agent takes back control
    player.step()
    assert not player.manual and player.sent[-1] == "RIGHT"


def test_closest_action_by_name():
    from dqnviz.commands.play import closest_action
    from dqnviz.atari import action_names

    full = action_names(range(18))
    assert full[closest_action({"UP", "RIGHT", "FIRE"}, full)] == "UPRIGHTFIRE"
    assert full[closest_action({"DOWN", "LEFT"}, full)] == "DOWNLEFT"
    assert full[closest_action(set(), full)] == "NOOP"
    breakout = ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert breakout[closest_action({"UP", "RIGHT", "FIRE"}, breakout)] == "RIGHT"
    assert breakout[closest_action({"FIRE"}, breakout)] == "FIRE"
    assert breakout[closest_action({"UP"}, breakout)] == "NOOP"
    pong = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    assert pong[closest_action({"LEFT", "FIRE"}, pong)] == "LEFTFIRE"
    assert pong[closest_action({"LEFT", "RIGHT"}, pong)] == "NOOP"


def test_pause_stops_stepping(player):
    player.handle_key(pygame.K_p)
    assert player.paused
    assert len(player.step()) == 0 and len(player.step()) == 0
    assert player.sent == []
    player.handle_key(pygame.K_p)
    assert len(player.step()) == 4 and player.sent == ["RIGHT"]


def test_speed_keys(player):
    from dqnviz.commands.play import SPEEDS

    assert player.speed == 1.0
    feed(player, key(pygame.KEYDOWN, pygame.K_s), key(pygame.KEYDOWN, pygame.K_s))
    assert player.speed == 4.0
    for _ in range(10):
        player.handle_key(pygame.K_a)
    assert player.speed == SPEEDS[0] == 0.125  # the slowest, and no slower
    for _ in range(10):
        player.handle_key(pygame.K_s)
    assert player.speed == SPEEDS[-1] == 8.0  # the fastest, and no faster


@pytest.mark.parametrize("event", [
    lambda: key(pygame.KEYDOWN, pygame.K_q),
    lambda: key(pygame.KEYDOWN, pygame.K_ESCAPE),
    lambda: pygame.event.Event(pygame.QUIT),
])
def test_quit_ends_the_main_loop(player, event):
    from dqnviz.commands.play import main_loop

    window = pygame.display.set_mode(player.size)
    pygame.event.clear()
    pygame.event.post(event())
    main_loop(player, window, max_steps=50)
    assert not player.running and player.sent == []


def test_main_loop_plays_and_draws(player):
    from dqnviz.commands.play import main_loop

    window = pygame.display.set_mode(player.size)
    pygame.event.clear()
    main_loop(player, window, max_steps=5, fps=1000)
    assert player.sent == ["RIGHT"] * 5
    image = player.render()
    assert image.shape == (420, 320 + player.panel.width, 3) and image.dtype == np.uint8
    shown = pygame.surfarray.array3d(window).transpose(1, 0, 2)
    assert np.array_equal(shown[:, :320], image[:, :320])  # the last frame of the last step


def test_game_over_ends_after_the_episodes(player):
    from dqnviz.atari import Step

    # Losing all lives for real takes long: report the first step as the game's end instead.

    original = player.env.step
    player.env.step = lambda action: Step(*(lambda s: (s.state, s.reward, True, True, 0))(original(action)))
    player.step()
    assert player.scores == [0.0] and not player.running


def end_at_the_first_step(player):
    """Report the player's next step as the end of its game (losing all lives for real takes long);
    returns the list that gets the screens of each step played."""
    from dqnviz.atari import Step

    screens, original = [], player.env.step

    def step(action):
        done = original(action)
        screens.append(player.env.captured().copy())
        return Step(done.state, done.reward, True, True, 0)

    player.env.step = step
    return screens


def on_screen(window):
    return pygame.surfarray.array3d(window).transpose(1, 0, 2)


class ScriptedTime:
    """``hold_last_screen``'s clock and wait, with no real time passing: each wait moves the clock on
    1/20 s (the loop's own pace) and posts the events due by then, given as ``(seconds, event)``."""

    def __init__(self, *events):
        self.waits, self.events = 0, sorted(events, key=lambda due: due[0])

    def clock(self):
        return self.waits / 20

    def wait(self):
        self.waits += 1
        while self.events and self.events[0][0] <= self.clock():
            pygame.event.post(self.events.pop(0)[1])


def test_the_last_screen_stays_up_until_a_key(player, monkeypatch):
    """When the last game ends the window does not vanish: its final frame stays on screen under a
    "game over" banner with the score until a key is pressed."""
    import dqnviz.viewer
    from dqnviz.commands.play import main_loop

    window = pygame.display.set_mode(player.size)
    screens = end_at_the_first_step(player)
    pygame.event.clear()
    main_loop(player, window, fps=1000)
    assert [len(s) for s in screens] == [4] and not player.running
    assert np.array_equal(player.frame, screens[0][-1])  # the game's final frame, not its last step's first
    assert player.finished and not player.quit
    before = on_screen(window)

    from dqnviz.commands.play import hold_last_screen
    banners = []
    real = dqnviz.viewer.banner
    monkeypatch.setattr(dqnviz.viewer, "banner", lambda image, *text: banners.append(text) or real(image, *text))
    time = ScriptedTime((0.4, key(pygame.KEYDOWN, pygame.K_x)))  # someone presses x after 0.4 s
    hold_last_screen(player, window, seconds=20, grace=0.1, clock=time.clock, wait=time.wait)
    assert time.clock() == 0.4  # until the key, not the 20 s
    held = on_screen(window)
    rows = np.flatnonzero((held != before).any(axis=(1, 2)))
    assert len(rows) and rows.min() > 0.3 * len(held) and rows.max() < 0.7 * len(held)  # a band across the middle
    title, lines, dim = banners[0]
    # (the stand-in end is no game over to the ALE: the game counts as cut off, as in the summary)
    assert title == "CUT OFF (--max-frames)" and not player.results[-1].game_over and lines == ["score 0"]
    assert "press any key or close the window" in dim[0] and dim[1] == "closes by itself in 20 s"


def test_p_keeps_the_last_screen_up_past_the_countdown(player):
    from dqnviz.commands.play import hold_last_screen

    window = pygame.display.set_mode(player.size)
    end_at_the_first_step(player)
    player.step()
    pygame.event.clear()
    # p after 0.15 s, then the window is closed after 1.5 s: well past the 0.6 s countdown
    time = ScriptedTime((0.15, key(pygame.KEYDOWN, pygame.K_p)), (1.5, pygame.event.Event(pygame.QUIT)))
    hold_last_screen(player, window, seconds=0.6, grace=0.05, clock=time.clock, wait=time.wait)
    assert time.clock() == 1.5


@pytest.mark.parametrize("case", ["nobody at the keys", "a key still pressed from playing", "no window to see"])
def test_the_last_screen_never_waits_for_ever(player, monkeypatch, case):
    """With no key it closes after the countdown; a key pressed while still playing (within the grace
    time) does not skip the final screen; on a driver that shows no window it does not wait at all."""
    from dqnviz.commands import play

    window = pygame.display.set_mode(player.size)
    end_at_the_first_step(player)
    player.step()
    pygame.event.clear()
    time = ScriptedTime()
    if case == "no window to see":  # SDL_VIDEODRIVER=dummy, as in these tests: the default waits not at all
        monkeypatch.setattr(play, "HOLD_SECONDS", 60.0)
        play.hold_last_screen(player, window, clock=time.clock, wait=time.wait)
        assert time.waits == 0
        return
    if case == "a key still pressed from playing":
        pygame.event.post(key(pygame.KEYDOWN, pygame.K_SPACE))
    play.hold_last_screen(player, window, seconds=0.8, grace=0.5, clock=time.clock, wait=time.wait)
    assert time.clock() == 0.8  # the whole countdown, to the 1/20 s


def test_ctrl_c_while_the_last_screen_is_up_ends_it_quietly(player, monkeypatch, capsys):
    from dqnviz.commands.play import hold_last_screen

    window = pygame.display.set_mode(player.size)
    end_at_the_first_step(player)
    player.step()

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(pygame.event, "get", interrupted)
    time = ScriptedTime()
    hold_last_screen(player, window, seconds=30, clock=time.clock, wait=time.wait)  # returns, no traceback
    assert player.finished and time.waits == 0  # at the first look at the keys, not after the countdown
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""  # the games are over and reported already: nothing more


def test_the_banner_names_a_cut_off_and_every_score(player):
    from dqnviz.commands.play import GameResult

    player.results = [GameResult(3, 100, 25, 0), GameResult(5, 100, 25, 0), GameResult(12, 60, 15, 0, game_over=False)]
    player.game = player.episodes = 3
    import dqnviz.viewer

    seen = []
    real = dqnviz.viewer.banner
    dqnviz.viewer.banner = lambda image, *text: seen.append(text) or real(image, *text)
    try:
        image = player.render_end(None)
    finally:
        dqnviz.viewer.banner = real
    assert image.shape == player.render().shape
    (title, lines, dim), = seen
    assert title == "CUT OFF (--max-frames)" and lines[0].startswith("scores 3, 5, 12 ") and lines[0].endswith("average 6.7")
    assert dim == ["press any key or close the window (kept open)"]
    player.results = player.results[-1:]
    player.results[0].game_over = True
    player.game = player.episodes = 1
    dqnviz.viewer.banner = lambda image, *text: seen.append(text) or real(image, *text)
    try:
        player.render_end(9)
    finally:
        dqnviz.viewer.banner = real
    assert seen[-1][:2] == ("GAME OVER", ["score 12"]) and seen[-1][2][-1] == "closes by itself in 9 s"


@pytest.mark.parametrize("environ", [{}, {"SDL_VIDEODRIVER": "dummy"}, {"SDL_VIDEODRIVER": "offscreen", "DISPLAY": ":0"}])
def test_without_a_display_it_suggests_record(breakout_snapshot, monkeypatch, capsys, environ):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["play", breakout_snapshot]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dqnviz record" in err


def test_bad_numbers(breakout_snapshot, capsys):
    assert main(["play", breakout_snapshot, "--episodes", "0"]) == 2
    assert "--episodes" in capsys.readouterr().err


def test_play_command_runs_until_q(breakout_snapshot, monkeypatch, display, capsys):
    from dqnviz.commands import play

    monkeypatch.setattr(play, "display_problem", lambda environ=None, driver=None: None)
    real_loop = play.main_loop

    def scripted(player, window, **kwargs):
        pygame.event.post(key(pygame.KEYDOWN, pygame.K_s))
        real_loop(player, window, max_steps=3, fps=1000)
        pygame.event.post(key(pygame.KEYDOWN, pygame.K_q))
        real_loop(player, window, fps=1000)
        assert player.speed == 2.0 and player.frames_played == 12

    monkeypatch.setattr(play, "main_loop", scripted)
    assert main(["play", breakout_snapshot, "--scale", "1"]) == 0
    assert "stopped during game 1" in capsys.readouterr().out


# ---- review fixes: Pong's arrows, taps, the games dqnviz test plays, the summary, no display


def paddle_top(env) -> float:
    """The row of the top of the agent's (green, right-hand) Pong paddle on screen."""
    column = env.screen_rgb()[34:194, 140:144]
    rows = np.flatnonzero((column == [92, 186, 92]).all(-1).any(-1))
    return float(rows.min())


def test_pong_up_and_down_arrows_move_the_paddle_up_and_down(pong_snapshot, display):
    from dqnviz.commands.play import Player, closest_action
    from dqnviz.snapshot import load_snapshot

    snapshot = load_snapshot(pong_snapshot)
    player = Player(snapshot, evaluator=lambda state: (np.zeros(6, np.float32), None), epsilon=0.0, scale=1)
    for _ in range(20):
        player.step()
    player.handle_key(pygame.K_m)
    start = paddle_top(player.env)
    player.handle_key(pygame.K_UP)
    for _ in range(6):
        player.step()
    up = paddle_top(player.env)
    player.handle_key_up(pygame.K_UP)
    player.handle_key(pygame.K_DOWN)
    for _ in range(12):
        player.step()
    assert up < start - 10 and paddle_top(player.env) > up + 20
    pong = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    assert pong[closest_action({"UP"}, pong, "pong")] == "RIGHT"  # ALE's Pong: RIGHT turns the paddle up
    assert pong[closest_action({"DOWN", "FIRE"}, pong, "pong")] == "LEFTFIRE"
    assert pong[closest_action({"UP", "DOWN"}, pong, "pong")] == "NOOP"
    assert pong[closest_action({"UP"}, pong, "breakout")] == "NOOP"  # only Pong's paddle is turned so


def test_a_tap_shorter_than_a_step_is_played(player):
    player.handle_key(pygame.K_m)
    feed(player, key(pygame.KEYDOWN, pygame.K_SPACE), key(pygame.KEYUP, pygame.K_SPACE))  # between two steps
    player.step()
    player.step()
    assert player.sent == ["FIRE", "NOOP"]


def test_agent_plays_the_games_dqnviz_test_plays(breakout_snapshot, display):
    from dqnviz.agent import env_for_snapshot, evaluate
    from dqnviz.commands.play import Player
    from dqnviz.snapshot import load_snapshot

    snapshot = load_snapshot(breakout_snapshot)
    seed, cap = 5, 400
    expected = evaluate(snapshot.model, lambda s: env_for_snapshot(snapshot.meta, s, max_frames_per_episode=cap),
                        episodes=3, epsilon=0.5, seed=seed, parallel=1)
    player = Player(snapshot, epsilon=0.5, episodes=3, seed=seed, scale=1, max_frames=cap)
    while player.running:
        player.step()
    assert [(r.score, r.frames) for r in player.results] == [(e["score"], e["frames"]) for e in expected]
    # each game cut where test cuts it: 400 frames after its no-op start (tests/test_evaluate.py checks
    # that the games differ)
    assert [e["frames"] for e in expected] == [cap] * 3


def test_frame_skip_and_history_are_the_snapshots(tmp_path, display):
    from tests.conftest import make_snapshot

    from dqnviz.commands.play import Player
    from dqnviz.snapshot import load_snapshot, read_meta, save_snapshot

    path = make_snapshot(tmp_path / "breakout_3.keras")
    meta = read_meta(path)
    meta["preprocessing"]["frame_skip"] = 3
    save_snapshot(path, load_snapshot(path).model, meta)
    player = Player(load_snapshot(path), scale=1)
    assert player.env.frame_skip == 3 and player.env.history == 4
    assert len(player.step()) == 3 and player.state.shape == (84, 84, 4)


def test_the_panel_shows_the_score_of_the_frame_on_screen(player):
    from dqnviz.viewer import glyph

    drawn = []
    original = player.panel.render
    player.panel.render = lambda title, lines, *rest: drawn.append(dict(lines)) or original(title, lines, *rest)
    player.render(player.frame, 3.0)
    player.handle_key(pygame.K_m)
    player.handle_key(pygame.K_LEFT)
    player.render()
    assert drawn[0]["score"] == "3" and drawn[0]["playing"] == "agent"
    assert drawn[1]["score"] == "3" and drawn[1]["playing"] == "you (LEFT)" and drawn[1][glyph("ε", "eps")].endswith("(off)")


def scripted_play(monkeypatch, script):
    """Run `dqnviz play` on the dummy driver with ``script(player, window, loop)`` as its main loop."""
    from dqnviz.commands import play

    monkeypatch.setattr(play, "display_problem", lambda environ=None, driver=None: None)
    real_loop = play.main_loop
    monkeypatch.setattr(play, "main_loop", lambda player, window, **kwargs: script(player, window, real_loop))


def test_the_end_says_each_games_score_and_who_played(breakout_snapshot, monkeypatch, display, capsys):
    def script(player, window, loop):
        pygame.event.post(key(pygame.KEYDOWN, pygame.K_m))  # take over for two steps, then hand back
        loop(player, window, max_steps=2, fps=10_000)
        pygame.event.post(key(pygame.KEYDOWN, pygame.K_m))
        loop(player, window, fps=10_000)

    scripted_play(monkeypatch, script)
    assert main(["play", breakout_snapshot, "--episodes", "2", "--max-frames", "60", "--scale", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("game 1: score 0 (cut off by --max-frames after ") and "; you played 2 of " in lines[0]
    assert lines[1].startswith("game 2: score 0 (cut off by --max-frames after ") and lines[1].endswith("; agent only)")


@pytest.mark.parametrize("stop", ["window closed", "Ctrl-C"])
def test_stopping_mid_game_says_the_score_so_far(breakout_snapshot, monkeypatch, display, capsys, stop):
    def script(player, window, loop):
        loop(player, window, max_steps=3, fps=10_000)
        if stop == "Ctrl-C":
            raise KeyboardInterrupt
        pygame.event.post(pygame.event.Event(pygame.QUIT))
        loop(player, window, fps=10_000)

    scripted_play(monkeypatch, script)
    assert main(["play", breakout_snapshot, "--scale", "1"]) == (130 if stop == "Ctrl-C" else 0)
    captured = capsys.readouterr()
    assert captured.out == "stopped during game 1 at score 0 (after 12 frames; agent only)\n"
    assert captured.err == ("dqnviz play: interrupted\n" if stop == "Ctrl-C" else "")


@pytest.mark.parametrize("end", ["last game over", "q"])
def test_the_command_holds_the_last_screen_only_when_the_games_end(breakout_snapshot, monkeypatch, display,
                                                                   capsys, end):
    """After the last game the scores are printed and then the last screen is held; q (or closing the
    window) ends at once, without a final screen to dismiss."""
    from dqnviz.commands import play

    held = []
    monkeypatch.setattr(play, "hold_last_screen",
                        lambda player, window: held.append((player.finished, capsys.readouterr().out)))

    def script(player, window, loop):
        if end == "q":
            loop(player, window, max_steps=2, fps=10_000)
            pygame.event.post(key(pygame.KEYDOWN, pygame.K_q))
        loop(player, window, fps=10_000)

    scripted_play(monkeypatch, script)
    assert main(["play", breakout_snapshot, "--max-frames", "40", "--scale", "1"]) == 0
    if end == "q":
        assert held == [] and capsys.readouterr().out.startswith("stopped during game 1")
    else:
        assert held == [(True, held[0][1])] and held[0][1].startswith("game 1: score 0 (cut off by --max-frames")


def test_the_window_closes_on_the_final_screen_with_the_scores(breakout_snapshot, monkeypatch, display):
    """What the window shows as it closes after the last game (at once here: no window to see on the
    dummy driver) is the last screen under the "game over" banner, not the bare game."""
    from dqnviz.commands import play

    rendered, closing = [], []
    real_render, real_quit = play.Player.render, pygame.display.quit
    monkeypatch.setattr(play.Player, "render", lambda self, *a: rendered.append(real_render(self, *a)) or rendered[-1])

    def quit():
        surface = pygame.display.get_surface()
        if surface is not None:
            closing.append(on_screen(surface))
        real_quit()

    monkeypatch.setattr(pygame.display, "quit", quit)
    scripted_play(monkeypatch, lambda player, window, loop: loop(player, window, fps=10_000))
    assert main(["play", breakout_snapshot, "--max-frames", "40", "--scale", "1"]) == 0
    last, shown = rendered[-1], closing[0]
    changed = np.flatnonzero((shown != last).any(axis=(1, 2)))
    assert len(changed) and 0.2 * len(shown) < changed.min() and changed.max() < 0.8 * len(shown)


def test_an_unreachable_display_is_one_line_not_a_crash(breakout_snapshot, monkeypatch, capfd):
    from dqnviz.commands.play import display_problem

    for name in ("WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPLAY", ":99")  # no X server there: SDL falls back to its offscreen driver

    def set_mode(*args, **kwargs):  # what crashed the process (a segmentation fault) in that driver
        raise AssertionError("a window opened on a display that is not there")

    monkeypatch.setattr(pygame.display, "set_mode", set_mode)
    try:
        assert main(["play", breakout_snapshot]) == 2
    finally:
        pygame.display.quit()
    err = capfd.readouterr().err.strip()  # SDL's own complaints (XDG_RUNTIME_DIR) are held back
    assert len(err.splitlines()) == 1 and "cannot open a window" in err and "dqnviz record" in err
    assert ":99 cannot be reached" in display_problem({"DISPLAY": ":99"}, driver="offscreen")
    assert display_problem({"DISPLAY": ":0"}, driver="x11") is None


def test_a_wrong_path_is_named_before_the_display(monkeypatch, tmp_path, capsys):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    assert main(["play", str(tmp_path / "pong_24.keras")]) == 2
    assert "snapshot not found" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not a snapshot")
    assert main(["play", str(tmp_path / "notes.txt")]) == 2
    assert "is not a dqnviz snapshot" in capsys.readouterr().err


def test_without_pygame_it_says_how_to_install_it(breakout_snapshot, monkeypatch, capsys):
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    monkeypatch.setitem(__import__("sys").modules, "pygame", None)
    assert main(["play", breakout_snapshot]) == 2
    err = capsys.readouterr().err
    assert err == "dqnviz play: error: dqnviz play needs pygame: pip install 'dqnviz[play]'\n"


def test_help_names_the_keys_and_defaults(capsys):
    assert main(["play", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ["take over from the agent", "hands the game back", "a / s slower / faster", "1/8× to 8×",
                  "p pause and resume", "q, Esc quit", "Ctrl-C", "in Pong ↑/↓ move your paddle",
                  "--epsilon E", "(default: 0.05)", "--seed S", "--max-frames N", "(default: 18,000",
                  "--episodes N", "(default: 1", "SNAPSHOT", "dqnviz record SNAPSHOT", "who played",
                  "its last screen stays up", "until you press a key or close the window"]:
        assert words in text, words
