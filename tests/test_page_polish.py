"""The report shell's finish: no button that reaches the network, printing that fits the paper,
keyboard access to the zoomable images, and layouts for a tablet's and a phone's width.

The pages here are built from the shared templates (base.html.j2, _cards.html.j2, _zoom.js.j2) as the
nvis and compare pages use them, plus the real plot page."""

from __future__ import annotations

import json
import re

import numpy as np
import plotly.graph_objects as go
import pytest

from dqnviz.report.render import environment, png_data_uri, script_json
from tests.helpers import run_cli

CARDS = """{% extends "base.html.j2" %}
{% from "_cards.html.j2" import image_slot %}
{% block nav %}{% for i in range(6) %}<a href="#s{{ i }}">section number {{ i }}</a>{% endfor %}{% endblock %}
{% block header %}<h1 id="s0">cards</h1>{% endblock %}
{% block content %}
<h2 id="s1">filters</h2>
<div class="grid">
{% for i in range(8) %}
  <div class="card"><header><span>filter {{ i }}</span><span class="value">activation 1.0</span></header>
    <div class="pair">
      {{ image_slot("a", "link-" ~ i, "state", [30, 30, 8, 8], False, "input state", (84, 84), [20, 20, 50, 50]) }}
      {{ image_slot("b", "link-" ~ i, "gradient", [30, 30, 8, 8], True, "guided backprop", (84, 84), [20, 20, 50, 50]) }}
    </div>
    <p class="meta">state {{ i }}</p></div>
{% endfor %}
</div>
<h2 id="s2">a chart</h2>
<div class="chart"><div class="dq-fig" data-kind="json" data-figure="fig-chart"></div></div>
{% endblock %}
{% block data %}<script type="application/json" id="fig-chart">{{ figure | safe }}</script>{% endblock %}
"""


def _cards_page(tmp_path):
    """A page of filter cards (two linked zoomable images each, as nvis and compare draw them) and a
    wide chart, as nvis's and compare's charts are."""
    rng = np.random.default_rng(0)
    images = {key: png_data_uri(rng.integers(0, 255, (84, 84, 3), dtype=np.uint8)) for key in ("a", "b")}
    figure = go.Figure(go.Scatter(x=list(range(50)), y=[i % 7 for i in range(50)], name="a line"))
    figure.update_layout(width=1300, height=420, margin=dict(l=50, r=20, t=30, b=40), title="a wide chart")
    path = tmp_path / "cards.html"
    path.write_text(environment().from_string(CARDS).render(title="cards", images_json=json.dumps(images),
                                                            figure=script_json(figure)), encoding="utf-8")
    return path


def _plot_page(tmp_path):
    from tests.test_plot import write_sittings

    csv = write_sittings(tmp_path / "pong.csv", epochs=6, resume_at=3)
    out = tmp_path / "pong.html"
    assert run_cli(["plot", str(csv), "--out", str(out)]) == 0
    return out


MODEBAR_BUTTONS = """async () => {
    const out = [];
    for (const gd of document.querySelectorAll('.js-plotly-plot')) {
        gd.dispatchEvent(new MouseEvent('mousemove', {bubbles: true}));  // a modebar shown on hover
        gd.querySelectorAll('.modebar-btn').forEach(b => out.push(
            [b.getAttribute('data-title') || '', b.getAttribute('data-attr') || '', b.getAttribute('data-val') || '']));
    }
    return {buttons: out, config: window.dqnvizPlotly.config,
            plots: Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => gd._context && {
                cloud: gd._context.showSendToCloud, studio: gd._context.showEditInChartStudio,
                logo: gd._context.displaylogo})};
}"""


