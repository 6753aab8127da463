"""``dqnviz play``: keys (manual control, pause, speed, quit), drawing, and no display.

Runs headless with SDL's dummy video driver; key presses are posted as pygame events or given
to ``Player.handle_key`` directly, and the actions the environment receives are recorded.
"""

from __future__ import annotations

import numpy as np
import pytest

from dqnviz import cli

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
    assert player.speed == 1.0
    feed(player, key(pygame.KEYDOWN, pygame.K_s), key(pygame.KEYDOWN, pygame.K_s))
    assert player.speed == 4.0
    for _ in range(10):
        player.handle_key(pygame.K_a)
    assert player.speed == min(player.speed, 0.125)


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


@pytest.fixture
def main(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ["play"])
    return cli.main


@pytest.mark.parametrize("environ", [{}, {"SDL_VIDEODRIVER": "dummy"}, {"SDL_VIDEODRIVER": "offscreen", "DISPLAY": ":0"}])
def test_without_a_display_it_suggests_record(main, breakout_snapshot, monkeypatch, capsys, environ):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["play", breakout_snapshot]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dqnviz record" in err


def test_bad_numbers(main, breakout_snapshot, capsys):
    assert main(["play", breakout_snapshot, "--episodes", "0"]) == 2
    assert "--episodes" in capsys.readouterr().err


def test_play_command_runs_until_q(main, breakout_snapshot, monkeypatch, display, capsys):
    from dqnviz.commands import play

    monkeypatch.setattr(play, "display_problem", lambda environ=None: None)
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
