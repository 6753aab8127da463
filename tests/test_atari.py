"""ROM lookup, Nature preprocessing, and parity of the single and vectorised environments."""

import functools
from fractions import Fraction

import numpy as np
import pytest

from dqnviz.atari import AtariEnv, SingleEnvBatch, VectorAtariEnv, channels_last, resize_frame, resolve_rom, shipped_roms
from dqnviz.errors import UserError


def test_rom_by_name_and_by_path_agree():
    by_name = resolve_rom("Space Invaders")
    assert by_name.name == "space_invaders"
    by_path = resolve_rom(shipped_roms()["breakout"])
    assert by_path.name == "breakout" and len(by_path.md5) == 32


def test_every_game_by_gymnasium_id_and_camel_case():
    """ALE/Pong-v5, PongNoFrameskip-v4, SpaceInvaders, TicTacToe3D: the names of other tools."""
    for name in shipped_roms():
        camel = "".join(word.capitalize() for word in name.split("_"))
        for spelling in (camel, f"ALE/{camel}-v5", f"{camel}NoFrameskip-v4", f"{camel}Deterministic-v4", camel.upper()):
            assert resolve_rom(spelling).name == name, spelling
    assert resolve_rom("TicTacToe3D").name == "tic_tac_toe_3d" and resolve_rom("ALE/UpNDown-v5").name == "up_n_down"
    with pytest.raises(UserError, match="unknown game 'ALE/Pongg-v5'; did you mean pong"):
        resolve_rom("ALE/Pongg-v5")


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UserError, match="did you mean breakout"):
        resolve_rom("breakuot")


def test_missing_file_and_unsupported_file(tmp_path):
    with pytest.raises(UserError, match="ROM file not found"):
        resolve_rom(str(tmp_path / "nope.bin"))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(UserError, match="not a ROM that ale-py supports"):
        resolve_rom(str(junk))


def test_area_resize_averages_blocks():
    frame = np.zeros((210, 160), np.uint8)
    frame[:, 80:] = 200
    small = resize_frame(frame)
    assert small.shape == (84, 84)
    assert small[:, :42].max() == 0 and small[:, 42:].min() == 200
    ramp = np.tile(np.arange(160, dtype=np.uint8), (210, 1))
    assert np.all(np.diff(resize_frame(ramp)[0].astype(int)) > 0)


@functools.lru_cache(maxsize=None)
def _overlaps(n_in, n_out):
    """Integer overlaps of each output pixel's box with each input pixel, in units of 1 / n_out
    of an input pixel (the boxes' edges sit at multiples of n_in / n_out)."""
    scale = Fraction(n_in, n_out)
    return np.array([[max(0, min((i + 1) * scale, j + 1) - max(i * scale, j)) * n_out for j in range(n_in)]
                     for i in range(n_out)], np.int64)


def _exact_area_resize(frame, shape):
    """The area resize in integers: round(H · frame · Wᵀ / (h · w)), half to even, where
    H[i, u] · h is the overlap of output row i's box with input row u (W likewise)."""
    rows, cols = _overlaps(frame.shape[0], shape[0]), _overlaps(frame.shape[1], shape[1])
    numerator = rows @ frame.astype(np.int64) @ cols.T
    denominator = frame.shape[0] * frame.shape[1]  # the weights of a row sum to n_in units
    quotient, remainder = np.divmod(numerator, denominator)
    round_up = (2 * remainder > denominator) | ((2 * remainder == denominator) & (quotient % 2 == 1))
    return (quotient + round_up).astype(np.uint8)


@pytest.mark.parametrize("size, shape", [((210, 160), (84, 84)), ((250, 160), (84, 84)), ((214, 160), (84, 84)),
                                         ((210, 160), (105, 80)), ((37, 29), (11, 13))])