@pytest.mark.parametrize("kind", ["cards", "plot"])
def test_no_chart_offers_to_send_its_data_anywhere(tmp_path, kind):
    """The reports need no network: plotly.js's bundle showed a "Share chart" (send to cloud.plotly.com)
    button on every chart's modebar. None is left, nor Chart Studio's, the logo, or the plot page's
    pointless box and lasso selection."""
    from tests.browser import open_report

    page = _cards_page(tmp_path) if kind == "cards" else _plot_page(tmp_path)
    with open_report(page) as check:
        if kind == "cards":
            assert check.page.evaluate("dqnvizDrawAll()") == 17
        found = check.page.evaluate(MODEBAR_BUTTONS)
        assert found["buttons"], "no modebar drawn"  # the chart's (the images show none)
        titles = " | ".join(" ".join(b) for b in found["buttons"]).lower()
        for word in ("cloud", "share", "chart studio", "edit in", "lasso", "select", "plotly.com"):
            assert word not in titles, (word, titles)
        assert found["config"]["showSendToCloud"] is False and found["config"]["showEditInChartStudio"] is False
        # (showEditInChartStudio is unknown to some plotly.js versions: then no such button exists)
        assert all(p["cloud"] is False and p["logo"] is False and not p["studio"] for p in found["plots"]), found["plots"]
        assert check.page.locator(".modebar-btn.plotlyjsicon, a[href*='plotly.com']").count() == 0
        assert check.requests == [] and check.errors == []


# As the page is printed, the browser lays it out again for the paper after 'beforeprint', with no
# chance for plotly's resize handler (a timer) to run: the test holds that handler back likewise.
FREEZE_RESIZE = """(() => {
    window.__dqFrozen = false;
    const add = window.addEventListener;
    window.addEventListener = function (type, listener, options) {
        if (type !== 'resize' || typeof listener !== 'function') return add.call(this, type, listener, options);
        return add.call(this, type, function (event) { if (!window.__dqFrozen) return listener.call(this, event); }, options);
    };
})()"""

# A4 less the page's 12 mm margins (_style.css.j2's @page), at 96 px per inch
PAPER_WIDTH = 703

OVERFLOW = """() => {
    const width = document.documentElement.clientWidth, bad = [];
    document.querySelectorAll('.js-plotly-plot .svg-container, .js-plotly-plot svg.main-svg, img, canvas, .card, .chart, .dq-fig').forEach(e => {
        const r = e.getBoundingClientRect();
        if (!r.width) return;
        const box = e.parentElement && e.parentElement.closest('.card, .chart, .dq-fig');
        const b = box && box.getBoundingClientRect();
        if (r.left < -0.5 || r.right > width + 0.5 || (b && (r.left < b.left - 1 || r.right > b.right + 1)))
            bad.push([e.tagName, String(e.className.baseVal ?? e.className), Math.round(r.left), Math.round(r.right),
                      b && Math.round(b.left), b && Math.round(b.right)]);
    });
    return {width: width, bad: bad.slice(0, 8), count: bad.length,
            nav: getComputedStyle(document.querySelector('.dq-nav')).display,
            background: getComputedStyle(document.body).backgroundColor};
}"""


def _print_at_paper_width(page):
    """What printing does: 'beforeprint' in the window's layout, then the page laid out for paper."""
    page.evaluate("() => { window.__dqFrozen = true; window.dispatchEvent(new Event('beforeprint')); }")
    page.emulate_media(media="print")
    page.set_viewport_size({"width": PAPER_WIDTH, "height": 1000})


