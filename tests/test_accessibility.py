"""Accessibility of the three HTML reports (nvis, compare, plot), checked on real pages made from tiny
snapshots and CSVs: every chart has a text equivalent and its SVG drawing is out of the accessibility
tree, every card image is named for its card, meaning is not carried by colour alone, text is legible
against its background, scrolling boxes and the layer menu work from the keyboard, and tables say
which cells are headers."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest




class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []
        self.content = []  # its text and child nodes, in document order

    def all_text(self) -> str:
        return "".join(c if isinstance(c, str) else c.all_text() for c in self.content)

    def find_all(self, test):
        for child in self.children:
            if test(child):
                yield child
            yield from child.find_all(test)

    def tags(self, tag):
        return list(self.find_all(lambda n: n.tag == tag))

    def classes(self) -> set:
        return set(self.attrs.get("class", "").split())

    def ancestor(self, test):
        node = self.parent
        while node is not None and not test(node):
            node = node.parent
        return node


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Tree(HTMLParser):
    """The page as a tree of :class:`Node` (the stdlib parser; scripts' text kept apart)."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.current = self.root
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.current)
        self.current.children.append(node)
        self.current.content.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        node = Node(tag, attrs, self.current)
        self.current.children.append(node)
        self.current.content.append(node)

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        if self.current.tag not in ("script", "style"):
            self.current.content.append(data)


def tree(path) -> Node:
    return Tree(path.read_text(encoding="utf-8")).root


def by_id(root: Node) -> dict:
    return {n.attrs["id"]: n for n in root.find_all(lambda n: "id" in n.attrs)}


# --- the pages ------------------------------------------------------------------------------------

# nvis_page, compare_page and plot_page: tests/conftest.py (one of each for the session)


# --- 1. charts have text equivalents; their SVG drawings are hidden -----------------------------------

def test_the_plot_pages_charts_have_their_values_as_tables(plot_page):
    """The per-epoch values were only in the SVG and the mouse's hover: now one table per field, in
    a closed <details> under the charts, with a caption and header cells, and the chart is a named figure."""
    from dqnviz.report.plot import read_stats

    root = tree(plot_page)
    ids = by_id(root)
    charts = ids["charts"]
    assert charts.tag == "figure" and charts.attrs.get("aria-labelledby") in ids
    (details,) = [d for d in charts.tags("details")]
    assert "open" not in details.attrs and details.tags("summary")
    tables = details.tags("table")
    run = read_stats(plot_page.parent / "pong.csv")
    fields = [t.tags("caption")[0].all_text().strip() for t in tables]
    assert fields and all(field in run.columns for field in fields)
    for table, field in zip(tables, fields):
        body = table.tags("tbody")[0].tags("tr")
        points = sum(len(run.series(phase, field)[0]) for phase in ("train", "test") if field != "meancost")
        assert len(body) >= max(points, 1)
        assert all(th.attrs.get("scope") == "col" for th in table.tags("thead")[0].tags("th"))
        assert all(row.tags("th")[0].attrs.get("scope") == "row" for row in body)


def test_the_plotly_drawings_are_hidden_and_the_charts_named(plot_page, nvis_page):
    """Plotly's SVG exposed dozens of unnamed images and symbols: hidden now (aria-hidden), its
    modebar's buttons left in; every chart slot of nvis is a figure with a name."""
    from tests.browser import open_report

    for page in (plot_page, nvis_page):
        with open_report(page) as check:
            check.page.evaluate("() => window.dqnvizDrawAll ? window.dqnvizDrawAll() : 0")
            check.page.wait_for_function("() => document.querySelectorAll('svg.main-svg').length > 0")
            check.page.wait_for_timeout(300)
            svgs = check.page.evaluate("""() => Array.from(document.querySelectorAll('svg.main-svg'))
                .map(s => s.getAttribute('aria-hidden'))""")
            assert svgs and set(svgs) == {"true"}, svgs
            buttons = check.page.evaluate("""() => Array.from(document.querySelectorAll('.modebar-btn'))
                .filter(b => b.closest('[aria-hidden=true]')).length""")
            assert buttons == 0
            charts = check.page.evaluate("""() => Array.from(document.querySelectorAll('.dq-fig[data-kind=json]'))
                .map(f => [f.getAttribute('role'), f.getAttribute('aria-label') || ''])""")
            assert all(role == "figure" and len(label) > 20 for role, label in charts), charts
            assert check.errors == []


