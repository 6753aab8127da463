"""``dqnviz nvis``: the report is written, self-contained, complete, draws in Chromium, zooms in
linked pairs, and bad input fails with one line and no file."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from dqnviz.cli import main

FAST = ["--filters", "2", "--max-steps", "60", "--quiet"]
LAYERS = ["conv1", "conv2", "conv3"]
MOVED = {"conv2": 1.5, "conv3": -1.0}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One report for the module: the random-weight snapshot of ``breakout_snapshot``, with conv2's
    kernel scaled by 1.5 and conv3's by −1, so each layer has moved a known distance from its start."""
    from tests.conftest import make_snapshot

    folder = tmp_path_factory.mktemp("nvis")
    snapshot = make_snapshot(folder / "breakout_1.keras", "breakout", 1, scale=MOVED)
    out = folder / "breakout_1.html"
    assert main(["nvis", str(snapshot), *FAST, "--out", str(out)]) == 0
    return out


def test_default_output_path(breakout_snapshot, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["nvis", breakout_snapshot, "--layers", "conv3", "--filters", "1", "--max-steps", "20"])
    assert code == 0
    out = tmp_path / "reports" / "breakout_1.html"
    assert out.exists()
    assert f"wrote {Path('reports') / 'breakout_1.html'} (" in capsys.readouterr().out
    assert main(["nvis", breakout_snapshot, "--layers", "conv3", "--filters", "1", "--max-steps", "1", "--quiet"]) == 0
    assert "1 filter from 1 state," in capsys.readouterr().out  # --quiet silences progress, not the result
    html = out.read_text()
    assert len(re.findall(r'<article class="card" data-layer="conv3" data-filter="0"', html)) == 1
    assert 'data-layer="conv1"' not in html