@pytest.mark.parametrize("kind", ["cards", "plot"])
def test_printing_fits_every_chart_and_image_to_the_paper(tmp_path, kind):
    """Printed from a wide window, the charts and images kept their on-screen size: they ran out of
    their cards, over their neighbours and off the paper's right edge. On paper now every chart and
    image lies within its card and the page's width, the bar is gone, the paper white; after
    printing the charts are as they were."""
    from tests.browser import open_report

    page = _cards_page(tmp_path) if kind == "cards" else _plot_page(tmp_path)
    with open_report(page, width=1440, height=900, init_script=FREEZE_RESIZE) as check:
        if kind == "cards":
            assert check.page.evaluate("dqnvizDrawAll()") == 17
        before = check.page.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => gd.getBoundingClientRect().width)")
        assert max(before) > PAPER_WIDTH  # the wide chart (and on the plot page, all of it) is wider than paper
        _print_at_paper_width(check.page)
        result = check.page.evaluate(OVERFLOW)
        assert result["width"] == PAPER_WIDTH
        assert result["count"] == 0, result["bad"]
        assert result["nav"] == "none" and result["background"] == "rgb(255, 255, 255)"
        if kind == "plot":  # drawn again for the paper: one column, the legend under it, no modebar
            plot = check.page.evaluate("""() => { const gd = document.getElementById('stats-plot');
                return [gd.dataset.layout, gd._fullLayout.width, gd._context.displayModeBar]; }""")
            assert plot[0] == "narrow" and plot[1] <= PAPER_WIDTH and plot[2] is False, plot
            # no axis title on the next chart's title (a print height shorter than the layout's
            # spacing was made for put each "epoch" onto the title below it)
            clashes = check.page.evaluate("""() => {
                const boxes = s => Array.from(document.querySelectorAll(s)).map(e => e.getBoundingClientRect());
                const titles = boxes('#stats-plot .annotation-text'), axes = boxes('#stats-plot .g-xtitle text');
                return axes.filter(a => titles.some(t => a.left < t.right && t.left < a.right
                                                         && a.top < t.bottom && t.top < a.bottom)).length; }""")
            assert clashes == 0
        check.page.emulate_media(media="screen")
        check.page.set_viewport_size({"width": 1440, "height": 900})
        check.page.evaluate("() => { window.dispatchEvent(new Event('afterprint')); window.__dqFrozen = false; }")
        after = check.page.evaluate("""() => [Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => gd.getBoundingClientRect().width),
                                             document.querySelectorAll('svg.main-svg[viewBox]').length]""")
        assert after[1] == 0 and after[0] == pytest.approx(before, abs=2)
        assert check.errors == []


def test_printed_cards_are_kept_whole_and_the_bar_is_not_sticky():
    """The print rules themselves: a card is not cut across two sheets, headings stay with what follows."""
    css = environment().get_template("_style.css.j2").render()
    rules = css[css.index("@media print"):]
    assert re.search(r"\.card[^{]*\{[^}]*break-inside:\s*avoid", rules)
    assert re.search(r"\.dq-nav[^{]*\{[^}]*display:\s*none", rules)
    assert re.search(r"h2[^{]*\{[^}]*break-after:\s*avoid", rules)


def _ranges(page, index=0):
    return page.evaluate(f"""() => {{ const gd = document.querySelectorAll('.dq-fig[data-kind=image] .js-plotly-plot')[{index}];
        return [gd._fullLayout.xaxis.range.slice(), gd._fullLayout.yaxis.range.slice()]; }}""")