def test_the_plot_pages_drawing_stays_hidden_after_a_redraw(plot_page):
    """Plotly.newPlot drops a chart's listeners: after the page drew its charts again for a narrow
    window, a later plotly redraw left its SVG in the accessibility tree (the listener that hides it
    was added once, on the first plot, behind a flag that outlived it)."""
    from tests.browser import open_report

    with open_report(plot_page) as check:
        page = check.page
        page.wait_for_function("() => window.dqnvizPageReady === true")
        page.set_viewport_size({"width": 700, "height": 1000})  # narrow: drawn again by Plotly.newPlot
        page.wait_for_function("() => document.getElementById('stats-plot').dataset.layout === 'narrow'")
        page.wait_for_timeout(300)
        shown = page.evaluate("""() => {
            const plot = document.getElementById('stats-plot');
            plot.querySelectorAll('svg.main-svg').forEach(s => s.removeAttribute('aria-hidden'));
            return Plotly.relayout(plot, {'xaxis.autorange': true}).then(() =>
                Array.from(plot.querySelectorAll('svg.main-svg')).map(s => s.getAttribute('aria-hidden')));
        }""")
        assert shown and set(shown) == {"true"}, shown
        assert check.errors == []


def test_nvis_q_values_are_a_table_per_saliency_state(nvis_page):
    """The dot plot's values were separate SVG text nodes: a hidden table now pairs each output with
    its value and marks the chosen one."""
    html = nvis_page.read_text(encoding="utf-8")
    root = tree(nvis_page)
    sal = list(root.find_all(lambda n: "sal" in n.classes()))
    assert sal
    for item in sal:
        (fig,) = item.find_all(lambda n: n.attrs.get("data-figure", "").startswith("fig-q-"))
        figure = json.loads(re.search(r'id="%s">(.*?)</script>' % fig.attrs["data-figure"], html, re.S).group(1))
        names, values = figure["data"][0]["y"], figure["data"][0]["text"]
        (table,) = item.tags("table")
        assert table.ancestor(lambda n: "sr-only" in n.classes()) is not None
        rows = table.tags("tbody")[0].tags("tr")
        cells = [(r.tags("th")[0].all_text(), r.tags("td")[0].all_text()) for r in rows]
        assert [c[1] for c in cells] == values
        assert all(c[0].startswith(name) for c, name in zip(cells, names))
        assert sum("(chosen" in c[0] for c in cells) == 1


def test_compares_temporal_lean_and_histogram_are_tables(compare_page):
    """The lean shares per frame appeared nowhere as text, nor the matched cosines' histogram."""
    root = tree(compare_page)
    slots = {n.attrs["data-figure"]: n for n in root.find_all(lambda n: "data-figure" in n.attrs)}
    chart = slots["fig-lean"].parent
    (details,) = chart.tags("details")
    (table,) = details.tags("table")
    heads = [th.all_text() for th in table.tags("thead")[0].tags("th")]
    assert heads[-1] == "t" and heads[0] == "snapshot"
    rows = table.tags("tbody")[0].tags("tr")
    assert [r.tags("th")[0].all_text() for r in rows] == ["breakout_1", "pong_2"]
    for row in rows:
        assert sum(float(td.all_text()) for td in row.tags("td")) == pytest.approx(100, abs=0.5)
    match = slots["fig-match"].parent.tags("details")[0].tags("table")[0]
    counts = [int(td.all_text()) for td in match.tags("tbody")[0].tags("td")]
    assert sum(counts) == 32  # every conv1 filter of the pair, in one bin or another


# --- 2. card images are named for their card ------------------------------------------------------

