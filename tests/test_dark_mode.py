"""Dark mode of the three HTML reports (nvis, compare, plot): where the reader's system asks for it
(prefers-color-scheme: dark) the page and its plotly charts are dark, every text legible (4.5:1),
charts drawn later as they scroll into view too, and a change of the setting while the page is open
recolours the drawn charts and back; the images (data) are never filtered; printing stays on white
paper; and in light mode every colour is as it was before dark mode existed."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest

from tests.test_accessibility import CONTRAST



# nvis_page, compare_page and plot_page: tests/conftest.py (one of each for the session)


@pytest.fixture(scope="module")
def pages(nvis_page, compare_page, plot_page):
    return {"nvis": nvis_page, "compare": compare_page, "plot": plot_page}


# JavaScript used in the page: WCAG's relative luminance of a CSS colour (as plotly or
# getComputedStyle give it), a drawn chart's colours, and every colour a chart holds.
HELPERS = """
function luminance(colour) {
    const probe = document.createElement('canvas').getContext('2d');
    probe.fillStyle = colour;
    const s = probe.fillStyle;
    const m = s[0] === '#' ? [1, 3, 5].map(i => parseInt(s.slice(i, i + 2), 16)) : s.match(/[\\d.]+/g).map(Number);
    const v = m.slice(0, 3).map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
    return {luminance: 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2], alpha: m.length > 3 ? m[3] : 1};
}
// its paper (where transparent, the background it lies on), plot area and font, as plotly holds
// them (_fullLayout) and as its SVG shows the plot area
function figureColours(gd) {
    function behind(el) {
        for (let e = el; e; e = e.parentElement) {
            const b = getComputedStyle(e).backgroundColor;
            if (luminance(b).alpha > 0.5) return b;
        }
        return 'white';
    }
    const full = gd._fullLayout;
    const paper = luminance(full.paper_bgcolor).alpha > 0.5 ? full.paper_bgcolor : behind(gd.parentElement);
    const area = gd.querySelector('.bglayer rect.bg');
    return {paper: luminance(paper).luminance, plot: luminance(full.plot_bgcolor).luminance,
            font: luminance(full.font.color).luminance,
            drawnPlot: area ? luminance(area.style.fill || area.getAttribute('fill')).luminance : null,
            hidden: getComputedStyle(gd).visibility === 'hidden'};
}
// every colour a drawn chart holds (its full layout and traces, plotly's defaults filled in), by path
function allColours(gd) {
    const out = {};
    function walk(value, path) {
        if (Array.isArray(value) && value.every(v => typeof v !== 'object' || v === null)) {
            if (/colou?r$/.test(path)) out[path] = JSON.stringify(value);
        } else if (Array.isArray(value)) {
            value.forEach((v, i) => walk(v, path + '[' + i + ']'));
        } else if (value && typeof value === 'object') {
            Object.keys(value).forEach(k => { if (k[0] !== '_' && k !== 'template') walk(value[k], path + '.' + k); });
        } else if (typeof value === 'string' && /colou?r$/.test(path)) {
            out[path] = value;
        }
    }
    walk(gd._fullLayout, 'layout');
    gd._fullData.forEach((t, i) => walk(t, 'trace' + i));
    return out;
}
// the page's charts, not its image slots
function charts() {
    return Array.from(document.querySelectorAll('.js-plotly-plot')).filter(gd => !gd.closest('.dq-fig[data-kind=image]'));
}
"""


def in_page(body: str) -> str:
    """A function for page.evaluate that runs ``body`` with :data:`HELPERS` defined."""
    return "(arg) => {" + HELPERS + body + "}"


def _ratio(a: float, b: float) -> float:
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


def assert_dark_figure(colours: dict) -> None:
    assert colours["paper"] < 0.05 and colours["plot"] < 0.05, colours
    assert colours["drawnPlot"] is None or colours["drawnPlot"] < 0.05, colours
    assert _ratio(colours["font"], colours["paper"]) >= 4.5 and _ratio(colours["font"], colours["plot"]) >= 4.5, colours
    assert not colours["hidden"], colours


def _mark_all_text(page) -> None:
    """Open every closed <details> (their tables are text too) and mark each element that shows
    text of its own, outside plotly's SVG (whose text is drawn with fill, not color), the
    screen-reader-only text and what is not rendered."""
    page.evaluate("""() => {
        document.querySelectorAll('details').forEach(d => { d.open = true; });
        document.querySelectorAll('body *').forEach(e => {
            if (e.closest('svg, script, style, .sr-only, [hidden]')) return;
            const own = Array.from(e.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
            if (own && e.getClientRects().length) e.setAttribute('data-dq-text', '');
        });
    }""")


# --- the page ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["nvis", "compare", "plot"])
def test_a_dark_page_is_dark_and_all_its_text_legible(pages, kind):
    """The page's background is dark and its text light, and every text on it (tables, notes, code,
    the bar, the verdicts' colours, the closed tables opened) is 4.5:1 or more on its background, by
    the accessibility test's own measure."""
    from tests.browser import open_report

    with open_report(pages[kind], color_scheme="dark") as check:
        page = check.page
        body = page.evaluate(in_page("""const s = getComputedStyle(document.body);
            return [luminance(s.backgroundColor).luminance, luminance(s.color).luminance];"""))
        assert body[0] < 0.02 and body[1] > 0.6, body
        _mark_all_text(page)
        found = page.evaluate(CONTRAST, "[data-dq-text]")
        assert len(found) > 30, found  # the whole page, not a few elements
        low = [(text, round(ratio, 2)) for text, ratio in found if ratio < 4.5]
        assert low == [], low
        assert check.errors == [] and check.requests == []


# --- the charts ----------------------------------------------------------------------------------

def test_the_plot_pages_chart_is_drawn_dark(plot_page):
    """The plot page's charts (plotly_white: white paper and plot, navy text) on a dark page: dark
    paper and plot area, light text, subplot titles and resume labels legible, grid lines subtle."""
    from tests.browser import open_report

    with open_report(plot_page, color_scheme="dark") as check:
        page = check.page
        page.wait_for_function("() => window.dqnvizPageReady === true")
        found = page.evaluate(in_page("""const gd = document.getElementById('stats-plot'), full = gd._fullLayout;
            const card = getComputedStyle(document.body).getPropertyValue('--card').trim();
            return {figure: figureColours(gd), card: luminance(card).luminance, grid: luminance(full.xaxis.gridcolor).luminance,
                    notes: full.annotations.map(a => [a.text, luminance(a.font.color).luminance,
                                                      a.bgcolor ? luminance(a.bgcolor).luminance : null])};"""))
        assert_dark_figure(found["figure"])
        card = found["card"]
        assert 1.05 < _ratio(found["grid"], card) < 2, found  # seen, and as faint as it was on white
        assert any("resumed" in text for text, _, _ in found["notes"]), found
        for text, font, background in found["notes"]:
            assert _ratio(font, card) >= 4.5, (text, found)
            assert background is None or background < 0.05, (text, found)
        assert check.errors == []


def test_a_chart_drawn_as_it_scrolls_into_view_is_dark(nvis_page):
    """nvis draws its charts as they scroll into view: one far down the page, not drawn at first,
    is drawn dark when the reader gets there, and is never shown white before."""
    from tests.browser import open_report

    with open_report(nvis_page, width=1200, height=700, color_scheme="dark") as check:
        page = check.page
        slot = page.locator(".dq-fig[data-kind=json]").last  # a saliency state's dot plot, at the bottom
        assert slot.locator(".js-plotly-plot").count() == 0, "drawn before it was scrolled to"
        page.evaluate("""() => { window.dqSeenWhite = false;
            new MutationObserver(() => document.querySelectorAll('.js-plotly-plot').forEach(gd => {
                if (gd._fullLayout && getComputedStyle(gd).visibility !== 'hidden' && gd._fullLayout.plot_bgcolor === 'white')
                    window.dqSeenWhite = true;
            })).observe(document.body, {subtree: true, childList: true, attributes: true}); }""")
        slot.scroll_into_view_if_needed()
        page.wait_for_function("(el) => { const gd = el.querySelector('.js-plotly-plot'); return gd && gd._dqLight && !gd.style.visibility; }",
                               arg=slot.element_handle())
        found = page.evaluate(in_page("""const gd = arg.querySelector('.js-plotly-plot'), c = gd._fullData[0].textfont.color;
            return {figure: figureColours(gd), plot: luminance(gd._fullLayout.plot_bgcolor).luminance,
                    values: (Array.isArray(c) ? c : [c]).map(x => luminance(x).luminance)};"""), slot.element_handle())
        assert_dark_figure(found["figure"])
        # the values written beside the dots, the chosen one in red: legible on the dark plot
        assert found["values"] and all(_ratio(v, found["plot"]) >= 4.5 for v in found["values"]), found
        assert page.evaluate("window.dqSeenWhite") is False
        assert check.errors == []


def test_changing_the_setting_recolours_the_drawn_charts_and_back(nvis_page, plot_page):
    """A reader whose system turns dark at dusk with the page open: the charts drawn so far turn dark
    too, and turn back to exactly their own colours when it turns light again."""
    from tests.browser import open_report

    for path in (plot_page, nvis_page):
        with open_report(path) as check:  # light
            page = check.page
            page.evaluate("() => window.dqnvizDrawAll ? window.dqnvizDrawAll() : 0")
            page.wait_for_function("() => window.dqnvizPageReady === true")
            light = page.evaluate(in_page("return charts().map(allColours);"))
            assert light and all(light)
            page.emulate_media(color_scheme="dark")
            page.wait_for_function(in_page("return charts().every(gd => gd._dqLight);"))
            for colours in page.evaluate(in_page("return charts().map(figureColours);")):
                assert_dark_figure(colours)
            page.emulate_media(color_scheme="light")
            page.wait_for_function(in_page("return charts().every(gd => !gd._dqLight);"))
            again = page.evaluate(in_page("return charts().map(allColours);"))
            for before, after in zip(light, again, strict=True):
                assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
            assert check.errors == []


def test_a_dark_chart_drawn_again_at_another_width_is_painted_alike(plot_page):
    """The plot page draws its charts again where the window turns narrow or wide (and for paper):
    each drawing was painted from the colours the last one had been painted in, since plotly keeps
    the layout it is given and the dark colours were written into the page's own figure, so that the
    second dark painting turned the dark grid and legend white. Now each drawing is painted alike."""
    from tests.browser import open_report

    with open_report(plot_page, color_scheme="dark") as check:
        page = check.page
        page.wait_for_function("() => window.dqnvizPageReady === true")
        first = page.evaluate(in_page("return allColours(document.getElementById('stats-plot'));"))
        for width, layout in ((700, "narrow"), (1400, "wide")):
            page.set_viewport_size({"width": width, "height": 1000})
            page.wait_for_function("(layout) => { const gd = document.getElementById('stats-plot');"
                                   " return gd.dataset.layout === layout && gd._dqLight && !gd.style.visibility; }", arg=layout)
        again = page.evaluate(in_page("return allColours(document.getElementById('stats-plot'));"))
        assert again == first, {k: (first.get(k), again.get(k)) for k in set(first) | set(again) if first.get(k) != again.get(k)}
        assert_dark_figure(page.evaluate(in_page("return figureColours(document.getElementById('stats-plot'));")))
        assert check.errors == []


# Counts dqnvizPlotly.paint's calls per chart slot (data-figure): the page assigns window.dqnvizPlotly
# once, whole (_plotly.js.j2), so its paint is wrapped as it is assigned.
COUNT_PAINTS = """
(() => {
  let value;
  window.dqnvizPaints = {};
  Object.defineProperty(window, 'dqnvizPlotly', { configurable: true, get() { return value; }, set(v) {
    const paint = v.paint;
    v.paint = function (gd) {
      const slot = gd.closest('[data-figure]');
      const key = slot ? slot.dataset.figure : '?';
      window.dqnvizPaints[key] = (window.dqnvizPaints[key] || 0) + 1;
      return paint.apply(this, arguments);
    };
    value = v;
  } });
})();
"""


def test_a_narrow_compare_chart_is_painted_once_dark_and_again_when_the_window_turns(compare_page):
    """compare's CKA chart has a layout of its own for a narrow window (render.with_narrow_layout):
    drawn narrow on a dark page it takes that layout, then the page's colours once (it was painted
    twice: after the narrow layout and again when drawn), and stays dark whenever the window turns
    wide or narrow again, each turn painted anew."""
    from tests.browser import open_report

    with open_report(compare_page, width=560, color_scheme="dark", init_script=COUNT_PAINTS) as check:
        page = check.page
        page.wait_for_function("() => window.dqnvizPageReady === true")
        page.evaluate("() => document.querySelector('[data-figure=fig-cka]').scrollIntoView()")
        page.wait_for_function("() => { const slot = document.querySelector('[data-figure=fig-cka]');"
                               " const gd = slot.querySelector('.js-plotly-plot');"
                               " return slot.dataset.layout === 'narrow' && gd && gd._dqLight && !gd.style.visibility; }")
        chart = "document.querySelector('[data-figure=fig-cka] .js-plotly-plot')"
        assert page.evaluate("() => window.dqnvizPaints['fig-cka']") == 1
        assert_dark_figure(page.evaluate(in_page(f"return figureColours({chart});")))
        for turn, (width, layout) in enumerate(((1400, "wide"), (560, "narrow")), start=2):
            page.set_viewport_size({"width": width, "height": 1000})
            page.wait_for_function("(n) => window.dqnvizPaints['fig-cka'] === n", arg=turn)
            assert page.evaluate("() => document.querySelector('[data-figure=fig-cka]').dataset.layout") == layout
            assert_dark_figure(page.evaluate(in_page(f"return figureColours({chart});")))
        assert check.errors == []


def test_printing_a_dark_page_prints_light(plot_page):
    """Paper is white: printed from a dark page, the page and its charts are light, and dark again after."""
    from tests.browser import open_report

    with open_report(plot_page, color_scheme="dark") as check:
        page = check.page
        page.wait_for_function("() => window.dqnvizPageReady === true")
        paper = "() => document.getElementById('stats-plot')._fullLayout.paper_bgcolor"
        assert page.evaluate(paper) != "white"
        page.evaluate("() => window.dispatchEvent(new Event('beforeprint'))")
        page.emulate_media(media="print")
        page.wait_for_function(paper + " === 'white'")
        assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
        page.emulate_media(media="screen")
        page.evaluate("() => window.dispatchEvent(new Event('afterprint'))")
        page.wait_for_function(paper + " !== 'white'")
        assert_dark_figure(page.evaluate(in_page("return figureColours(document.getElementById('stats-plot'));")))
        assert check.errors == []


# --- the images ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["nvis", "compare"])
def test_images_are_shown_as_they_are_on_a_dark_page(pages, kind):
    """States, gradients, saliency maps and weights are data: no CSS filter, blend or transparency on
    them or on what holds them, the pixels shown are the page's own PNGs, their plotly figures are
    not recoloured, and a heatmap (nvis's effective receptive fields) is drawn with the same pixels
    in dark and light."""
    from tests.browser import open_report

    with open_report(pages[kind], color_scheme="dark") as check:
        page = check.page
        assert page.evaluate("dqnvizDrawAll()") > 0
        found = page.evaluate("""() => {
            const images = new Set(Object.values(JSON.parse(document.getElementById('dq-images').textContent)));
            const shown = Array.from(document.querySelectorAll('img, canvas, svg image')), bad = [];
            shown.forEach(el => {
                for (let e = el; e && e !== document.documentElement; e = e.parentElement) {
                    const s = getComputedStyle(e);
                    if (s.filter !== 'none' || s.backdropFilter !== 'none' || s.mixBlendMode !== 'normal' || Number(s.opacity) < 1)
                        bad.push([el.tagName, e.tagName, String(e.className.baseVal ?? e.className), s.filter, s.mixBlendMode, s.opacity]);
                }
            });
            // the page's images (plain, and in the zoomable slots); plotly draws a heatmap as an image of its own
            const own = Array.from(document.querySelectorAll('img, .dq-fig[data-kind=image] svg image'))
                .map(el => el.getAttribute('src') || el.getAttribute('href') || el.getAttribute('xlink:href'));
            const slots = Array.from(document.querySelectorAll('.dq-fig[data-kind=image] .js-plotly-plot'));
            return {count: shown.length, bad: bad.slice(0, 5), own: own.length,
                    foreign: own.filter(src => !images.has(src)).slice(0, 3),
                    slots: slots.length, recoloured: slots.filter(gd => gd._dqLight).length};
        }""")
        assert found["count"] > 10 and found["own"] > 10 and found["slots"] > 0, found
        assert found["bad"] == [] and found["foreign"] == [] and found["recoloured"] == 0, found
        heatmaps = "() => Array.from(document.querySelectorAll('.dq-fig[data-kind=json] svg image')).map(i => i.getAttribute('href'))"
        dark = page.evaluate(heatmaps)
        page.emulate_media(color_scheme="light")
        page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot')).every(gd => !gd._dqLight)")
        assert page.evaluate(heatmaps) == dark and (dark or kind == "compare")
        assert check.errors == []


def test_the_gaps_between_a_strips_frames_are_transparent_and_its_frames_untouched():
    """The white 2-px gaps of nvis's frame strips and compare's weight strips glared on a dark card:
    transparent now (the card, white in light mode, shows through), every frame pixel as before."""
    from dqnviz.report.compare import weight_strip
    from dqnviz.report.nvis.images import _strip

    frames = np.random.default_rng(0).integers(0, 256, (4, 6, 5), dtype=np.uint8)
    strip = _strip(frames)
    assert strip.shape == (6, 4 * 5 + 3 * 2, 2)
    for i in range(4):
        part = strip[:, i * 7:i * 7 + 5]
        assert (part[..., 0] == frames[i]).all() and (part[..., 1] == 255).all()
        if i:
            assert (strip[:, i * 7 - 2:i * 7, 1] == 0).all()
    kernel = np.random.default_rng(1).normal(size=(8, 8, 4))
    weights = weight_strip(kernel, scale=2)
    expected = np.clip(128 + 127 * kernel / np.abs(kernel).max(), 0, 255).astype(np.uint8)
    assert weights.shape == (16, 4 * 16 + 3 * 2, 2)
    for t in range(4):
        part = weights[:, t * 18:t * 18 + 16]
        assert (part[..., 0] == expected[..., t].repeat(2, 0).repeat(2, 1)).all() and (part[..., 1] == 255).all()
        if t:
            assert (weights[:, t * 18 - 2:t * 18, 1] == 0).all()


# --- light mode, as before ------------------------------------------------------------------------

# the light colours before dark mode existed (as getComputedStyle gives them): the pages look the same
LIGHT = {
    "body": ("rgb(245, 247, 250)", "rgb(31, 41, 51)"), ".dq-nav": ("rgb(36, 59, 83)", "rgb(255, 255, 255)"),
    ".card, .chart": ("rgb(255, 255, 255)", "rgb(31, 41, 51)"), "code": ("rgb(228, 231, 235)", None),
    "table.net th, .numbers th": ("rgb(228, 231, 235)", None), ".explain": ("rgb(255, 251, 234)", None),
    # the strips' transparent gaps show this white: the white gaps they had
    ".strip, .weights img": ("rgb(255, 255, 255)", None), "main .muted": (None, "rgb(97, 110, 124)"),
    ".numbers td.above": (None, "rgb(27, 127, 76)"), ".numbers td.below": (None, "rgb(180, 83, 9)"),
    ".warn": (None, "rgb(180, 83, 9)"),
}


def _figure_json(html: str, chart_id: str) -> dict:
    if chart_id == "stats-plot":
        return json.loads(re.search(r"const figure = (\{.*?\});\n", html, re.S).group(1))
    return json.loads(re.search(r'id="%s">(.*?)</script>' % re.escape(chart_id), html, re.S).group(1))


@pytest.mark.parametrize("kind", ["nvis", "compare", "plot"])
def test_light_mode_is_as_it_was(pages, kind):
    """In light mode nothing changed: the chrome's colours are the old ones, and each chart is drawn
    in its figure's own colours (nothing recoloured; plotly_white's on the plot page)."""
    from tests.browser import open_report

    html = pages[kind].read_text(encoding="utf-8")
    with open_report(pages[kind], color_scheme="light") as check:
        page = check.page
        page.evaluate("() => window.dqnvizDrawAll ? window.dqnvizDrawAll() : 0")
        page.wait_for_function("() => window.dqnvizPageReady === true")
        styles = page.evaluate("""(selectors) => Object.fromEntries(selectors.map(sel => [sel,
            Array.from(document.querySelectorAll(sel)).map(e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color])]))""",
                               list(LIGHT))
        assert styles["body"] and styles[".dq-nav"] and styles["code"]
        for selector, (background, colour) in LIGHT.items():
            for found in styles[selector]:
                assert background is None or found[0] == background, (selector, found)
                assert colour is None or found[1] == colour, (selector, found)
        drawn = page.evaluate(in_page("""return charts().map(gd => ({
            id: gd.id || gd.closest('[data-figure]').dataset.figure, painted: !!gd._dqLight,
            hidden: getComputedStyle(gd).visibility === 'hidden',
            layout: [gd.layout.paper_bgcolor, gd.layout.plot_bgcolor],
            full: [gd._fullLayout.paper_bgcolor, gd._fullLayout.plot_bgcolor, gd._fullLayout.font.color],
            traces: gd.data.map(t => [t.line && t.line.color, t.marker && t.marker.color, t.textfont && t.textfont.color])}));"""))
        assert drawn
        for chart in drawn:
            assert not chart["painted"] and not chart["hidden"], chart
            figure = _figure_json(html, chart["id"])
            assert chart["layout"] == [figure["layout"].get("paper_bgcolor"), figure["layout"].get("plot_bgcolor")], chart
            own = [[t.get("line", {}).get("color"), t.get("marker", {}).get("color"), t.get("textfont", {}).get("color")]
                   for t in figure["data"]]
            assert chart["traces"] == own, chart["id"]
            if chart["id"] == "stats-plot":
                assert chart["full"] == ["white", "white", "#2a3f5f"]
        assert check.errors == []


def test_a_strips_gaps_reach_the_page_transparent(nvis_page):
    """The page's strip images keep their transparent gaps (grey and alpha PNGs), the frames opaque."""
    from PIL import Image

    html = nvis_page.read_text(encoding="utf-8")
    uris = json.loads(re.search(r'<script type="application/json" id="dq-images">(.*?)</script>', html, re.S).group(1))
    key = re.search(r'<img class="strip" data-img="(\w+)"', html).group(1)
    strip = Image.open(io.BytesIO(base64.b64decode(uris[key].split(",", 1)[1])))
    assert strip.mode == "LA"
    assert set(np.unique(np.asarray(strip)[..., 1]).tolist()) == {0, 255}