def test_the_zoomable_images_work_from_the_keyboard(tmp_path):
    """Zoom, pan and 'the whole state' were mouse-only: Tab now reaches each image, which says its
    keys, and + / - zoom, the arrows pan and 0 shows the whole image, its linked partner alike."""
    from tests.browser import open_report

    page = _cards_page(tmp_path)
    with open_report(page, width=1200, height=900) as check:
        p = check.page
        p.keyboard.press("Tab")  # the first stop: the skip link, shown on focus only
        skip = p.evaluate("""() => { const a = document.activeElement, r = a.getBoundingClientRect();
            return [a.className, a.textContent, r.top, r.bottom]; }""")
        assert skip[0] == "dq-skip" and skip[1] == "Skip to content" and skip[2] >= 0 and skip[3] > skip[2]
        hidden = p.evaluate("() => { document.activeElement.blur(); return document.querySelector('.dq-skip').getBoundingClientRect().bottom; }")
        assert hidden <= 0  # out of sight unless focused
        for presses in range(1, 30):
            p.keyboard.press("Tab")
            if p.evaluate("() => document.activeElement.matches('.dq-fig[data-kind=image]')"):
                break
        else:
            pytest.fail("Tab never reached a zoomable image")
        label, keys = p.evaluate("""() => [document.activeElement.getAttribute('aria-label'),
            (document.activeElement.getAttribute('aria-describedby') || '').split(' ')
                .map(id => document.getElementById(id)?.textContent || '').join(' ')]""")
        # named by its caption; its keys are its description (base.html.j2's #dq-keys), not part of every name
        assert label == "input state" and "+" in keys and "arrow" in keys and "0" in keys
        p.wait_for_function("document.activeElement.querySelector('.js-plotly-plot')?._fullLayout")
        x, y = _ranges(p)
        assert x == pytest.approx([19.5, 49.5]) and y == pytest.approx([49.5, 19.5])  # opens on data-zoom
        p.keyboard.press("+")
        p.wait_for_function("() => { const gd = document.activeElement.querySelector('.js-plotly-plot'); const r = gd._fullLayout.xaxis.range; return r[1] - r[0] < 29; }")
        x2, y2 = _ranges(p)
        assert x2[1] - x2[0] == pytest.approx(20) and y2[0] - y2[1] == pytest.approx(20)  # zoomed in, about the middle
        assert (x2[0] + x2[1]) / 2 == pytest.approx(34.5)
        p.keyboard.press("ArrowRight")
        p.wait_for_timeout(200)
        x3, _ = _ranges(p)
        assert x3[0] == pytest.approx(x2[0] + 4)
        p.wait_for_function("() => { const r = document.querySelectorAll('.dq-fig[data-kind=image] .js-plotly-plot')[1]?._fullLayout?.xaxis.range; return r && Math.abs(r[0] - %f) < 1e-6; }" % x3[0])
        p.keyboard.press("0")
        p.wait_for_timeout(200)
        assert _ranges(p) == [pytest.approx([-0.5, 83.5]), pytest.approx([83.5, -0.5])]
        scrolled = p.evaluate("window.scrollY")
        p.keyboard.press("ArrowDown")  # the image pans; the page does not scroll
        p.wait_for_timeout(200)
        assert p.evaluate("window.scrollY") == scrolled
        assert check.errors == []


def test_cards_stand_two_abreast_in_a_tablets_window(tmp_path):
    """At 768 px the cards' 370 px minimum allowed one column only, doubling the page's height."""
    from tests.browser import open_report

    page = _cards_page(tmp_path)
    for width, columns in ((768, 2), (390, 1)):
        with open_report(page, width=width, height=900) as check:
            lefts = check.page.evaluate("Array.from(document.querySelectorAll('.grid > .card')).map(c => Math.round(c.getBoundingClientRect().left))")
            assert len(set(lefts)) == columns, (width, lefts)
            widths = check.page.evaluate("Array.from(document.querySelectorAll('.grid > .card')).map(c => c.getBoundingClientRect().width)")
            assert min(widths) >= 300 or columns == 1  # still legible
            assert check.page.evaluate("document.documentElement.scrollWidth") <= width


def test_the_bar_is_one_line_on_a_phone(tmp_path):
    """At 390 px the bar's links wrapped to three lines (about 105 px of the screen, always): one line
    now, whose links scroll sideways, every one still there."""
    from tests.browser import open_report

    page = _cards_page(tmp_path)
    with open_report(page, width=390, height=800) as check:
        nav = check.page.evaluate("""() => { const n = document.querySelector('.dq-nav');
            return [n.getBoundingClientRect().height, n.scrollWidth, n.clientWidth, n.querySelectorAll('a').length]; }""")
        assert nav[0] < 45 and nav[1] > nav[2] and nav[3] == 6, nav
        assert check.page.evaluate("document.documentElement.scrollWidth") <= 390
