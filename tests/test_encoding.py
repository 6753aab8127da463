"""encode_rgb / encode_gradient_rgb / frames_strip: channel order and scaling."""

import numpy as np
import pytest

from dqnviz.analysis import encode_gradient_rgb, encode_rgb, frames_strip
from dqnviz.errors import UserError


def test_encode_rgb_channel_order():
    states = np.zeros((2, 84, 84, 4), dtype=np.uint8)
    for t, value in enumerate([10, 20, 30, 40]):  # frames t-3, t-2, t-1, t
        states[..., t] = value
    rgb = encode_rgb(states)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 84, 84, 3)
    assert tuple(rgb[0, 5, 7]) == (20, 30, 40)  # R = t-2, G = t-1, B = t
    assert encode_rgb(states[0]).shape == (84, 84, 3)
    assert tuple(encode_rgb(np.full((4, 4, 4), 300.0))[0, 0]) == (255, 255, 255)


def test_encode_gradient_rgb_scaling():
    g = np.zeros((2, 3, 3, 4))
    g[0, 0, 0] = [5.0, -2.0, 0.0, 1.0]  # max|g| = 5 (frame t-3 counts for the scale)
    g[0, 1, 1, 1] = -5.0
    rgb = encode_gradient_rgb(g)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3, 3)
    assert tuple(rgb[0, 0, 0]) == (128 + int(np.floor(-2 / 5 * 127.5)), 128, 128 + int(np.floor(127.5 / 5)))
    assert rgb[0, 1, 1, 0] == 0
    assert (rgb[1] == 128).all()  # all-zero image is grey
    assert encode_gradient_rgb(np.full((1, 1, 4), 3.0))[0, 0, 2] == 255


def test_frames_strip():
    g = np.zeros((2, 3, 3, 4))
    for t in range(4):
        g[0, ..., t] = t - 1.5  # -1.5, -0.5, 0.5, 1.5
    strip = frames_strip(g)
    assert strip.shape == (2, 4, 3, 3) and strip.dtype == np.uint8
    assert list(strip[0, :, 0, 0]) == [0, 85, 170, 255]
    assert (strip[1] == 128).all()
    raw = frames_strip(np.arange(4.0).reshape(1, 1, 4), signed=False)
    assert list(raw[:, 0, 0]) == [0, 85, 170, 255]


def test_any_stack_of_three_or_more_frames_shows_its_last_three_as_rgb():
    for frames in (3, 5):
        states = np.zeros((1, 2, 2, frames), np.uint8)
        states[..., :] = np.arange(1, frames + 1) * 10
        assert tuple(encode_rgb(states)[0, 0, 0]) == tuple(states[0, 0, 0, -3:])
        g = np.zeros((2, 2, frames))
        g[0, 0, 0] = -4.0  # the oldest frame sets the scale, shown or not
        g[0, 0, -1] = 2.0
        red = 0 if frames == 3 else 128  # with 3 frames the oldest is red
        assert tuple(encode_gradient_rgb(g)[0, 0]) == (red, 128, 128 + int(np.floor(127.5 / 2)))
        strip = frames_strip(g)
        assert strip.shape == (frames, 2, 2) and strip[0, 0, 0] == 0 and strip[-1, 0, 0] == 191


def test_states_scaled_to_one_draw_a_warning_and_raw_frames_do_not(recwarn):
    import warnings

    with pytest.warns(UserWarning, match=r"0\.\.255"):
        encode_rgb(np.full((2, 2, 4), 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode_rgb(np.full((2, 2, 4), 200.0))
        encode_rgb(np.zeros((2, 2, 4)))


def test_errors():
    with pytest.raises(UserError, match=r"at least 3 stacked frames"):
        encode_rgb(np.zeros((84, 84, 2), np.uint8))
    with pytest.raises(UserError, match=r"at least 3 stacked frames"):
        encode_gradient_rgb(np.zeros((84, 84)))
    with pytest.raises(UserError, match=r"at least 3 stacked frames"):
        frames_strip(np.zeros((2, 84, 84, 1)))
    with pytest.raises(UserError, match=r"NaN or infinite"):
        encode_gradient_rgb(np.full((2, 2, 4), np.nan))
    with pytest.raises(UserError, match=r"NaN or infinite"):
        frames_strip(np.array([[[0.0, 1.0, np.inf]]]))