def test_area_resize_is_the_exact_mean_rounded_and_a_neighbour_at_ties(size, shape):
    """The block matrix products in float equal the exact integer resize wherever the mean is not
    within 1/1000 of x.5; there, it is one of the two neighbours (which one: OpenCV's float32
    rounding, checked against the C++ vector environment below). Frames of random pixels, and of
    two neighbouring values, whose averages often fall on x.5."""
    rng = np.random.default_rng(sum(size))
    frames = [rng.integers(0, 256, size, dtype=np.uint8)]
    frames += [rng.integers(value, value + 2, size, dtype=np.uint8) for value in (0, 7, 128, 254)]  # many ties
    rows, cols = _overlaps(size[0], shape[0]), _overlaps(size[1], shape[1])
    ties = 0
    for frame in frames:
        numerator = rows @ frame.astype(np.int64) @ cols.T
        denominator = size[0] * size[1]
        quotient, remainder = np.divmod(numerator, denominator)
        at_tie = np.abs(2 * remainder - denominator) * 500 < denominator
        resized = resize_frame(frame, shape)
        np.testing.assert_array_equal(resized[~at_tie], _exact_area_resize(frame, shape)[~at_tie])
        assert np.isin(resized[at_tie] - quotient[at_tie], (0, 1)).all()
        ties += int(at_tie.sum())
    assert ties > 0  # the frames of two values did make ties


def test_state_stacks_four_frames_and_starts_with_zeros():
    env = AtariEnv(resolve_rom("breakout"), seed=0, noop_max=0)
    state = env.reset()
    assert state.shape == (84, 84, 4) and state.dtype == np.uint8
    assert state[..., :3].max() == 0 and state[..., 3].max() > 0
    after = env.step(1).state
    np.testing.assert_array_equal(after[..., 2], state[..., 3])


def test_every_history_length_stacks_the_same_frames():
    """history 4 shifts packed bytes, other lengths copy: both hold the newest frames, oldest first."""
    rom = resolve_rom("breakout")
    envs = {h: AtariEnv(rom, seed=5, noop_max=0, history=h) for h in (2, 3, 4, 5)}
    states = {h: env.reset() for h, env in envs.items()}
    for t in range(40):
        for h, env in envs.items():
            states[h] = env.step(t % env.num_actions).state
        assert states[4][..., -1].max() > 0
        for h in (2, 3, 5):
            np.testing.assert_array_equal(states[h][..., -min(h, 4):], states[4][..., -min(h, 4):])


@pytest.mark.parametrize("history", [1, 2, 4, 5])
def test_channels_last_is_the_transpose(history):
    frames = np.random.default_rng(history).integers(0, 256, (3, history, 84, 84), dtype=np.uint8)
    states = channels_last(frames)
    assert states.shape == (3, 84, 84, history) and states.flags.c_contiguous
    np.testing.assert_array_equal(states, frames.transpose(0, 2, 3, 1))
    frames[0, 0, 0, 0] ^= 1  # a copy, not a view
    assert states[0, 0, 0, 0] != frames[0, 0, 0, 0]


def test_life_loss_is_terminal_only_in_training():
    rom = resolve_rom("breakout")
    for training in (True, False):
        env = AtariEnv(rom, seed=0, noop_max=0, life_loss_terminal=training)
        env.reset()
        lives = env.lives
        while True:
            step = env.step(0)  # never FIRE: the first ball is never served, so serve it below
            if step.lives < lives or step.game_over:
                break
            step = env.step(1)
            if step.lives < lives or step.game_over:
                break
        assert step.lives == lives - 1 and not step.game_over
        assert step.terminal is training


# Alien and Skiing: frames whose area means fall on x.5, which OpenCV's float32 rounds either way;
# Carnival (214 rows) and Adventure (250): screens taller than 210 rows
# Name This Game and Yars' Revenge: no game ends before the 2,000-frame cap, which both count from the
# end of the no-op start (ALE's own count starts at 134 and 7 frames in them)
@pytest.mark.parametrize("game", ["breakout", "pong", "alien", "skiing", "carnival", "adventure", "name_this_game",
                                  "yars_revenge"])