def test_card_images_are_named_for_their_card_and_the_keys_described_once(nvis_page, compare_page):
    """Every image slot was called "input state t-2/t-1/t: + and - zoom, …" or "guided backprop: …",
    44 times over: now each names its layer, filter (and snapshot on compare) and what it shows, and
    the keys are one description (aria-describedby) with the card's facts."""
    from tests.browser import open_report

    for page, snapshot in ((nvis_page, False), (compare_page, True)):
        with open_report(page) as check:
            check.page.wait_for_function("() => document.querySelector('.dq-fig[data-kind=image][tabindex]')")
            slots = check.page.evaluate("""() => Array.from(document.querySelectorAll('article.card .dq-fig[data-kind=image]')).map(el => {
                const card = el.closest('article');
                const described = (el.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
                return {label: el.getAttribute('aria-label'), layer: card.dataset.layer, filter: card.dataset.filter,
                        snapshot: card.dataset.snapshot || '', described: described,
                        found: described.map(id => !!document.getElementById(id)),
                        meta: described.some(id => document.getElementById(id) === card.querySelector('.meta')),
                        alt: el.querySelector('img.placeholder') ? el.querySelector('img.placeholder').alt : null};
            })""")
            assert slots
            labels = [s["label"] for s in slots]
            assert len(set(labels)) == len(labels), "two images share a name"
            for s in slots:
                assert f"{s['layer']} filter {s['filter']}" in s["label"], s
                assert not snapshot or s["label"].startswith(s["snapshot"] + " "), s
                assert "arrow" not in s["label"] and "+" not in s["label"], s  # the keys are not in the name
                assert "dq-keys" in s["described"] and all(s["found"]) and s["meta"], s
            inputs, guided = labels[0::2], labels[1::2]
            assert all("red" in x and "t-2" in x for x in inputs)
            assert all("guided backprop" in x and re.search(r"gradient by frame: t-3 \d+%.*t \d+%", x) for x in guided)
            keys = check.page.evaluate("() => [document.getElementById('dq-keys').hidden, document.getElementById('dq-keys').textContent]")
            assert keys[0] is True and "arrow" in keys[1]


def test_cards_are_headed_and_named_articles(nvis_page, compare_page):
    """A card's title was a <span>, its article unnamed: a heading now (which names the article once
    the page runs); compare's heading says the snapshot too (for the ear only: the column head shows it)."""
    from tests.browser import open_report

    for page in (nvis_page, compare_page):
        root = tree(page)
        cards = list(root.find_all(lambda n: n.tag == "article" and "card" in n.classes()))
        assert cards
        for card in cards:
            (header,) = [c for c in card.children if c.tag == "header"]
            (title,) = [c for c in header.children if c.tag == "h3"]
            assert title.attrs.get("id")
            text = " ".join(title.all_text().split())
            assert text.endswith(f"{card.attrs['data-layer']} · filter {card.attrs['data-filter']}")
            if "data-snapshot" in card.attrs:
                assert text.startswith(card.attrs["data-snapshot"] + " · ")
        with open_report(page) as check:
            named = check.page.evaluate("""() => Array.from(document.querySelectorAll('article.card')).map(a =>
                document.getElementById(a.getAttribute('aria-labelledby'))?.tagName)""")
            assert named and set(named) == {"H3"}


# --- 3. colour is not the only carrier -------------------------------------------------------------

def test_cka_verdicts_have_a_symbol_and_words_not_only_a_colour(compare_page):
    root = tree(compare_page)
    cells = list(root.find_all(lambda n: n.tag == "td" and n.classes() & {"above", "below"}))
    assert cells, "the fixture's CKA table marks no cell"
    for cell in cells:
        verdict = (cell.classes() & {"above", "below"}).pop()
        text = cell.all_text()
        assert ("▲" if verdict == "above" else "▼") in text
        (hidden,) = cell.find_all(lambda n: "sr-only" in n.classes())
        assert f"{verdict} the chance band" in hidden.all_text()
    unmarked = root.find_all(lambda n: n.tag == "td" and "num" in n.classes() and not n.classes() & {"above", "below"})
    assert not any("▲" in c.all_text() or "▼" in c.all_text() for c in unmarked)


def test_the_compare_pages_findings_in_short_are_a_named_region_under_a_heading(compare_page):
    """"In short" was bold text a screen reader's heading list skipped: now a level-2 heading that
    names the summary's region."""
    from tests.browser import open_report

    with open_report(compare_page) as check:
        heading = check.page.get_by_role("heading", name="In short", level=2)
        assert heading.count() == 1
        assert check.page.get_by_role("region", name="In short").count() == 1


def test_train_and_test_lines_of_one_run_differ_in_more_than_hue(tmp_path):
    """One run's train and test lines were both solid with circles, blue and red of one lightness."""
    from dqnviz.report.plot import build_figure, read_stats
    from tests.test_plot import write_stats

    figure = build_figure([read_stats(write_stats(tmp_path / "one.csv", epochs=4))], ["average_reward"])
    style = {t.name: (t.line.dash, t.marker.symbol) for t in figure.data if t.name in ("train", "test")}
    assert set(style) == {"train", "test"}
    assert style["train"][0] != style["test"][0] and style["train"][1] != style["test"][1], style


