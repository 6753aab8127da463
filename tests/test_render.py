"""Rendering helpers shared by every report."""

import json

import plotly.graph_objects as go

from dqnviz.report.render import script_json


def test_script_json_cannot_close_the_script_element_and_stays_the_same_json():
    figure = go.Figure(go.Bar(x=["</script><script>alert(1)</script>"], y=[1]))
    for value in (figure, figure.to_json(), {"name": "</script>"}):
        text = script_json(value)
        assert "</" not in text
        expected = json.loads(value.to_json() if hasattr(value, "to_json") else value if isinstance(value, str)
                              else json.dumps(value))
        assert json.loads(text) == expected


def test_plotly_js_is_embedded_packed_and_unpacks_to_the_same_bytes():
    """The pages carry plotly.js gzipped and base64-encoded (the browser unpacks it): under half
    the size, byte for byte the bundle plotly ships, and the same text every time."""
    import base64
    import gzip

    from dqnviz.report.render import plotly_js, plotly_js_packed

    packed = plotly_js_packed()
    assert gzip.decompress(base64.b64decode(packed)) == plotly_js().encode("utf-8")
    assert len(packed) < 0.5 * len(plotly_js())
    plotly_js_packed.cache_clear()
    assert plotly_js_packed() == packed  # gzip's timestamp is fixed: reports are reproducible


def _page(tmp_path, source: str, **context):
    """Write a page rendered from the template text ``source`` (with templates/ to include or extend)."""
    from dqnviz.report.render import environment

    path = tmp_path / "page.html"
    path.write_text(environment().from_string(source).render(**context), encoding="utf-8")
    return path


def test_every_figure_that_shows_a_modebar_gets_a_strip_for_it(tmp_path):
    """_plotly.js.j2's rule: the top margin grows by the modebar's 28 px wherever plotly shows the
    modebar (on hover, plotly's default, or always), legend or not; never where it does not."""
    from tests.browser import open_report

    page = _page(tmp_path, "<script>{% include '_plotly.js.j2' %}\nwindow.dqnvizPageReady = true;</script>")
    with open_report(page) as check:
        tops = check.page.evaluate("""() => {
            const top = (layout, data, config) => dqnvizPlotly.layout(layout, data, config).margin?.t ?? null;
            const one = [{type: "heatmap", z: [[1]]}], two = [{name: "a"}, {name: "b"}];
            return {
                shared: top({margin: {t: 30}}, one),
                legend: top({margin: {t: 30}}, two),
                no_margin: top({}, one),
                always: top({margin: {t: 30}}, one, {displayModeBar: true}),
                plotly_default: top({margin: {t: 30, l: 5}}, one, {displaylogo: false}),
                hidden: top({margin: {t: 30}}, two, {displayModeBar: false}),
                static: top({margin: {t: 30}}, two, {staticPlot: true}),
                config: dqnvizPlotly.config.displayModeBar,
            }; }""")
        assert tops == {"shared": 58, "legend": 58, "no_margin": 128, "always": 58, "plotly_default": 58,
                        "hidden": 30, "static": 30, "config": "hover"}
        layout = {"margin": {"t": 30, "l": 5}, "showlegend": False}
        out = check.page.evaluate("(layout) => [dqnvizPlotly.layout(layout, []), layout]", layout)
        assert out == [{"margin": {"t": 58, "l": 5}, "showlegend": False}, layout]  # the figure's own is left as it was
        # a title that plotly places half way down the top margin keeps its place above the plot
        titles = check.page.evaluate("""() => [{text: "auto", x: 0.02}, {text: "set", y: 0.95}, "text"].map(
            title => dqnvizPlotly.layout({margin: {t: 30}, title: title}, []).title)""")
        assert titles == [{"text": "auto", "x": 0.02, "yref": "paper", "y": 1, "yanchor": "bottom", "pad": {"b": 15}},
                          {"text": "set", "y": 0.95},
                          {"text": "text", "yref": "paper", "y": 1, "yanchor": "bottom", "pad": {"b": 15}}]