def test_single_and_vectorised_environments_see_the_same_states(game, monkeypatch):
    from dqnviz import atari

    ties = []
    recompute = atari._opencv_area_at
    monkeypatch.setattr(atari, "_opencv_area_at", lambda frame, at, shape: ties.append(len(at)) or recompute(frame, at, shape))
    rom = resolve_rom(game)
    options = dict(seed=7, noop_max=0, life_loss_terminal=True, max_frames_per_episode=2_000)
    single = SingleEnvBatch(AtariEnv(rom, **options))
    vector = VectorAtariEnv(rom, num_envs=1, num_threads=1, **options)
    assert single.action_names == vector.action_names
    states_single, states_vector = single.reset(), vector.reset()
    np.testing.assert_array_equal(states_single, states_vector)
    rng = np.random.default_rng(0)
    seen = {"terminal": 0, "game_over": 0}
    for t in range(700):  # crosses lost lives, and a game over or the frame cap
        actions = rng.integers(0, single.num_actions, 1)
        a = single.step(actions)
        b = vector.step(actions)
        np.testing.assert_array_equal(a[0], b[0], err_msg=f"states differ at step {t}")
        for name, x, y in zip(("reward", "terminal", "game_over", "lives"), a[1:5], b[1:5]):
            assert np.array_equal(x, y), f"{name} differs at step {t}: {x} vs {y}"
        seen["terminal"] += int(a[2][0])
        seen["game_over"] += int(a[3][0])
    if game in ("breakout", "alien"):  # lives lost and a game over crossed
        assert seen["terminal"] > seen["game_over"] >= 1
    if game in ("alien", "skiing"):
        assert sum(ties) > 0  # frames with ties were met, and matched
    if game in ("carnival", "adventure"):
        assert single.env.screen_shape[0] > 210
    if game in ("name_this_game", "yars_revenge"):
        assert seen["game_over"] >= 1  # the cap was crossed


def test_roms_that_ale_py_ships_but_cannot_play_are_refused_in_one_line_and_not_listed(tmp_path):
    """ale-py 0.11 and 0.12 ship combat, joust, maze_craze and warlords without settings for them:
    loading one would end the process from C++ (exit 1, no exception)."""
    from dqnviz.atari import _bundled_roms, unplayable_roms

    assert "combat" in _bundled_roms() and "combat" in unplayable_roms()
    assert not unplayable_roms() & set(shipped_roms()) and "pong" not in unplayable_roms()
    from dqnviz.agent import env_for_snapshot
    from dqnviz.atari import _md5

    joust = _bundled_roms()["joust"]  # a snapshot naming the file itself (its metadata's "rom")
    with pytest.raises(UserError, match="^joust: ale-py .* cannot play it"):
        env_for_snapshot({"game": "joust", "rom": {"name": "joust", "path": joust, "md5": _md5(joust)}})
    for spec in ("combat", "Combat", _bundled_roms()["combat"]):
        with pytest.raises(UserError, match=r"^combat: ale-py \S+ ships this ROM \(MD5 [0-9a-f]{32}\) but its emulator "
                                            r"has no settings for it and cannot play it"):
            resolve_rom(spec)


def test_frame_stacks_are_the_states_transposed():
    """The trainer's layout: (N, history, 84, 84) from both batch kinds, the same frames as the states."""
    rom = resolve_rom("breakout")
    options = dict(seed=3, noop_max=0, max_frames_per_episode=2_000)
    envs = [(SingleEnvBatch(AtariEnv(rom, **options)), SingleEnvBatch(AtariEnv(rom, **options), stacks=True)),
            (VectorAtariEnv(rom, num_envs=2, num_threads=1, **options),
             VectorAtariEnv(rom, num_envs=2, num_threads=1, stacks=True, **options))]
    rng = np.random.default_rng(0)
    for states_env, stacks_env in envs:
        states, stacks = states_env.reset(), stacks_env.reset()
        for t in range(40):
            assert stacks.shape == (states_env.num_envs, 4, 84, 84)
            np.testing.assert_array_equal(np.moveaxis(stacks, 1, -1), states, err_msg=f"step {t}")
            actions = rng.integers(0, states_env.num_actions, states_env.num_envs)
            states, stacks = states_env.step(actions)[0], stacks_env.step(actions)[0]
        assert states.any()  # the frames compared were not all blank


def test_default_emulator_threads_leave_a_quarter_of_the_cores_to_the_loop():
    from dqnviz.atari import default_emulator_threads

    assert [default_emulator_threads(64, cpus) for cpus in (1, 2, 3, 4, 8, 16)] == [1, 2, 3, 3, 6, 12]
    assert default_emulator_threads(4, 16) == 4  # never more threads than environments
    assert default_emulator_threads(1, 16) == 1