def test_timings_name_each_phase_and_add_up_to_no_more_than_the_whole(breakout_snapshot, tmp_path, capsys):
    out = tmp_path / "t.html"
    assert main(["nvis", breakout_snapshot, "--layers", "conv3", "--filters", "1", "--max-steps", "8", "--quiet",
                 "--timings", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    note, line = captured.err.strip().splitlines()[-2:]
    assert line.startswith("timings "), captured.err
    # 8 states: the page is written, and a line says how little it rests on
    assert note.startswith("dqnviz nvis: only 8 states were played (--max-steps 8): each filter's strongest inputs")
    phases = dict(re.fullmatch(r"(.+) (\d+\.\d\d) s", part).groups() for part in line[len("timings "):].split(", "))
    assert list(phases) == ["load", "play", "top", "conv3 guided", "conv3 erf", "saliency", "figures", "render"]
    whole = float(re.search(r", (\d+\.\d) s\)$", captured.out.strip()).group(1))  # "wrote … (…, 7.3 s)"
    assert sum(map(float, phases.values())) <= whole + 0.1


def test_one_card_per_layer_and_filter(report):
    html = report.read_text()
    cards = re.findall(r'<article class="card" data-layer="([^"]+)" data-filter="(\d+)"', html)
    assert sorted(cards) == sorted((layer, str(f)) for layer in LAYERS for f in range(2))
    # header: game, epoch, test score, layers with shapes, receptive fields
    for text in ("breakout", "<dd>1 (1,000 agent steps)</dd>", "1.50 ± 0.50", "20 × 20 × 32", "7 × 7 × 64", "36×36 px, stride 8"):
        assert text in html, text
    # the snapshot's own test is labelled as what it is, and a test of few games says so
    header = html[html.index('<div class="dq-header">'):html.index("</dl>")]
    assert "in-training test" in header and "dqnviz test</code> plays 30" in header
    # how far each kernel moved from the weights rebuilt from seed 0: |c − 1| and cos = sign(c)
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "moved from the start" in text and "rebuilt from seed 0" in text
    table = html[html.index('<table class="net">'):]
    table = table[:table.index("</table>")]
    moved = {name: " ".join(re.sub(r"<[^>]+>", " ", cells.rsplit("<td", 1)[1].split(">", 1)[1]).split())
             for name, cells in re.findall(r"<tr><td>(\w+)</td>(.*?)</tr>", table, re.S)}
    assert moved == {"state": "", "scale": "", "conv1": "0.00 (cos 1.00)", "conv2": "0.50 (cos 1.00)",
                     "conv3": "2.00 (cos -1.00)", "flatten": "", "fc": "0.00 (cos 1.00)", "q": "0.00 (cos 1.00)"}
    # saliency with ALE action names, and the explanations
    assert "NOOP" in html and "FIRE" in html
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "guided backpropagation" in text and "colour trail" in text and "receptive field" in text


def test_a_snapshot_from_another_backend_shows_the_movement_it_recorded(tmp_path):
    """Under a backend that cannot rebuild W₀, the page shows the figures the trainer stored."""
    import keras
    from tests.conftest import make_snapshot

    from dqnviz.snapshot import load_snapshot, save_snapshot, starting_point

    snapshot = load_snapshot(make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1, scale=MOVED))
    other = "jax" if keras.config.backend() == "tensorflow" else "tensorflow"
    meta = {**snapshot.meta, "initialised_under": other, "movement": starting_point(snapshot).movement}
    save_snapshot(tmp_path / "other_1.keras", snapshot.model, meta)
    out = tmp_path / "other_1.html"
    assert main(["nvis", str(tmp_path / "other_1.keras"), "--layers", "conv1", *FAST, "--out", str(out)]) == 0
    text = " ".join(re.sub(r"<[^>]+>", " ", out.read_text()).split())
    assert f"drawn from seed 0 under {other}; the trainer recorded these figures" in text
    assert "0.50 (cos 1.00)" in text and "2.00 (cos -1.00)" in text and "rebuilt from seed" not in text


def test_a_games_first_states_are_said_to_have_blank_frames(report):
    """At a game's start the frames before it are zero: the card says so (and why the image is blue)."""
    from dqnviz.atari import AtariEnv, resolve_rom
    from dqnviz.report.nvis import _blank_frames

    env = AtariEnv(resolve_rom("breakout"), seed=0, noop_max=0)
    states = [env.reset()] + [env.step(1).state for _ in range(4)]
    assert [_blank_frames(state) for state in states] == [3, 2, 1, 0, 0]
    html = report.read_text()
    shown = [(int(state), note) for state, note in
             re.findall(r'<p class="meta">state (\d+) \(game 1\)[^<]*?(its game[^<]*)?</p>', html)]
    assert shown  # the cards name their states (a change of markup must not leave this checking nothing)
    for state, note in shown:  # a note on states 0-2, which have blank frames, and on no other
        assert ("blank frame" in note) == (state < 3) and bool(note) == (state < 3), (state, note)


def test_self_contained(report):
    html = report.read_text()
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)\s*=\s*["\']?(https?:)?//', html, re.I)
    assert "cdn.plot.ly/plotly" not in html
    assert html.count("<script>") == 3  # the bar's height (base.html.j2), plotly.js's unpacker, the dqnviz helpers
    assert html.count('id="dq-plotly-js"') == 1  # plotly.js once, packed
    assert os.path.getsize(report) < 15e6


def test_each_layer_gives_the_squares_that_hold_90_percent_and_half_of_its_gradient(report):
    html = report.read_text()
    chart = json.loads(re.search(r'<script type="application/json" id="fig-erf-chart">(.*?)</script>', html, re.S).group(1))
    bars = {trace["name"]: trace["y"] for trace in chart["data"]}
    theoretical, ninety, half = (bars[name] for name in ("theoretical", "effective: 90% of the gradient",
                                                         "half of the gradient"))
    assert theoretical == [8, 20, 36]
    for layer, n, h, t in zip(LAYERS, ninety, half, theoretical):
        if n == 0:  # the centre unit is off on these states: nothing reaches the input, and the page says so
            assert h == 0 and f"{layer}: no gradient reaches the input" in html
            continue
        assert 0 < h <= n <= t  # half the mass needs no more room than 90% of it
        assert f"{layer}: 90% of the gradient within {n:.0f} px, half within {h} px, of a theoretical {t} px" in html
    assert sum(n > 0 for n in ninety) >= 2 and any(h < n for h, n in zip(half, ninety))


def test_a_browser_that_cannot_unpack_plotly_keeps_the_images_and_says_why(report):
    """Without DecompressionStream (browsers before 2023) no chart can be drawn: a banner says
    so, and every image slot keeps its placeholder image; the page raises no other error."""
    from tests.browser import open_report

    with open_report(report, init_script="delete window.DecompressionStream;") as check:
        page = check.page
        assert page.evaluate("window.dqnvizPageReady").startswith("no plotly: this browser has no DecompressionStream")
        banner = page.locator('[role="alert"]').inner_text()
        assert "cannot be drawn here" in banner and "Firefox 113+" in banner
        page.evaluate("dqnvizDrawAll().catch(() => 0)")
        shown = page.evaluate("""() => Array.from(document.querySelectorAll('img.placeholder'))
                                       .filter(img => img.complete && img.naturalWidth > 0).length""")
        assert shown == page.evaluate("document.querySelectorAll('.dq-fig[data-kind=\\'image\\']').length") > 0
        assert page.evaluate("document.querySelectorAll('.js-plotly-plot').length") == 0
        # and no image is a tab stop for zoom keys that could do nothing here
        assert page.evaluate("document.querySelectorAll('.dq-fig[tabindex]').length") == 0


def test_page_draws_and_zoom_is_linked(report):
    from tests.browser import all_plots_drawn, open_report

    with open_report(report) as check:
        page = check.page
        expected = page.evaluate("dqnviz.figureCount()")
        # 2 per card + ERF chart + 3 ERF maps + per saliency state 3 images and the Q dots
        assert expected >= 6 * 2 + 4 + 4
        assert page.evaluate("dqnvizDrawAll()") == expected
        assert tuple(all_plots_drawn(page)) == (expected, expected)
        card = page.locator('article[data-layer="conv2"][data-filter="1"]')
        card.scroll_into_view_if_needed()
        ranges = """el => Array.from(el.querySelectorAll('.js-plotly-plot'))
                        .map(gd => [gd._fullLayout.xaxis.range.slice(), gd._fullLayout.yaxis.range.slice()])"""
        before = card.evaluate(ranges)
        assert len(before) == 2 and before[0] == before[1]
        box = card.locator(".dq-fig").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4)
        page.mouse.wheel(0, -400)
        page.wait_for_function(
            """([el, start]) => { const g = Array.from(el.querySelectorAll('.js-plotly-plot'));
                       const r = g.map(gd => JSON.stringify(gd._fullLayout.xaxis.range));
                       return r[0] !== start && r[0] === r[1]; }""",
            arg=[card.element_handle(), json.dumps(before[0][0])], timeout=5000)
        after = card.evaluate(ranges)
        x0, x1 = after[0][0]
        assert x1 - x0 < before[0][0][1] - before[0][0][0]  # zoomed in further
        assert np.allclose(after[0], after[1])  # the guided image followed
        assert check.errors == [] and check.requests == []