# --- 4. contrast -------------------------------------------------------------------------------------

CONTRAST = """(selector) => {
    function rgb(text) { const m = text.match(/[\\d.]+/g).map(Number); return {c: m.slice(0, 3), a: m.length > 3 ? m[3] : 1}; }
    function lum(c) { const v = c.map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
                      return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; }
    function background(el) {
        for (let e = el; e; e = e.parentElement) { const b = rgb(getComputedStyle(e).backgroundColor); if (b.a > 0.5) return b.c; }
        return [255, 255, 255];
    }
    return Array.from(document.querySelectorAll(selector)).filter(e => e.textContent.trim()).map(e => {
        const a = lum(rgb(getComputedStyle(e).color).c), b = lum(background(e));
        return [e.textContent.trim().slice(0, 30), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
    });
}"""


def test_text_the_audit_found_faint_is_legible(compare_page, plot_page):
    """White on the snapshots' orange (2.4:1), snapshot names in their colour (2.3:1), the accent red
    (4.4:1) and muted code (4.2:1) were below WCAG's 4.5:1."""
    from tests.browser import open_report

    checks = {compare_page: ".cmp > .colhead, .weights > .colhead, .card header .value:not(.muted), .weights .dead, .muted code",
              plot_page: ".muted code, code"}
    for page, selector in checks.items():
        with open_report(page) as check:
            found = check.page.evaluate(CONTRAST, selector)
            assert found
            low = [(text, round(ratio, 2)) for text, ratio in found if ratio < 4.5]
            assert low == [], low


# --- 5. keyboard -------------------------------------------------------------------------------------

def test_scrolling_boxes_are_focusable_named_regions(compare_page, plot_page):
    """compare's weight grid and plot's runs table scroll sideways in a narrow window, out of a
    keyboard's reach: each is now a focusable, named region."""
    for page, cls in ((compare_page, "weights"), (plot_page, "table-wrap")):
        (box,) = tree(page).find_all(lambda n: n.tag == "div" and cls in n.classes())
        assert box.attrs.get("tabindex") == "0" and box.attrs.get("role") == "region" and box.attrs.get("aria-label")


def test_the_layer_menu_goes_to_a_layer_only_when_asked():
    """The >12-layer menu jumped on every change, so arrow keys on it threw a keyboard user from
    layer to layer: a form with a button now, which goes on submit only."""
    from dqnviz.report.render import environment

    template = environment().get_template("nvis.html.j2")
    layers = [{"name": f"conv{i}"} for i in range(14)]
    context = template.new_context({"layers": layers, "snapshot": "net"})
    nav = "".join(template.blocks["nav"](context))
    root = Tree(nav).root
    assert "onchange" not in nav
    (form,) = root.tags("form")
    (select,) = form.tags("select")
    assert select.attrs.get("aria-label") and len(select.tags("option")) == 15
    assert [b.attrs.get("type") for b in form.tags("button")] == ["submit"]
    assert "location.hash" in form.attrs.get("onsubmit", "")


def test_the_sticky_bar_never_covers_the_focused_element(plot_page):
    """A Shift+Tab onto an element at the top of the window left it under the sticky bar."""
    from tests.browser import open_report

    with open_report(plot_page, width=1200, height=700) as check:
        padding, bar = check.page.evaluate("""() => [parseFloat(getComputedStyle(document.documentElement).scrollPaddingTop),
            document.querySelector('.dq-nav').getBoundingClientRect().height]""")
        assert padding >= bar, (padding, bar)
        # brought into view from below (as Shift+Tab does), the charts' table switch lands clear of the bar
        top = check.page.evaluate("() => { const s = document.querySelector('#charts summary'); window.scrollTo(0, document.body.scrollHeight); "
                                  "s.scrollIntoView(); s.focus(); return s.getBoundingClientRect().top; }")
        assert top >= bar


# --- 6. tables ---------------------------------------------------------------------------------------

def test_every_header_cell_has_a_scope_and_a_name(nvis_page, compare_page, plot_page):
    for page in (nvis_page, compare_page, plot_page):
        heads = tree(page).tags("th")
        assert heads
        assert [th.all_text() for th in heads if not th.all_text().strip()] == [], page.name
        assert [th.all_text() for th in heads if th.attrs.get("scope") not in ("col", "row", "colgroup")] == [], page.name