def test_the_largest_seed_reaches_the_vector_emulators():
    """--seed takes up to 2³² − 1; the C++ emulators take C ints, so their seeds wrap (a traceback before)."""
    rom = resolve_rom("pong")
    wrapped = VectorAtariEnv(rom, num_envs=2, num_threads=1, seed=2**32 - 1)
    small = VectorAtariEnv(rom, num_envs=2, num_threads=1, seed=(2**32 - 1) % 2**31)
    np.testing.assert_array_equal(wrapped.reset(), small.reset())
    for _ in range(30):
        np.testing.assert_array_equal(wrapped.step(np.array([1, 2]))[0], small.step(np.array([1, 2]))[0])


def test_episode_frames_count_the_frames_played_when_a_game_ends_inside_a_step():
    """``dqnviz test --csv``'s frames column: a game over on a step's first frames counts those
    frames, not the whole frame skip (the ALE's own count, the no-op start left out)."""
    import numpy as np

    from dqnviz.atari import AtariEnv, resolve_rom

    endings = set()
    for seed in range(3):
        env = AtariEnv(resolve_rom("breakout"), seed=seed, noop_max=0, frame_skip=7)
        env.reset()
        rng = np.random.default_rng(seed)
        while not env.step(int(rng.integers(env.num_actions))).game_over:
            pass
        assert env.episode_frames == env.ale.getEpisodeFrameNumber()
        endings.add(env.episode_frames % 7)
    assert endings != {0}  # some game ended inside a step, which the old count rounded up


def test_single_and_vectorised_environments_draw_the_same_range_of_no_op_starts():
    """0 … noop_max NOOP frames in both (ale-py's own draw stops at noop_max − 1): read from the
    frame each game starts at, after resets with 32 seeds (each seeded reset loads the ROM again:
    a tenth of a second an environment). With 4 values and 32 draws a value is missed with
    probability 4·(3/4)³² < 0.0005; these seeds meet all four."""
    rom = resolve_rom("pong")  # Pong's reset plays no frame of its own
    vector = VectorAtariEnv(rom, num_envs=32, noop_max=3, num_threads=2)
    _, info = vector.vector.reset(np.arange(32), np.arange(32))
    starts = set(np.asarray(info["episode_frame_number"]).tolist())
    classic = set()
    for seed in range(32):
        env = AtariEnv(rom, seed=seed, noop_max=3)
        env.reset()
        classic.add(env.ale.getEpisodeFrameNumber())
    assert starts == classic == {0, 1, 2, 3}


def test_each_reset_of_the_vector_environments_starts_other_games():
    """A training run resets its test environments at every test phase: each reset draws new
    no-op starts (the r-th seeds emulator i with seed + r·n + i), where the same seeds every time
    had played the same starts every epoch."""
    vector = VectorAtariEnv(resolve_rom("pong"), num_envs=8, noop_max=30, num_threads=2, seed=5)
    calls = []

    class Recording:  # the C++ interface, its resets recorded (its attributes are read-only)
        def __init__(self, interface):
            self.interface = interface

        def __getattr__(self, name):
            return getattr(self.interface, name)

        def reset(self, indices, seeds):
            obs, info = self.interface.reset(indices, seeds)
            calls.append((np.asarray(seeds).tolist(), np.asarray(info["episode_frame_number"]).tolist()))
            return obs, info

    vector.vector = Recording(vector.vector)
    for _ in range(3):
        vector.reset()
    assert [seeds for seeds, _ in calls] == [list(range(5 + 8 * r, 13 + 8 * r)) for r in range(3)]
    starts = [tuple(frames) for _, frames in calls]
    assert len(set(starts)) == 3 and all(0 <= f <= 30 for s in starts for f in s)
    again = VectorAtariEnv(resolve_rom("pong"), num_envs=8, noop_max=30, num_threads=2, seed=5)
    np.testing.assert_array_equal(again.reset(), VectorAtariEnv(resolve_rom("pong"), num_envs=8, noop_max=30,
                                                                num_threads=2, seed=5).reset())  # still seeded