def test_a_card_opens_on_its_receptive_field_and_a_double_click_shows_the_whole_state(report):
    """conv1's 8×8 field was an 18-px speck in a picture of the whole 84×84 screen: each card opens
    on a window of at least 28 px around its field (its two images alike), and plotly's reset
    (double-click) shows the whole screen, in both images."""
    from tests.browser import open_report

    from dqnviz.report.nvis import ZOOM_LEAST, zoom_window

    html = report.read_text()
    with open_report(report) as check:
        page = check.page
        page.evaluate("dqnvizDrawAll()")
        ranges = """el => Array.from(el.querySelectorAll('.js-plotly-plot'))
                        .map(gd => [gd._fullLayout.xaxis.range.slice(), gd._fullLayout.yaxis.range.slice()])"""
        for layer in LAYERS:
            card = page.locator(f'article[data-layer="{layer}"][data-filter="0"]')
            body = re.search(rf'id="{layer}-0">(.*?)</article>', html, re.S).group(1)
            field = [int(v) for v in re.search(r'data-box="(\d+),(\d+),(\d+),(\d+)', body).groups()]
            window = zoom_window(field, (84, 84))
            assert window is not None and body.count(f'data-zoom="{",".join(map(str, window))}"') == 2
            x0, y0, x1, y1 = window
            assert x1 - x0 == y1 - y0 == max(ZOOM_LEAST, field[2] + 4)  # square, the field and a margin
            assert x0 <= field[0] and field[0] + field[2] <= x1 and y0 <= field[1] and field[1] + field[3] <= y1
            opened = card.evaluate(ranges)
            assert opened == [[[x0 - 0.5, x1 - 0.5], [y1 - 0.5, y0 - 0.5]]] * 2, (layer, opened)
        card = page.locator('article[data-layer="conv1"][data-filter="0"]')
        card.scroll_into_view_if_needed()
        box = card.locator(".dq-fig").nth(1).bounding_box()  # the guided image: the input follows
        page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function(
            """el => Array.from(el.querySelectorAll('.js-plotly-plot'))
                       .every(gd => JSON.stringify(gd._fullLayout.xaxis.range) === '[-0.5,83.5]')""",
            arg=card.element_handle(), timeout=5000)
        assert card.evaluate(ranges) == [[[-0.5, 83.5], [83.5, -0.5]]] * 2
        text = " ".join(page.locator(".explain").first.inner_text().split())
        assert "A filter card opens zoomed in on its unit's receptive field" in text
        assert "double-click either to see the whole state" in text
        assert check.errors == [] and check.requests == []