def test_the_modebar_leaves_a_title_alone_without_a_legend(tmp_path):
    """A figure of a page built on base.html.j2 (drawn by _zoom.js.j2, as nvis and compare draw theirs)
    with a title at the top right and no legend: the modebar, shown on hover, sits above the title."""
    import plotly.graph_objects as go

    from tests.browser import open_report

    figure = go.Figure(go.Heatmap(z=[[0, 1], [1, 0]], showscale=False))
    figure.update_layout(height=300, margin=dict(l=20, r=10, t=30, b=20),
                         title=dict(text="a title at the top right, where the modebar is drawn", x=0.98, xanchor="right"))
    page = _page(tmp_path, """{% extends "base.html.j2" %}
        {% block content %}<div class="dq-fig" data-kind="json" data-figure="fig" style="width:600px"></div>{% endblock %}
        {% block data %}<script type="application/json" id="fig">{{ figure | safe }}</script>{% endblock %}""",
                 title="modebar", figure=script_json(figure))
    with open_report(page, width=800, height=600) as check:
        assert check.page.evaluate("dqnvizDrawAll()") == 1
        check.page.hover(".dq-fig .svg-container")
        boxes = check.page.evaluate("""() => ['.modebar', '.gtitle', '.legend'].map(s => {
            const e = document.querySelector('.dq-fig ' + s);
            if (!e) return null;
            const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })""")
        modebar, title, legend = boxes
        assert legend is None and modebar[2] > modebar[0] and title[2] > title[0]
        assert modebar[2] > title[0] and title[2] > modebar[0]  # one above the other, not side by side
        assert modebar[3] <= title[1], (modebar, title)
        assert check.errors == []


def test_a_link_to_a_section_leaves_its_heading_below_the_sticky_bar(tmp_path):
    """base.html.j2's bar stays on screen; a jump to a section must not hide the heading under it,
    on a wide window (its links wrap onto rows when there are many) as on a phone-width one, where
    the bar is one line whose links scroll sideways."""
    from tests.browser import open_report

    links = "".join(f'<a href="#s{i}">section number {i}</a>' for i in range(12))
    sections = "".join(f'<h2 id="s{i}">heading {i}</h2><div style="height:900px"></div>' for i in range(12))
    page = _page(tmp_path, """{% extends "base.html.j2" %}{% block nav %}{{ links | safe }}{% endblock %}
        {% block content %}{{ sections | safe }}{% endblock %}
        {% block figures %}window.dqnvizPageReady = true;{% endblock %}""",
                 title="anchors", links=links, sections=sections)
    for width in (1300, 420):
        with open_report(page, width=width, height=700) as check:
            bar = check.page.evaluate("document.querySelector('.dq-nav').getBoundingClientRect().height")
            if width == 420:
                assert bar < 45  # one line, not three rows covering a phone's screen
                assert check.page.evaluate("(n => n.scrollWidth > n.clientWidth)(document.querySelector('.dq-nav'))")
            else:
                assert bar > 60  # the links wrap: a fixed offset would not do
            for i in (3, 7):
                check.page.click(f'a[href="#s{i}"]')
                top = check.page.evaluate(f"document.getElementById('s{i}').getBoundingClientRect().top")
                assert bar <= top <= bar + 30, (width, i, bar, top)
            assert check.errors == []


def test_a_figure_with_a_narrow_layout_switches_as_the_window_is_resized(tmp_path):
    """render.with_narrow_layout: below its width the figure takes the narrow values of its keys,
    and above it its own again (the CKA chart's upright layer names, say)."""
    from dqnviz.report.render import with_narrow_layout
    from tests.browser import open_report

    figure = go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 0, 1]))
    figure.update_layout(height=300, margin=dict(l=40, r=10, t=30, b=40), xaxis=dict(tickvals=[0, 1, 2],
                         ticktext=["a_long_layer_name"] * 3), annotations=[dict(text="wide words", x=1, y=0)])
    text = with_narrow_layout(figure, 500, {"xaxis.tickangle": -90, "margin.b": 140, "height": 400,
                                            "annotations": [dict(text="narrow<br>words", x=1, y=0)]})
    narrow = json.loads(text)["narrow"]
    assert narrow["wide"]["xaxis.tickangle"] is None and narrow["wide"]["margin.b"] == 40  # the figure's own
    assert narrow["wide"]["height"] == 300 and narrow["wide"]["annotations"][0]["text"] == "wide words"
    page = _page(tmp_path, """{% extends "base.html.j2" %}
        {% block content %}<div class="dq-fig" data-kind="json" data-figure="fig"></div>{% endblock %}
        {% block data %}<script type="application/json" id="fig">{{ figure | safe }}</script>{% endblock %}""",
                 title="narrow", figure=text)

    def state(check):
        return check.page.evaluate("""() => { const gd = document.querySelector('.dq-fig .js-plotly-plot');
            return [document.querySelector(".dq-fig").dataset.layout, gd.layout.xaxis.tickangle, gd.layout.margin.b,
                    gd.layout.height, gd.layout.annotations[0].text]; }""")

    with open_report(page, width=420, height=700) as check:
        assert check.page.evaluate("dqnvizDrawAll()") == 1
        assert state(check) == ["narrow", -90, 140, 400, "narrow<br>words"]
        check.page.set_viewport_size({"width": 1200, "height": 700})
        check.page.wait_for_function("document.querySelector('.dq-fig').dataset.layout === 'wide'")
        assert state(check) == ["wide", None, 40, 300, "wide words"]  # tickangle back to plotly's default
        assert check.errors == []