@pytest.mark.parametrize("field, size, window", [
    ((48, 72, 8, 8), (84, 84), [38, 56, 66, 84]),  # conv1 at the bottom edge: moved up, not cut
    ((0, 0, 8, 8), (84, 84), [0, 0, 28, 28]),
    ((32, 16, 20, 20), (84, 84), [28, 12, 56, 40]),  # conv2: 20 + 2·2 < 28
    ((32, 40, 36, 36), (84, 84), [30, 38, 70, 78]),  # conv3: its 36 px and a margin of 2 on each side
    ((32, 48, 36, 36), (84, 84), [30, 44, 70, 84]),  # at the bottom edge: moved up
    ((-2, 3, 9, 9), (84, 84), [0, 0, 28, 28]),  # a field reaching past the edge is cut first
    ((4, 4, 8, 8), (20, 16), None),  # 28 px cover a 20×16 image: no zoom
    ((0, 10, 8, 8), (160, 20), [0, 0, 28, 20]),  # a window taller than the image covers its height
    ((90, 0, 8, 8), (84, 84), None),  # no part of the field on the image
])
def test_the_zoom_window_of_a_card(field, size, window):
    from dqnviz.report.nvis import zoom_window

    assert zoom_window(field, size) == window


@pytest.mark.parametrize("width", [600, 400])
def test_a_narrow_window_scrolls_no_part_of_the_page_sideways(report, width):
    """A phone or a half screen: the saliency row's three images and Q bars shrink to fit instead
    of widening the page (they were 3 × 230 px side by side), and the network table scrolls in
    its own box."""
    from tests.browser import open_report

    with open_report(report, width=width) as check:
        page = check.page
        page.evaluate("dqnvizDrawAll()")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        sizes = page.evaluate("""() => Array.from(document.querySelectorAll('.sal .imgs figure'))
                                       .map(f => f.getBoundingClientRect().right)""")
        assert sizes and max(sizes) <= width


@pytest.mark.parametrize("args, message", [
    (["--layers", "conv9"], "unknown layer 'conv9'"),
    (["--layers", "fc"], "unknown layer 'fc'"),
    (["--filters", "0"], "out of range"),
    (["--filters", "65"], "out of range"),
    (["--filters", "many"], "--filters must be"),
    (["--filters", "top0"], "--filters top0 is out of range: the layers have conv1 32, conv2 64, conv3 64 filters (give top1..top64 or 'all')"),
    (["--filters", "topx"], "--filters must be"),
    (["--filters", "3,40"], "filter 40 does not exist in conv1, which has 32 filters"),
    (["--filters", "3,3"], "named twice"),
    (["--filters=-1,3"], "start at 0"),
    (["--games", "0"], "--games must be between 1 and 100,000, got 0"),
    (["--epsilon", "2"], "--epsilon"),
])
def test_bad_arguments(breakout_snapshot, tmp_path, capsys, args, message):
    out = tmp_path / "r.html"
    assert main(["nvis", breakout_snapshot, "--quiet", "--out", str(out), *args]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_filters_chosen_by_strength_or_index(breakout_snapshot, tmp_path):
    """``--filters top3`` shows each layer's three filters whose strongest unit fires most, strongest
    first (as top_activations ranks them on the same states); ``5,9,`` exactly those filters."""
    from dqnviz import analysis
    from dqnviz.report.nvis import parse_filters
    from dqnviz.snapshot import load_snapshot

    def cards(html):
        found = {}
        for layer, f in re.findall(r'<article class="card" data-layer="([^"]+)" data-filter="(\d+)"', html):
            found.setdefault(layer, []).append(int(f))
        return found

    out = tmp_path / "top.html"
    assert main(["nvis", breakout_snapshot, "--layers", "conv3", "--filters", "top3", "--max-steps", "30",
                 "--quiet", "--out", str(out)]) == 0
    html = out.read_text()
    shown = cards(html)
    assert "the 3 strongest per layer" in html
    default = tmp_path / "default.html"  # without --filters: each layer's 8 strongest, as nvis_report's default
    assert main(["nvis", breakout_snapshot, "--layers", "conv3", "--max-steps", "30", "--quiet", "--out", str(default)]) == 0
    assert "the 8 strongest per layer" in default.read_text() and len(cards(default.read_text())["conv3"]) == 8
    model = load_snapshot(breakout_snapshot).model
    from dqnviz.agent import env_for_snapshot, play_games

    states = play_games(model, env_for_snapshot(load_snapshot(breakout_snapshot).meta, seed=0), games=1,
                        epsilon=0.05, seed=0, max_steps=30).states
    values = [v for _, _, v in analysis.top_activations(model, states, "conv3", prefer=analysis.full_history(states))]
    assert len(shown["conv3"]) == 3 and len(set(values)) > 3
    assert [values[f] for f in shown["conv3"]] == sorted(values, reverse=True)[:3]
    out = tmp_path / "some.html"
    assert main(["nvis", breakout_snapshot, "--layers", "conv1,conv2", "--filters", "5,9,", "--max-steps", "12",
                 "--quiet", "--out", str(out)]) == 0
    html = out.read_text()
    assert cards(html) == {"conv1": [5, 9], "conv2": [5, 9]} and "filters 5 and 9 per layer" in html
    assert parse_filters("17,", {"conv1": 32}) == {"conv1": [17]}
    assert parse_filters("top 40", {"conv1": 32, "conv2": 64})["conv1"].count == 32


def test_missing_snapshot(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["nvis", str(tmp_path / "nope.keras"), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not found" in err
    assert not out.exists()


def test_no_states_collected(breakout_snapshot, tmp_path, capsys, monkeypatch):
    import dqnviz.agent
    from dqnviz.agent import GameRecord

    def empty(*args, **kwargs):
        return GameRecord(np.zeros((0, 84, 84, 4), np.uint8), np.zeros(0, np.int64), np.zeros((0, 4), np.float32),
                          np.zeros(0, np.float32), np.zeros(0, np.int64), [0.0], ["NOOP", "FIRE", "RIGHT", "LEFT"])

    monkeypatch.setattr(dqnviz.agent, "play_games", empty)
    out = tmp_path / "r.html"
    assert main(["nvis", breakout_snapshot, "--quiet", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "collected 0 game states" in err
    assert not out.exists()


def test_saliency_state_choice():
    from dqnviz.report.nvis import pick_saliency_states

    q = np.array([[0.0, 1.0], [5.0, 4.9], [-3.0, 3.0]])
    picks = {p["index"]: p["labels"] for p in pick_saliency_states(q)}
    assert picks == {1: ["highest max Q"], 0: ["lowest max Q"], 2: ["biggest action gap"]}
    assert pick_saliency_states(np.array([[1.0, 0.0]])) == [
        {"index": 0, "labels": ["highest max Q", "lowest max Q", "biggest action gap"], "max_q": 1.0, "gap": 1.0}]
    assert pick_saliency_states(np.zeros((0, 3))) == []
    # a game's first stacks (state 0 here, half blank) are left out where others are at hand
    q = np.array([[-9.0, -8.0], [0.0, 1.0], [5.0, 4.9], [-3.0, 3.0]])
    picks = {p["index"]: p["labels"] for p in pick_saliency_states(q, prefer=np.array([False, True, True, True]))}
    assert picks == {2: ["highest max Q"], 1: ["lowest max Q"], 3: ["biggest action gap"]}
    assert pick_saliency_states(q, prefer=np.zeros(4, bool))[0]["index"] == 2  # none preferred: all count


def test_dead_filters_are_flagged_not_drawn(tmp_path):
    """A filter whose bias keeps its ReLU off on every state is reported as never firing."""
    from tests.conftest import make_snapshot

    from dqnviz.snapshot import load_snapshot, save_snapshot

    path = make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1)
    snapshot = load_snapshot(path)
    conv1 = snapshot.model.get_layer("conv1")
    kernel, bias = (np.asarray(w) for w in conv1.get_weights())
    bias[[1, 5]] = -1e4  # inputs are at most 1 after scaling: these two filters can never fire
    conv1.set_weights([kernel, bias])
    save_snapshot(path, snapshot.model, snapshot.meta)
    out = tmp_path / "dead.html"
    assert main(["nvis", str(path), "--layers", "conv1", "--filters", "3", "--max-steps", "40",
                 "--quiet", "--out", str(out)]) == 0
    html = out.read_text()
    cards = re.findall(r'<article class="card" data-layer="conv1" data-filter="(\d)"[^>]*>(.*?)</article>', html, re.S)
    assert [f for f, _ in cards] == ["0", "1", "2"]
    bodies = dict(cards)
    assert "never fires" in bodies["1"] and "data-img" not in bodies["1"]
    assert "never fires" not in bodies["0"] and "guided backprop" in bodies["0"]
    # The layer's summary counts every dead filter, also those not shown (filter 5).
    assert re.search(r'data-silent-count="2"><b>2 of 32</b> conv1 filters never fire[^<]*: 1, 5\)', html)
    assert "3 of 32 filters" in html


def _report_header(tmp_path, name: str, epoch: int, changes: dict) -> tuple[str, str]:
    """The nvis page (conv3, one filter, 20 steps) of a Breakout snapshot whose metadata has
    ``changes``, and its header's text."""
    from tests.conftest import make_snapshot

    from dqnviz.snapshot import load_snapshot, save_snapshot

    snapshot = load_snapshot(make_snapshot(tmp_path / "made.keras", "breakout", epoch))
    path = save_snapshot(tmp_path / name, snapshot.model, {**snapshot.meta, **changes})
    out = tmp_path / "page.html"
    assert main(["nvis", str(path), "--layers", "conv3", "--filters", "1", "--max-steps", "20", "--quiet",
                 "--out", str(out)]) == 0
    html = out.read_text()
    return html, " ".join(re.sub(r"<[^>]+>", " ", html[html.index('<div class="dq-header">'):html.index("</dl>")]).split())


def test_a_snapshot_stopped_inside_its_epoch_says_so(tmp_path):
    """A run stopped by Ctrl-C or a time budget saves ``<run>_<epoch>_interrupted``: no test score."""
    html, header = _report_header(tmp_path, "breakout_2_interrupted.keras", 2,
                                  {"test_score": None, "interrupted": {"phase": "train", "steps_done": 388096}})
    assert "epoch 2, stopped 388,096 agent steps into its train phase (2,000 agent steps)" in header
    assert "in-training test none for epoch 2: training stopped before its test phase" in header
    assert "not tested" not in html and "training steps" not in html


def test_the_header_counts_agent_steps_and_says_why_an_epoch_has_no_test_score(tmp_path):
    """A trained snapshot counts its agent steps of training and in all in one unit (it said
    "training steps" for the first and "agent steps" for the second); a snapshot saved before its
    test phase, whose run stopped during that phase, says so instead of "not tested"."""
    html, header = _report_header(tmp_path, "breakout_3.keras", 3,
                                  {"test_score": None, "train_steps_done": 2_669_952, "total_steps": 2_720_000})
    assert "epoch 3 (2,669,952 agent steps trained in all epochs, 2,720,000 with the random phase)" in header
    assert ("none for epoch 3: the run stopped during the epoch's test phase, before its score was saved "
            "( dqnviz train --resume plays that test first)") in header
    assert "at most 20 agent steps" in header
    assert "training steps" not in html and "not tested" not in html


@pytest.mark.parametrize("history", [1, 2])
def test_fewer_than_three_frames_fail_before_any_game_is_played(tmp_path, capsys, monkeypatch, history):
    """``dqnviz train --history 2`` snapshots have no t-2 frame for red: one clear line, no game
    played, no file."""
    import dqnviz.agent
    from tests.helpers import make_history_snapshot

    def refuse(*args, **kwargs):
        raise AssertionError("a game was played before the snapshot was checked")

    monkeypatch.setattr(dqnviz.agent, "play_games", refuse)
    snapshot = make_history_snapshot(tmp_path / f"pong-h{history}_1.keras", history)
    out = tmp_path / "r.html"
    assert main(["nvis", snapshot, "--quiet", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"stacks {history} frame" in err and f"--history {history}" in err and "nvis needs at least 3" in err
    assert "red, green and blue" in err
    assert not out.exists()


@pytest.mark.parametrize("history", [3, 6])
def test_any_history_of_three_or_more_frames_gets_its_own_strip_and_words(tmp_path, history):
    """A snapshot trained with ``--history 3`` or ``6``: its strips have that many frames, labelled
    t-(history-1)..t, and the page's text counts them."""
    import base64
    import io
    import json

    from PIL import Image

    from tests.helpers import make_history_snapshot

    snapshot = make_history_snapshot(tmp_path / f"pong-h{history}_1.keras", history)
    out = tmp_path / "r.html"
    assert main(["nvis", snapshot, "--layers", "conv1", "--filters", "2", "--max-steps", "12", "--quiet",
                 "--out", str(out)]) == 0
    html = out.read_text()
    labels = [f"t-{back}" for back in range(history - 1, 0, -1)] + ["t"]
    strip_labels = re.findall(r'<div class="strip-labels" style="grid-template-columns: repeat\((\d+), 1fr\)">(.*?)</div>', html)
    assert strip_labels  # a card of a filter that never fires has no strip
    for columns, spans in strip_labels:
        assert int(columns) == history and re.findall(r"<span>(.*?)</span>", spans) == labels
    word = {3: "three", 6: "six"}[history]
    assert f"A DQN state is the last {word} 84×84 grey frames" in html
    assert f"each of the {word} frames t-{history - 1}…t" in html and f"summed over the {word} frames" in html
    # the strip image itself: history frames of the square the card opens on, with 2-pixel gaps
    uris = json.loads(re.search(r'<script type="application/json" id="dq-images">(.*?)</script>', html, re.S).group(1))
    card = re.search(r'data-zoom="(\d+),(\d+),(\d+),(\d+)".*?<img class="strip" data-img="(\w+)"', html, re.S)
    x0, y0, x1, y1 = (int(v) for v in card.groups()[:4])
    strip = Image.open(io.BytesIO(base64.b64decode(uris[card.group(5)].split(",", 1)[1])))
    assert x1 - x0 == y1 - y0 < 84 and strip.size == (history * (x1 - x0) + (history - 1) * 2, y1 - y0)


@pytest.mark.parametrize("blank, history, note", [
    (0, 4, ""),
    (3, 4, "its game's first state: 3 blank frames from before the start, hence the blue"),
    (2, 4, "its game's second state: 2 blank frames from before the start, hence the cyan"),
    (1, 4, "its game's third state: 1 blank frame from before the start"),
    (2, 3, "its game's first state: 2 blank frames from before the start, hence the blue"),
    (5, 8, "its game's third state: 5 blank frames from before the start"),  # t-2..t all lit: no tint
    (6, 8, "its game's second state: 6 blank frames from before the start, hence the cyan"),
    (2, 24, "its game's 22nd state: 2 blank frames from before the start"),
    (16, 24, "its game's eighth state: 16 blank frames from before the start"),
    (13, 24, "its game's 11th state: 13 blank frames from before the start"),
])
def test_a_blank_frame_note_names_the_state_and_its_tint(blank, history, note):
    from dqnviz.report.nvis import blank_note

    assert blank_note(blank, history) == note


ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]


def test_q_values_are_dots_on_an_axis_that_spans_them():
    """Bars from the axis's left edge drew Pong's 1.8139 a sixth as long as its 1.8480, and bars of
    negative values grew from an arbitrary edge: the chart is a dot plot, a dot per action at its
    value, the value written beside it (left of a negative dot where 0 is on the axis, clear of
    the zero line), a* a larger red dot with a dotted line at its value."""
    import json

    import plotly.graph_objects as go

    from dqnviz.report.nvis import _q_figure

    def figure(q, action):
        return json.loads(_q_figure(go, q, ACTIONS, action))

    # the highest max Q of pong-h100-10min_6's game: values 0.034 apart near 1.83
    q = [1.8327, 1.8139, 1.8422, 1.8382, 1.8480, 1.8229]
    fig = figure(q, 4)
    assert len(fig["data"]) == 1
    dots = fig["data"][0]
    assert dots["type"] == "scatter" and dots["mode"] == "markers+text" and "base" not in dots
    assert dots["x"] == q and dots["y"] == ACTIONS and dots["text"][1] == "1.8139"
    low, high = fig["layout"]["xaxis"]["range"]
    assert 1.8 < low < min(q) and max(q) < high < 1.9  # a gap of 0.01 is a visible step
    assert fig["layout"]["yaxis"]["automargin"] is True  # "RIGHTFIRE", not "HTFIRE"
    colours, sizes = dots["marker"]["color"], dots["marker"]["size"]
    assert colours[4] != colours[0] and len(set(colours[:4] + colours[5:])) == 1 and sizes[4] > sizes[0]
    assert set(dots["textposition"]) == {"middle right"}
    line, = fig["layout"]["shapes"]
    assert line["x0"] == line["x1"] == 1.848 and line["line"]["dash"] == "dot"
    assert dots["customdata"][1] == [1.8139, "0.0341 below a*"] and dots["customdata"][4] == [1.848, ""]
    # all negative: still dots at their values, written to their right (0 is not on the axis)
    q = [-0.4319, -0.4697, -0.4347, -0.4284, -0.3843, -0.3880]
    fig = figure(q, 4)
    low, high = fig["layout"]["xaxis"]["range"]
    assert fig["data"][0]["x"] == q and low < min(q) and max(q) < high < 0
    assert set(fig["data"][0]["textposition"]) == {"middle right"}
    # both signs: 0 on the axis, drawn as a line, and the negative values written left of their dots
    q = [0.0426, -0.0781, 1.2451, -0.1273, 0.3611, 0.0071]
    fig = figure(q, 2)
    low, high = fig["layout"]["xaxis"]["range"]
    assert low < min(q) and high > max(q) and fig["layout"]["xaxis"]["zeroline"] is True
    assert [p == "middle left" for p in fig["data"][0]["textposition"]] == [v < 0 for v in q]
    assert low < -0.1273 - 0.3 * (max(q) - min(q))  # room on the left for "-0.1273"


def test_the_modebar_never_covers_a_legend(report):
    from tests.browser import open_report

    with open_report(report) as check:
        check.page.evaluate("dqnvizDrawAll()")
        overlaps = check.page.evaluate(
            """() => Array.from(document.querySelectorAll('.js-plotly-plot')).filter(gd => gd.querySelector('.legend'))
                 .map(gd => ['.legend', '.modebar'].map(s => gd.querySelector(s).getBoundingClientRect()))
                 .map(([l, m]) => !(l.left >= m.right || m.left >= l.right || l.top >= m.bottom || m.top >= l.bottom))""")
        assert overlaps and not any(overlaps)


def test_pongs_misleading_action_names_are_explained(tmp_path):
    """ALE names Pong's paddle moves RIGHT and LEFT: the page says they move the paddle up and down;
    Breakout's page says nothing of the kind."""
    from tests.conftest import make_snapshot

    pong = make_snapshot(tmp_path / "pong_1.keras", "pong", 1)
    out = tmp_path / "pong.html"
    assert main(["nvis", str(pong), "--layers", "conv1", "--filters", "1", "--max-steps", "12", "--quiet",
                 "--out", str(out)]) == 0
    assert "RIGHT moves the paddle up, LEFT down" in out.read_text()
    breakout = make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1)
    assert main(["nvis", str(breakout), "--layers", "conv1", "--filters", "1", "--max-steps", "12", "--quiet",
                 "--out", str(tmp_path / "b.html")]) == 0
    assert "paddle up" not in (tmp_path / "b.html").read_text()


def test_the_strongest_filters_are_those_firing_in_play_before_those_firing_only_at_a_start():
    """A filter whose strongest unit is on a game's first state (blank frames before the start read
    as sudden motion) fires nowhere in play: it ranks after every filter that does."""
    from dqnviz.report.nvis.options import StrongestFilters

    units = [(5, (0, 0), 2.0), (0, (1, 1), 9.0), (7, (0, 0), 3.0), (1, (2, 2), 8.0), (6, (0, 0), 3.0)]
    in_play = np.array([False, False, True, True, True, True, True, True])
    assert StrongestFilters(5).choose(units) == [1, 3, 2, 4, 0]  # by value alone; ties to the lower filter
    assert StrongestFilters(5).choose(units, in_play) == [2, 4, 0, 1, 3]
    assert StrongestFilters(2).choose(units, in_play) == [2, 4]
