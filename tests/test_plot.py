"""``dqnviz plot``: statistics CSVs to an interactive page; bad inputs fail cleanly."""

import csv
import re
import os

import pytest

from dqnviz.report.plot import COLUMNS
from tests.helpers import run_cli


def write_stats(path, epochs=3, columns=COLUMNS, offset=0.0):
    """A small statistics CSV: epoch 0 random, then train and test rows per epoch."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        rows = [dict(epoch=0, phase="random", average_reward=-20.5 + offset, meanq=0.0)]
        for epoch in range(1, epochs + 1):
            rows.append(dict(epoch=epoch, phase="train", average_reward=-20 + 2 * epoch + offset, meanq=0.1 * epoch))
            rows.append(dict(epoch=epoch, phase="test", average_reward=-19 + 3 * epoch + offset, meanq=0.1 * epoch + 0.05))
        for row in rows:
            writer.writerow([row.get(c, 1.0 + i) for i, c in enumerate(columns)])
    return str(path)


def rewrite_stats(path, rows):
    """Write edited rows (dicts, as csv.DictReader read them) back over a statistics CSV."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_plot_page_draws_every_chart(tmp_path):
    from tests.browser import all_plots_drawn, open_report

    csv_path = write_stats(tmp_path / "pong.csv")
    out = tmp_path / "out" / "pong.html"
    assert run_cli(["plot", csv_path, "--out", str(out)]) == 0
    html = out.read_text()
    assert "Plotly.newPlot" in html and "cdn.plot.ly" not in html.split("</script>", 1)[1]
    with open_report(out) as check:
        plots, drawn = all_plots_drawn(check.page)
        assert plots == 1 and drawn == 1
        assert check.errors == [] and check.requests == []
        names = check.page.evaluate(
            "() => document.querySelector('.js-plotly-plot').data.map(t => t.name + ':' + t.x.length)")
        # 2 fields × (random, train, test), nr_games (equal in the train and test rows of this CSV:
        # one line) + meancost, which only the train phase measures
        assert len(names) == 9
        assert names[:3] == ["random:2", "train:3", "test:3"]
        assert names[-3:] == ["random:2", "train:3", "train:3"]
        subplots = check.page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout._subplots.cartesian.length")
        assert subplots == 4


def test_random_baseline_is_epoch_zero_random_row(tmp_path):
    from dqnviz.report.plot import build_figure, read_stats

    run = read_stats(write_stats(tmp_path / "pong.csv", epochs=4))
    figure = build_figure([run], ["average_reward"])
    random, train, test = figure.data
    assert list(random.y) == [-20.5, -20.5] and list(random.x) == [0, 4]
    assert list(train.x) == [1, 2, 3, 4] and list(train.y) == [-18, -16, -14, -12]
    assert list(test.y) == [-16, -13, -10, -7]


def test_no_score_baseline_when_no_random_game_ended(tmp_path):
    # 64 environments and 20,000 random steps: no game ends, and the row's -6.14 is a running score
    import csv

    from dqnviz.report.plot import build_figure, read_stats

    path = write_stats(tmp_path / "pong.csv", epochs=2)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0].update(nr_games="0", average_reward="-6.14", min_game_reward="-6.14", max_game_reward="-6.14")
    rewrite_stats(path, rows)
    run = read_stats(path)
    assert run.baseline("average_reward") is None
    assert run.baseline("meanq") is not None  # not a game score: still drawn
    assert [trace.name for trace in build_figure([run], ["average_reward"]).data] == ["train", "test"]


def test_several_runs_overlay_and_any_column(tmp_path):
    from tests.browser import all_plots_drawn, open_report

    a = write_stats(tmp_path / "pong.csv")
    b = write_stats(tmp_path / "pong_dueling.csv", epochs=2, offset=3)
    out = tmp_path / "both.html"
    assert run_cli(["plot", a, b, "--fields", "steps_per_second,average_reward", "--out", str(out)]) == 0
    with open_report(out) as check:
        assert tuple(all_plots_drawn(check.page)) == (1, 1)
        assert check.errors == []
        names = check.page.evaluate("() => document.querySelector('.js-plotly-plot').data.map(t => t.name)")
        assert "pong · test" in names and "pong_dueling · train" in names
        # steps_per_second is equal in the train and test rows of these CSVs: one line per run
        assert len(names) == 2 * (2 + 3)


def test_default_output_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_stats(tmp_path / "pong.csv")
    write_stats(tmp_path / "b.csv")
    write_stats(tmp_path / "c.csv")
    assert run_cli(["plot", "pong.csv"]) == 0
    assert (tmp_path / "reports" / "pong.html").is_file()
    assert run_cli(["plot", "pong.csv", "b.csv", "c.csv"]) == 0
    assert (tmp_path / "reports" / "pong_and_more.html").is_file()


def test_png_is_written(tmp_path, capsys):
    """tests/run.sh installs playwright and Chromium: --png must write the image (kaleido, when it
    is there, or headless Chromium), 1200 px wide at the figure's height."""
    import struct

    from tests.browser import close_shared_browser

    close_shared_browser()  # the renderer starts playwright's sync API itself, which cannot run twice at once
    csv_path = write_stats(tmp_path / "pong.csv")
    out = tmp_path / "pong.html"
    assert run_cli(["plot", csv_path, "--out", str(out), "--png"]) == 0
    assert out.is_file()
    captured = capsys.readouterr()
    png = (tmp_path / "pong.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk's size
    assert width == 1200 and height > 0
    assert f"wrote {tmp_path / 'pong.png'} (rendered with " in captured.out
    assert "no PNG written" not in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pong.csv", "pong.html", "pong.png"]  # no temporary left


def test_ctrl_c_while_the_png_renders_ends_in_one_line(tmp_path):
    """Ctrl-C at a terminal signals the whole process group: playwright's driver dies with the
    command, and what asyncio would say of the lost connection must not follow "interrupted".
    The driver kills Chromium before Chromium removes the folder it made in TMPDIR for its
    singleton socket (org.chromium.Chromium.XXXXXX): that folder must not be left behind."""
    import glob
    import signal
    import subprocess
    import sys
    import time

    csv_path = write_stats(tmp_path / "pong.csv")
    out = tmp_path / "pong.html"
    temporary = tmp_path / "tmp"  # the command's TMPDIR: what it, playwright and Chromium leave there shows
    temporary.mkdir()
    environment = dict(os.environ, PYTHONWARNINGS="ignore", TMPDIR=str(temporary))
    process = subprocess.Popen([sys.executable, "-m", "dqnviz", "plot", csv_path, "--out", str(out), "--png"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               env=environment, cwd=tmp_path)
    def driver_started():
        """Whether playwright's driver runs in the command's process group (it then starts Chromium)."""
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(stat[:-4] + "cmdline", "rb") as f:
                    command = f.read()
            except OSError:
                continue
            if int(fields[2]) == process.pid and b"run-driver" in command:  # fields[2]: the process group
                return True
        return False

    deadline = time.monotonic() + 120
    while not driver_started() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the page is written first, then the PNG's renderer starts
    assert process.poll() is None, "the command ended before playwright's driver started"
    def chromium_started():
        """Whether Chromium has made its singleton socket's folder (in TMPDIR, however deep)."""
        return bool(glob.glob(str(temporary / "**" / "org.chromium.Chromium.*"), recursive=True))

    while not chromium_started() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the command ended before Chromium started"
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the command and its children
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, (stdout, stderr)
    assert stderr.decode().strip() == "dqnviz plot: interrupted"
    assert not (tmp_path / "pong.png").exists()
    assert [p.name for p in temporary.iterdir()] == []  # no org.chromium.Chromium.XXXXXX, nor anything else


def test_png_without_a_renderer_is_clearly_explained(tmp_path, capsys, monkeypatch):
    """With neither kaleido nor Chromium at hand the page is still written, one line says why
    there is no PNG and how to get one, and the command fails (exit 1)."""
    import plotly.graph_objects as go

    from dqnviz.report import plot

    def no_kaleido(*args, **kwargs):
        raise ValueError("Image export using the \"kaleido\" engine requires the kaleido package")

    def no_chromium(*args, **kwargs):
        raise RuntimeError("Executable doesn't exist at /nowhere/chromium")

    monkeypatch.setattr(go.Figure, "write_image", no_kaleido)
    monkeypatch.setattr(plot, "_chromium_png", no_chromium)
    csv_path = write_stats(tmp_path / "pong.csv")
    out = tmp_path / "pong.html"
    assert run_cli(["plot", csv_path, "--out", str(out), "--png"]) == 1  # asked for and not made: a failure
    assert out.is_file() and not (tmp_path / "pong.png").exists()
    captured = capsys.readouterr()
    assert captured.out.strip() == f"wrote {out}"
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dqnviz plot: no PNG written: no static image renderer is available")
    assert "plotly: Image export using the" in err and "headless Chromium: Executable doesn't exist" in err
    assert "pip install kaleido" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pong.csv", "pong.html"]


def _bad(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("missing", "not found"),
    ("empty", "is empty"),
    ("header_only", "no rows"),
    ("no_phase", "lacks the column phase"),
    ("unknown_field", "unknown field bogus"),
    ("two_unknown", "unknown fields bogus, nope"),
    ("folder", "is a folder"),
    ("x_axis_field", "--fields epoch: it is the x axis (--x epoch), so its chart would be a diagonal"),
    ("steps_x_axis_field", "--fields total_train_steps: it is the x axis (--x steps)"),
    ("html_page", "page.html is not a statistics CSV (it is not even a valid CSV file: field larger than field limit"),
])
def test_bad_inputs_fail_and_write_nothing(tmp_path, capsys, case, message):
    good = write_stats(tmp_path / "good.csv")
    args = {
        "missing": [str(tmp_path / "nope.csv")],
        "empty": [_bad(tmp_path, "empty.csv", "")],
        "header_only": [_bad(tmp_path, "head.csv", ",".join(COLUMNS) + "\n")],
        "no_phase": [_bad(tmp_path, "nophase.csv", "epoch,average_reward\n0,1\n")],
        "unknown_field": [good, "--fields", "average_reward,bogus"],
        "two_unknown": [good, "--fields", "bogus,nope"],
        "folder": [str(tmp_path)],
        "x_axis_field": [good, "--fields", "epoch"],
        "steps_x_axis_field": [good, "--fields", "total_train_steps", "--x", "steps"],
        "html_page": [_bad(tmp_path, "page.html", "<html>" + "x" * 200_000 + "</html>")],
    }[case]
    out = tmp_path / "out.html"
    before = set(os.listdir(tmp_path))
    code = run_cli(["plot", *args, "--out", str(out)])
    assert code != 0
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert set(os.listdir(tmp_path)) == before


def test_missing_field_in_one_of_several_csvs(tmp_path, capsys):
    a = write_stats(tmp_path / "a.csv")
    b = write_stats(tmp_path / "b.csv", columns=[c for c in COLUMNS if c != "meancost"])
    out = tmp_path / "x.html"
    assert run_cli(["plot", a, b, "--out", str(out), "--fields", "average_reward,meancost"]) == 2  # asked for
    err = capsys.readouterr().err
    assert "meancost" in err and "b.csv" in err
    assert not out.exists()
    assert run_cli(["plot", a, b, "--out", str(out)]) == 0  # a default chart: left out, with a note
    assert capsys.readouterr().err.strip() == f"dqnviz plot: left out the default chart meancost: {b} lacks that column"
    assert out.exists()


def test_best_test_score_says_how_many_games_it_averages(tmp_path):
    """An in-training test phase of one game can top the table by luck: the label says so."""
    from dqnviz.report.plot import build_context, build_figure, read_stats

    path = write_stats(tmp_path / "pong.csv", epochs=3)  # test scores -16, -13, -10: epoch 3 is best
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    labels = []
    for games in ("1", "0", "12"):
        rows[-1]["nr_games"] = games
        rewrite_stats(path, rows)
        run = read_stats(path)
        best = build_context([run], ["average_reward"], build_figure([run], ["average_reward"]))["runs"][0]["best"]
        labels.append((best["score"], best["label"]))
    # no game ended in epoch 3's test phase: its -10 is a running score, so epoch 2 (-13) is the best
    assert labels == [(-10, "epoch 3, 1 game"), (-13, "epoch 2, 4 games"), (-10, "epoch 3, 12 games")]


def test_a_best_test_phase_of_few_games_says_so_in_visible_text(tmp_path):
    """Not only in a tooltip: the header that names the best test phase says it averaged few games."""
    import re

    path = write_stats(tmp_path / "pong.csv", epochs=3)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    visible = {}
    for games in ("1", "30"):
        rows[-1]["nr_games"] = games
        rewrite_stats(path, rows)
        out = tmp_path / f"{games}.html"
        assert run_cli(["plot", path, "--out", str(out)]) == 0
        page = re.sub(r"<script.*?</script>|<[^>]+>", " ", out.read_text(), flags=re.S)  # text only, no title=""
        visible[games] = " ".join(page.split())
    assert "(epoch 3, 1 game) — few games" in visible["1"]
    assert "(epoch 3, 30 games)" in visible["30"] and "few games" not in visible["30"]


def test_meanq_is_titled_by_the_states_it_is_measured_on():
    from dqnviz.report.plot import TITLES

    assert TITLES["meanq"] == "mean max Q over fixed validation states"


def test_the_modebar_never_covers_the_legend(tmp_path):
    """Plotly draws its modebar at the top right on hover; many runs make a legend long enough to reach it."""
    from tests.browser import open_report

    paths = [write_stats(tmp_path / f"run_with_a_long_name_{i}.csv", offset=i) for i in range(4)]
    out = tmp_path / "runs.html"
    assert run_cli(["plot", *paths, "--out", str(out)]) == 0
    with open_report(out) as check:
        legend, modebar = check.page.evaluate(
            """() => ['.legend', '.modebar'].map(s => {
                   const r = document.querySelector(s).getBoundingClientRect();
                   return [r.left, r.top, r.right, r.bottom]; })""")
        assert modebar[2] > modebar[0] and legend[2] > legend[0]
        apart = legend[0] >= modebar[2] or modebar[0] >= legend[2] or legend[1] >= modebar[3] or modebar[1] >= legend[3]
        assert apart, (legend, modebar)


def test_the_same_csv_twice_is_drawn_once(tmp_path, capsys, monkeypatch):
    from dqnviz.report import plot

    monkeypatch.chdir(tmp_path)
    write_stats(tmp_path / "pong.csv")
    drawn = []
    original = plot.render_page
    monkeypatch.setattr(plot, "render_page", lambda runs, fields, **options: drawn.append([r.name for r in runs])
                        or original(runs, fields, **options))
    assert run_cli(["plot", "pong.csv", str(tmp_path / "pong.csv"), "./pong.csv", "--out", "p.html"]) == 0
    assert drawn == [["pong"]]
    assert "2 CSV files were given twice, drawn once" in capsys.readouterr().err


def test_two_runs_of_one_name_are_told_apart_by_their_folders(tmp_path, monkeypatch):
    from dqnviz.report import plot

    monkeypatch.chdir(tmp_path)
    for run in ("runA", "runB"):
        (tmp_path / run / "reports").mkdir(parents=True)
        write_stats(tmp_path / run / "reports" / "pong.csv")
    write_stats(tmp_path / "breakout.csv")
    drawn = []
    original = plot.render_page
    monkeypatch.setattr(plot, "render_page", lambda runs, fields, **options: drawn.append([r.name for r in runs])
                        or original(runs, fields, **options))
    assert run_cli(["plot", "runA/reports/pong.csv", str(tmp_path / "runB/reports/pong.csv"), "breakout.csv",
                    "--out", "p.html"]) == 0
    assert drawn == [["runA/reports/pong", "runB/reports/pong", "breakout"]]  # only the folders it takes
    page = (tmp_path / "p.html").read_text()
    assert "runA/reports/pong" in page and "runB/reports/pong" in page


def test_a_last_line_cut_short_is_left_out_and_said(tmp_path, capsys):
    from dqnviz.report.plot import read_stats

    path = write_stats(tmp_path / "pong.csv")
    whole = read_stats(path)
    text = open(path, newline="").read()
    cut_at = text.rstrip("\r\n").rfind(",", 0, len(text.rstrip("\r\n")) - 10)
    open(path, "w", newline="").write(text[:cut_at])  # the last row stops mid-way, without its line end
    run = read_stats(path)
    assert run.rows == whole.rows[:-1] and run.cut_line[0] == len(whole.rows) + 1
    assert run_cli(["plot", path, "--out", str(tmp_path / "p.html")]) == 0
    err = capsys.readouterr().err
    assert f"line {len(whole.rows) + 1} is cut short ({run.cut_line[1]} of {len(whole.columns)} values, no line end): " \
           "left out" in err
    open(path, "w", newline="").write(text[:cut_at] + "\r\n")  # a short row that ends its line is no cut: refused
    assert run_cli(["plot", path, "--out", str(tmp_path / "p.html")]) != 0
    assert f"line {len(whole.rows) + 1}: {run.cut_line[1]} values for {len(whole.columns)} columns" in capsys.readouterr().err


def test_cells_that_are_not_numbers_are_gaps_and_reported(tmp_path, capsys):
    from dqnviz.report.plot import read_stats

    path = write_stats(tmp_path / "pong.csv")
    rows = list(csv.DictReader(open(path)))
    rows[1]["meanq"], rows[2]["meanq"], rows[3]["meancost"] = "abc", "1e999", "nan"  # nan: a diverged run's mark
    rewrite_stats(path, rows)
    run = read_stats(path)
    assert run.unreadable == [(3, "meanq", "abc"), (4, "meanq", "1e999")]
    epochs, values = run.series("test", "meanq")
    assert values[0] != values[0] and epochs == [1, 2, 3]  # the infinite cell is a gap (NaN), not a spike
    assert run_cli(["plot", path, "--out", str(tmp_path / "p.html")]) == 0
    err = capsys.readouterr().err
    assert "line 3: meanq 'abc' is not a finite number, left out of the charts (and 1 more)" in err


def _traces(figure, field_index=None):
    """``{name: trace}`` of a figure (of one subplot's traces when ``field_index`` is given)."""
    axis = None if field_index is None else ("x" if field_index == 0 else f"x{field_index + 1}")
    return {t.name: t for t in figure.data if axis is None or (t.xaxis or "x") == axis}


def test_a_phase_where_no_game_ended_is_not_drawn_as_a_game_score(tmp_path):
    """nr_games 0: the trainer writes the running score of an unfinished game. It is marked apart
    (an open circle), left out of the line, and never the best test phase."""
    from dqnviz.report.plot import build_context, build_figure, read_stats

    path = write_stats(tmp_path / "pong.csv", epochs=3)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[4].update(nr_games="0", average_reward="25", max_game_reward="25")  # epoch 2 test: 25 so far
    rewrite_stats(path, rows)
    run = read_stats(path)
    assert run.series("test", "average_reward") == ([1, 3], [-16, -10])
    assert run.series("test", "meanq")[0] == [1, 2, 3]  # not a game score: still drawn
    assert run.unfinished("test", "average_reward") == ([2], [25])
    figure = build_figure([run], ["average_reward", "max_game_reward", "meanq"])
    traces = _traces(figure, 0)
    assert list(traces["test"].y) == [-16, -10]
    marked = traces["test: no game ended (score so far)"]
    assert list(marked.x) == [2] and list(marked.y) == [25] and marked.mode == "markers"
    assert [t.showlegend for t in figure.data if t.name.startswith("test: no game")] == [True, False]
    best = build_context([run], ["average_reward"], figure)["runs"][0]["best"]
    assert best["score"] == -10 and best["label"].startswith("epoch 3")


def test_train_and_test_rows_with_equal_values_are_one_line(tmp_path):
    """meanq is measured after each phase and the test phase does not learn: the test row repeats
    the train row's value, and a test line drawn over the train line would hide it."""
    from dqnviz.report.plot import build_figure, read_stats

    path = write_stats(tmp_path / "pong.csv", epochs=3)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for train, test in zip(rows[1::2], rows[2::2]):
        test["meanq"] = train["meanq"]
    rewrite_stats(path, rows)
    figure = build_figure([read_stats(path)], ["average_reward", "meanq"])
    assert sorted(_traces(figure, 0)) == ["random", "test", "train"]
    meanq = [t for t in figure.data if t.xaxis == "x2"]
    assert [t.name for t in meanq] == ["random", "train"]
    assert "train = test" in meanq[1].hovertemplate and list(meanq[1].y) == [0.1, 0.2, 0.30000000000000004]


def test_every_phase_has_a_legend_entry_whichever_chart_comes_first(tmp_path):
    """meancost (train only) first: the test phase still gets its legend entry, from the next chart."""
    from dqnviz.report.plot import build_figure, read_stats

    figure = build_figure([read_stats(write_stats(tmp_path / "pong.csv"))], ["meancost", "average_reward"])
    assert sorted(t.name for t in figure.data if t.showlegend) == ["random", "test", "train"]


def test_no_two_runs_look_alike(tmp_path):
    """Ten or more runs: the colours repeat, so the marker shape tells those runs apart."""
    from dqnviz.report.plot import RUN_COLOURS, build_figure, read_stats

    runs = [read_stats(write_stats(tmp_path / f"run{i}.csv", offset=i)) for i in range(len(RUN_COLOURS) + 3)]
    figure = build_figure(runs, ["average_reward"])
    styles = {}
    for trace in figure.data:
        if trace.name.endswith("· test"):
            styles[trace.name] = (trace.line.color, trace.marker.symbol)
    assert len(styles) == len(runs) and len(set(styles.values())) == len(runs)
    assert len({colour for colour, _ in styles.values()}) == len(RUN_COLOURS)


def test_an_empty_chart_says_why(tmp_path):
    """Only the random row so far: meancost has nothing to draw, and its chart (not another) says so."""
    from dqnviz.report.plot import build_figure, read_stats

    path = tmp_path / "one.csv"
    path.write_text(",".join(COLUMNS) + "\n0,random,20000,20,-20.25,-21,-18,1,0,20000,-0.08,0,0,5.8,5.8,3574\n")
    run = read_stats(path)
    for columns in (None, 1):
        figure = build_figure([run], ["average_reward", "meanq", "nr_games", "meancost"], columns=columns)
        (note,) = [a for a in figure.layout.annotations if "no train phase" in a.text]
        x_domain, y_domain = figure.layout.xaxis4.domain, figure.layout.yaxis4.domain
        assert note.xref == "paper" and x_domain[0] < note.x < x_domain[1] and y_domain[0] < note.y < y_domain[1]


def _boxes(page, selector):
    return page.evaluate("""(s) => Array.from(document.querySelectorAll(s)).map(e => {
        const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })""", selector)


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_narrow_windows_get_one_column_and_nothing_overlaps(tmp_path):
    """At 800 px two columns and a legend beside them do not fit: the titles ran into each other and
    the right column's axis title into the left chart. The page switches to one column there."""
    from tests.browser import open_report

    paths = [write_stats(tmp_path / f"pong-64envs-batch64-run{i}.csv", offset=i) for i in range(3)]
    out = tmp_path / "runs.html"
    assert run_cli(["plot", *paths, "--fields", "average_reward,meanq,nr_games,last_exploration_rate",
                    "--out", str(out)]) == 0
    for width, layout in ((800, "narrow"), (1400, "wide")):
        with open_report(out, width=width) as check:
            page = check.page
            assert page.evaluate("() => document.getElementById('stats-plot').dataset.layout") == layout
            assert page.evaluate("() => document.documentElement.scrollWidth") <= width
            titles = _boxes(page, ".infolayer .annotation")
            assert len(titles) == 4
            assert not any(_overlap(a, b) for i, a in enumerate(titles) for b in titles[i + 1:]), titles
            plots = _boxes(page, ".draglayer .nsewdrag")
            ytitles = _boxes(page, ".infolayer [class^='g-y'][class$='title']")
            assert len(plots) == 4 and len(ytitles) >= 4
            for title in ytitles:
                assert not any(_overlap(title, plot) for plot in plots), (title, plots)
            legend = _boxes(page, ".legend")[0]
            assert not any(_overlap(legend, plot) for plot in plots)
            columns = {round(plot[0]) for plot in plots}
            assert len(columns) == (1 if layout == "narrow" else 2)


def test_a_long_legend_is_not_scrolled(tmp_path):
    """Nine runs make 27 legend entries: the figure grows so that none is hidden behind a scroll bar."""
    from tests.browser import open_report

    paths = [write_stats(tmp_path / f"run{i}.csv", offset=i) for i in range(9)]
    out = tmp_path / "runs.html"
    assert run_cli(["plot", *paths, "--out", str(out)]) == 0
    for width in (800, 1400):
        with open_report(out, width=width) as check:
            entries, height, shown = check.page.evaluate("""() => { const legend = document.getElementById('stats-plot')._fullLayout.legend;
                return [document.querySelectorAll('.legend .traces').length, legend._height, legend._effHeight]; }""")
            assert entries == 27 and shown >= height


def test_a_phones_legend_of_long_run_names_stays_inside_the_page(tmp_path):
    from tests.browser import open_report

    paths = [write_stats(tmp_path / f"pong-64envs-batch64-lr{i}e-4.csv", offset=i) for i in range(4)]
    out = tmp_path / "runs.html"
    assert run_cli(["plot", *paths, "--out", str(out)]) == 0
    with open_report(out, width=390) as check:
        width = check.page.evaluate("() => document.documentElement.clientWidth")
        entries = _boxes(check.page, "#stats-plot .legend .traces")
        assert len(entries) == 12 and all(right <= width for _, _, right, _ in entries), (width, entries)


def test_the_modebar_leaves_the_chart_titles_alone_with_one_legend_entry(tmp_path):
    from tests.browser import open_report

    path = tmp_path / "one.csv"
    path.write_text(",".join(COLUMNS) + "\n0,random,20000,20,-20.25,-21,-18,1,0,20000,-0.08,0,0,5.8,5.8,3574\n")
    out = tmp_path / "one.html"
    assert run_cli(["plot", str(path), "--out", str(out)]) == 0
    with open_report(out) as check:
        check.page.hover("#stats-plot .nsewdrag")  # the modebar shows on hover
        modebar = _boxes(check.page, ".modebar")[0]
        titles = _boxes(check.page, ".infolayer .annotation")
        assert titles and not any(_overlap(modebar, title) for title in titles), (modebar, titles)


def test_the_modebar_leaves_the_chart_titles_alone_without_a_legend(tmp_path):
    """No chart has a line yet, so there is no legend: the modebar still gets its strip above the
    titles (it used to get one only above a legend, and the page forced a legend on to have it)."""
    from tests.browser import open_report

    path = tmp_path / "start.csv"  # the random phase so far: no game ended, no meanq yet
    path.write_text(",".join(COLUMNS) + "\n0,random,20000,0,-6.1,-6.1,-6.1,1,0,20000,,0,0,5.8,5.8,3574\n")
    out = tmp_path / "start.html"
    assert run_cli(["plot", str(path), "--fields", "average_reward,meanq,meancost", "--out", str(out)]) == 0
    with open_report(out) as check:
        assert check.page.evaluate("() => document.getElementById('stats-plot').data.length") == 0
        assert _boxes(check.page, ".legend") == []
        check.page.hover("#stats-plot .svg-container")  # the modebar shows on hover
        modebar = _boxes(check.page, ".modebar")[0]
        titles = _boxes(check.page, ".infolayer .annotation")
        assert len(titles) == 6 and modebar[2] > modebar[0]  # 3 subplot titles, 3 "nothing to draw" notes
        assert not any(_overlap(modebar, title) for title in titles), (modebar, titles)


def test_the_page_is_ready_only_once_its_charts_are_drawn(tmp_path):
    """tests/browser.py waits for window.dqnvizPageReady: base.html.j2's lazy figure helpers set it
    once plotly.js is loaded, which on this page would be before the charts are drawn."""
    from tests.browser import open_report

    out = tmp_path / "pong.html"
    assert run_cli(["plot", write_stats(tmp_path / "pong.csv"), "--out", str(out)]) == 0
    watch = """(() => { let ready; window.dqnvizReadyWith = [];
        Object.defineProperty(window, "dqnvizPageReady", { configurable: true, get: () => ready, set: (value) => {
            const plot = document.getElementById("stats-plot");
            window.dqnvizReadyWith.push([value, plot ? plot.querySelectorAll(".main-svg .scatterlayer .trace").length : -1]);
            ready = value; } }); })();"""
    with open_report(out, init_script=watch) as check:
        assert check.page.evaluate("() => window.dqnvizReadyWith") == [[True, 9]]
        assert check.errors == []


def test_plot_page_is_built_on_the_shared_report_shell(tmp_path):
    """plot.html.j2 extends base.html.j2, as the nvis and compare pages do: the same top bar, style
    sheet and explanation box, and plotly.js embedded once."""
    from dqnviz.report.render import render

    out = tmp_path / "pong.html"
    assert run_cli(["plot", write_stats(tmp_path / "pong.csv"), "--out", str(out)]) == 0
    html = out.read_text()
    assert render("_style.css.j2").strip() in html
    assert '<nav class="dq-nav"><span class="brand">dqnviz</span>' in html and '<a href="#charts">charts</a>' in html
    assert '<meta name="generator" content="dqnviz">' in html and '<div class="explain x-axis">' in html
    assert html.count('id="dq-plotly-js"') == 1 and html.count("<html") == 1 and html.count("<style>") == 1
    assert 'id="stats-plot"' in html and "window.dqnvizPlotly.layout(" in html


def test_the_narrow_layout_is_drawn_with_the_wide_layouts_traces(tmp_path, monkeypatch):
    """The traces are built once, for both layouts: chart i has the axes x{i+1}, y{i+1} in either grid."""
    import json

    from dqnviz.report import plot

    runs = [plot.read_stats(write_stats(tmp_path / f"run{i}.csv", offset=i)) for i in range(3)]
    fields = ["average_reward", "meanq", "nr_games"]  # three: the wide grid has an empty fourth cell
    built = []
    chart_traces = plot.chart_traces
    monkeypatch.setattr(plot, "chart_traces", lambda *args, **options: built.append(1) or chart_traces(*args, **options))
    figure, narrow = plot.build_figures(runs, fields, x="steps")
    assert len(built) == 1
    assert figure.to_json() == plot.build_figure(runs, fields, x="steps").to_json()
    assert narrow.to_json() == plot.build_figure(runs, fields, columns=1, x="steps").layout.to_json()
    wide, one_column = figure.layout.to_plotly_json(), narrow.to_plotly_json()
    for trace in figure.data:
        for axis in ("xaxis" + trace.xaxis[1:], "yaxis" + trace.yaxis[1:]):
            assert axis in wide and axis in one_column
    assert len({trace.xaxis for trace in figure.data}) == 3
    assert one_column["legend"]["x"] == 0 and wide["legend"]["x"] > 1  # under the charts, beside them
    # the page carries the template once: the narrow layout takes the wide one's
    context = plot.build_context(runs, fields, figure, narrow, x="steps")
    page_layout = json.loads(context["narrow_layout_json"])
    assert "template" not in page_layout and "template" in json.loads(context["figure_json"])["layout"]
    assert page_layout == {k: v for k, v in json.loads(narrow.to_json()).items() if k != "template"}


def test_score_lists_of_dqnviz_test_are_left_out_of_a_glob(tmp_path, capsys, monkeypatch):
    """reports/ holds dqnviz test's <snapshot>_test.csv beside the statistics: reports/*.csv must work."""
    monkeypatch.chdir(tmp_path)
    write_stats(tmp_path / "pong.csv")
    (tmp_path / "pong_6_test.csv").write_text("episode,score,frames\n1,20.0,7952\n2,17.0,8652\n")
    assert run_cli(["plot", "pong.csv", "pong_6_test.csv"]) == 0
    err = capsys.readouterr().err
    assert "left out 1 CSV file of dqnviz test game scores" in err and "pong_6_test.csv" in err
    assert (tmp_path / "reports" / "pong.html").is_file()
    assert run_cli(["plot", "pong_6_test.csv", "--out", "x.html"]) == 2
    err = capsys.readouterr().err
    assert "game scores that dqnviz test writes" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.html").exists()


def test_epochs_of_different_lengths_are_pointed_out(tmp_path):
    """One epoch of a 1M-step run is twenty of a 50k-step run: the page says so above the charts."""
    import re

    short = write_stats(tmp_path / "pong.csv")
    long = write_stats(tmp_path / "pong-h100.csv")
    with open(long, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["steps"] = "1000064" if row["phase"] == "train" else row["steps"]
    rewrite_stats(long, rows)
    out = tmp_path / "both.html"
    assert run_cli(["plot", short, long, "--out", str(out)]) == 0
    text = " ".join(re.sub(r"<script.*?</script>|<[^>]+>", " ", out.read_text(), flags=re.S).split())
    assert "epochs differ in length" in text and "pong-h100 1,000,064" in text
    assert run_cli(["plot", short, write_stats(tmp_path / "again.csv"), "--out", str(out)]) == 0
    assert "epochs differ in length" not in out.read_text()


def write_timed_stats(path, epochs=3, steps_per_epoch=50_000, seconds_per_epoch=400.0):
    """A statistics CSV whose step counter and clock move as a run's do: the random phase at 0
    steps, each test row after its train row in time. The test rows' total_train_steps are left
    empty, so that only their epoch's train row can place them on a steps axis."""
    path = write_stats(path, epochs=epochs)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        epoch = int(row["epoch"])
        if row["phase"] == "random":
            row.update(total_train_steps="0", total_time="6.0")
        elif row["phase"] == "train":
            row.update(total_train_steps=str(epoch * steps_per_epoch), total_time=str(epoch * seconds_per_epoch))
        else:
            row.update(total_train_steps="", total_time=str(epoch * seconds_per_epoch + 30))
    rows[-1].update(nr_games="0")  # the last test phase ended no game: an open circle
    rewrite_stats(path, rows)
    return path, rows


@pytest.mark.parametrize("x", ["epoch", "steps", "minutes"])
def test_x_axis_choice_places_every_point_at_its_column(tmp_path, x):
    """--x epoch|steps|minutes: each point sits at its row's epoch, its epoch's train row's
    total_train_steps (a test row learns nothing), or its row's total_time in minutes."""
    from dqnviz.report.plot import X_AXES, build_figure, read_stats

    path, rows = write_timed_stats(tmp_path / "pong.csv")
    train_steps = {r["epoch"]: float(r["total_train_steps"]) for r in rows if r["phase"] == "train"}

    def place(row):
        if x == "epoch":
            return float(row["epoch"])
        if x == "minutes":
            return float(row["total_time"]) / 60
        return 0.0 if row["phase"] == "random" else train_steps[row["epoch"]]

    trains = [r for r in rows if r["phase"] == "train"]
    tests = [r for r in rows if r["phase"] == "test"]
    figure = build_figure([read_stats(path)], ["average_reward", "meanq"], x=x)
    traces = _traces(figure, 0)
    assert list(traces["train"].x) == [place(r) for r in trains]
    assert list(traces["test"].x) == [place(r) for r in tests[:-1]]
    assert list(traces["test: no game ended (score so far)"].x) == [place(tests[-1])]
    last = max(place(r) for r in rows)
    assert list(traces["random"].x) == ([0, last] if x != "epoch" else [0, 3])
    assert list(_traces(figure, 1)["test"].x) == [place(r) for r in tests]  # meanq: every test row
    for axis in (figure.layout.xaxis, figure.layout.xaxis2):
        assert axis.title.text == X_AXES[x]["title"]
    assert X_AXES[x]["column"] in X_AXES[x]["title"] or x == "epoch"
    # the hover says where a point is in all three terms, the x axis's first
    test = traces["test"]
    assert [list(d) for d in test.customdata] == [[float(r["epoch"]), train_steps[r["epoch"]],
                                                   float(r["total_time"]) / 60] for r in tests[:-1]]
    where = {"epoch": "epoch %{x}", "steps": "after %{x:,.0f} training steps",
             "minutes": "%{x:,.1f} min into the run"}[x]
    assert where in test.hovertemplate and where in traces["test: no game ended (score so far)"].hovertemplate


def test_x_axis_titles_and_page_text_follow_the_choice(tmp_path):
    import re

    path, _ = write_timed_stats(tmp_path / "pong.csv")
    texts, axes = {}, {}
    for x in ("epoch", "steps", "minutes"):
        out = tmp_path / f"{x}.html"
        assert run_cli(["plot", path, "--x", x, "--out", str(out)]) == 0
        html = out.read_text()
        texts[x] = " ".join(re.sub(r"<script.*?</script>|<[^>]+>", " ", html, flags=re.S).split())
        axes[x] = set(re.findall(r'"title":\{"text":"([^"]*)"\}', html))
    assert "4 fields against epoch" in texts["epoch"] and "against the epoch" in texts["epoch"]
    assert "4 fields against agent steps trained" in texts["steps"]
    assert "against the agent steps trained so far" in texts["steps"] and "at 0 steps" in texts["steps"]
    assert "4 fields against wall-clock minutes" in texts["minutes"]
    assert "against the wall-clock minutes since the run started" in texts["minutes"]
    assert "--x steps" in texts["minutes"]  # time is not training: where to compare by training
    assert axes["epoch"] >= {"epoch"} and not any("minutes" in a or "steps" in a for a in axes["epoch"])
    assert "agent steps trained (total_train_steps)" in axes["steps"] and "epoch" not in axes["steps"]
    assert "minutes since the run started (wall clock, total_time)" in axes["minutes"] and "epoch" not in axes["minutes"]


def test_epochs_of_different_lengths_suggest_steps_on_the_x_axis(tmp_path):
    """By epoch, the note points to --x steps; by steps there is nothing to point out."""
    import re

    short, _ = write_timed_stats(tmp_path / "pong.csv")
    long, _ = write_timed_stats(tmp_path / "pong-h100.csv", steps_per_epoch=1_000_064, seconds_per_epoch=300)
    with open(long, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["steps"] = "1000064" if row["phase"] == "train" else row["steps"]
    rewrite_stats(long, rows)
    notes = {}
    for x in ("epoch", "steps", "minutes"):
        out = tmp_path / f"{x}.html"
        assert run_cli(["plot", short, long, "--x", x, "--out", str(out)]) == 0
        html = out.read_text()
        text = " ".join(re.sub(r"<script.*?</script>|<[^>]+>", " ", html, flags=re.S).split())
        notes[x] = "The runs' epochs differ in length" in text
        assert notes[x] == ('class="note epoch-lengths"' in html)
        if x == "epoch":
            assert "pong-h100 1,000,064" in text and "dqnviz plot … --x steps" in text
    assert notes == {"epoch": True, "steps": False, "minutes": False}


@pytest.mark.parametrize("argv, message", [
    (["--x", "hours"], "dqnviz plot: error: --x: invalid choice: 'hours' (choose from"),
    (["--x", "Steps"], "--x: invalid choice: 'Steps'"),
    (["--x"], "--x: expected one argument"),
])
def test_a_bad_x_axis_is_a_one_line_usage_error(tmp_path, capsys, argv, message):
    path, _ = write_timed_stats(tmp_path / "pong.csv")
    out = tmp_path / "out.html"
    assert run_cli(["plot", path, "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_an_x_axis_column_the_csv_lacks_is_a_clear_error(tmp_path, capsys):
    path = write_stats(tmp_path / "old.csv", columns=[c for c in COLUMNS if c != "total_time"])
    out = tmp_path / "out.html"
    assert run_cli(["plot", path, "--x", "minutes", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--x minutes needs the column total_time" in err and "old.csv" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert run_cli(["plot", path, "--x", "steps", "--out", str(out)]) == 0  # it has total_train_steps


def write_sittings(path, epochs=4, resume_at=None, edit=None):
    """A statistics CSV with counters as ``dqnviz train`` writes them: one sitting, or (``resume_at``) a
    second sitting from that epoch on whose snapshot predates the update count (weight_updates start
    again), after a refill of the replay memory (30 s of total_time in no phase, and a smaller
    replay). ``edit(rows)`` changes the rows (dicts) before they are written."""
    rows = [dict(epoch=0, phase="random", steps=500, nr_games=2, average_reward=-20.5, min_game_reward=-21,
                 max_game_reward=-20, last_exploration_rate=1.0, total_train_steps=0, replay_memory_count=500,
                 meanq=-0.1, meancost=0.0, weight_updates=0, total_time=5.0, epoch_time=5.0, steps_per_second=100)]
    time, updates, trained, replay = 5.0, 0, 0, 500
    for epoch in range(1, epochs + 1):
        if epoch == resume_at:
            time, updates, replay = time + 30.0, 0, 300  # the refill, a restarted count, an emptied replay
        start = time + 0.2  # the snapshot written between epochs
        updates, trained, replay = updates + 125, trained + 1000, min(replay + 1000, 2000)
        common = dict(epoch=epoch, last_exploration_rate=0.1, total_train_steps=trained, replay_memory_count=replay,
                      meanq=0.1 * epoch + (1 if resume_at and epoch >= resume_at else 0), weight_updates=updates)
        rows.append(dict(common, phase="train", steps=1000, nr_games=5, average_reward=-15 + epoch,
                         min_game_reward=-19, max_game_reward=-10 + epoch, meancost=0.01,
                         total_time=round(start + 100, 2), epoch_time=100.0, steps_per_second=10))
        games = epoch if epoch < 4 else 7  # the test phase's games: 1, 2, 3, then 7
        rows.append(dict(common, phase="test", steps=200, nr_games=games, average_reward=-12 + epoch,
                         min_game_reward=-14 + epoch, max_game_reward=-12 + epoch + (games > 1), meancost=0.0,
                         total_time=round(start + 110, 2), epoch_time=110.0, steps_per_second=20))
        time = start + 110
    if edit:
        edit(rows)
    rewrite_stats(path, rows)
    return str(path)


def _resume_lines(figure):
    return [(s.xref, s.yref, s.x0) for s in figure.layout.shapes if s.type == "line" and s.line.dash == "dot"]


def test_a_resumed_run_is_marked_on_every_chart_and_in_the_notes(tmp_path):
    """pong.csv's meanq jumps at epoch 18 because the run was resumed there: the page said nothing, and
    the jump read as a learning event. Each chart marks the resume, where the CSV shows one, and the
    notes say how the CSV shows it."""
    import re

    from dqnviz.report.plot import build_figure, read_stats

    run = read_stats(write_sittings(tmp_path / "pong.csv", epochs=5, resume_at=3))
    assert [r.epoch for r in run.resumes()] == [3]
    signs = " ".join(run.resumes()[0].signs)
    assert "weight_updates start again (250 → 125)" in signs and "replay_memory_count falls (2,000 → 1,300" in signs
    assert "total_time grows 30 s" in signs
    fields = ["average_reward", "meanq", "nr_games", "meancost"]
    for x, place in (("epoch", 2.5), ("steps", 2000), ("minutes", 225.4 / 60)):
        figure = build_figure([run], fields, x=x)
        lines = _resume_lines(figure)
        # every chart, across its height, where the earlier sitting stopped (by epoch: between the two)
        assert sorted(lines) == sorted((f"x{a}", f"y{a} domain", pytest.approx(place)) for a in ("", 2, 3, 4)), (x, lines)
        labels = [a for a in figure.layout.annotations if a.text == "resumed"]
        assert len(labels) == 4 and all("before epoch 3" in a.hovertext for a in labels)
    out = tmp_path / "pong.html"
    assert run_cli(["plot", str(run.path), "--out", str(out)]) == 0
    text = " ".join(re.sub(r"<script.*?</script>|<[^>]+>", " ", out.read_text(), flags=re.S).split())
    assert "A run was resumed" in text and "pong before epoch 3: weight_updates start again" in text
    assert "a step in a curve at the line (in meanq especially) can come from the resume" in text


def test_a_refill_row_marks_the_resume_without_guessing(tmp_path):
    """The trainer writes a ``refill`` row when a resumed run refills its replay memory: that row marks
    the resume (even where no counter shows it, as on a fast machine whose replay memory refills full),
    and is not drawn as a point of any phase."""
    from dqnviz.report.plot import build_figure, read_stats

    def refill(rows):  # a resume at epoch 3 that no counter shows, but for the refill row before it
        at = next(i for i, row in enumerate(rows) if row["epoch"] == 3)
        rows.insert(at, dict(rows[at - 1], phase="refill", steps=2000, epoch=3, meancost=0.0, epoch_time=2.0,
                             total_time=rows[at - 1]["total_time"] + 2.0))
        for row in rows[at + 1:]:
            row["total_time"] += 2.0

    run = read_stats(write_sittings(tmp_path / "pong.csv", epochs=4, edit=refill))
    resumes = run.resumes()
    assert [r.epoch for r in resumes] == [3] and len(resumes[0].signs) == 1
    assert "a refill row: the replay memory was refilled with 2,000 agent steps" in resumes[0].signs[0]
    for x, place in (("epoch", 2.5), ("steps", 2000)):
        figure = build_figure([run], ["average_reward", "meanq"], x=x)
        assert sorted(_resume_lines(figure)) == sorted((f"x{a}", f"y{a} domain", pytest.approx(place)) for a in ("", 2))
        points = [len(trace.x) for trace in figure.data if trace.name in ("train", "test")]
        assert points and set(points) == {4}  # epochs 1-4 of each phase: the refill row is no point


@pytest.mark.parametrize("case", ["none", "slow snapshot save"])
def test_a_run_in_one_sitting_is_not_marked(tmp_path, case):
    """Only what the data shows: a run in one sitting, or one whose snapshot took 3 s to write, has
    no resume; nor have the tiny CSVs of the other tests, whose counters stand still."""
    from dqnviz.report.plot import build_context, build_figure, read_stats

    def slow(rows):
        for row in rows[5:]:
            row["total_time"] += 3.0

    for path in (write_sittings(tmp_path / "pong.csv", edit=slow if case != "none" else None),
                 write_stats(tmp_path / "tiny.csv")):
        run = read_stats(path)
        figure = build_figure([run], ["average_reward", "meanq"])
        assert run.resumes() == [] and _resume_lines(figure) == []
        assert build_context([run], ["average_reward", "meanq"], figure)["resumes"] == []


def _no_update_count(rows):  # a snapshot that predates the update count: only weight_updates says it
    for row in rows[5:]:
        row["weight_updates"] -= 250


def _refilled(rows):  # a replay memory refilled: only its size says it
    rows[5]["replay_memory_count"] = rows[6]["replay_memory_count"] = 1200


def _refill_time(rows):  # the refill's time in total_time and in no phase
    for row in rows[5:]:
        row["total_time"] += 40


def _interrupted(rows):  # the train phase's first sitting's steps counted in total_train_steps only
    rows[5]["steps"] = 700


def _no_test_row(rows):  # stopped in epoch 2's test phase, resumed from its snapshot
    del rows[4]


def _new_csv(rows):  # resumed as a new run: its CSV starts with epoch 3
    del rows[:5]


@pytest.mark.parametrize("edit, sign", [
    (_no_update_count, "weight_updates start again (250 → 125)"),
    (_refilled, "replay_memory_count falls (2,000 → 1,200: the replay memory was refilled)"),
    (_refill_time, "total_time grows 40 s more than the epoch took"),
    (_interrupted, "total_train_steps grows by 1,000, the row's phase counts 700 steps"),
    (_no_test_row, "epoch 2 has no test row"),
    (_new_csv, "the CSV starts at epoch 3 without a random phase, with 2,000 agent steps trained before it"),
])
def test_each_sign_of_a_resume_is_enough(tmp_path, edit, sign):
    from dqnviz.report.plot import build_figure, read_stats

    run = read_stats(write_sittings(tmp_path / "pong.csv", epochs=4, edit=edit))
    resumes = run.resumes()
    assert [r.epoch for r in resumes] == [3] and len(resumes[0].signs) == 1 and resumes[0].signs[0].startswith(sign)
    assert [line[2] for line in _resume_lines(build_figure([run], ["meanq"]))] == [2.5]
    assert [line[2] for line in _resume_lines(build_figure([run], ["meanq"], x="steps"))] == [2000]


def test_several_runs_mark_each_ones_resumes_in_its_colour(tmp_path):
    """With several runs each resume line takes its run's colour and names the run, on the charts that
    draw that run, and two runs' labels do not sit on one another."""
    from dqnviz.report.plot import build_figure, read_stats, run_style

    runs = [read_stats(write_sittings(tmp_path / "pong.csv", epochs=4, resume_at=3)),
            read_stats(write_sittings(tmp_path / "breakout.csv", epochs=4)),
            read_stats(write_sittings(tmp_path / "seaquest.csv", epochs=4, resume_at=2))]
    figure = build_figure(runs, ["average_reward", "meanq"])
    lines = sorted((s.x0, s.line.color, s.xref) for s in figure.layout.shapes)
    assert lines == [(1.5, run_style(2)[0], "x"), (1.5, run_style(2)[0], "x2"),
                     (2.5, run_style(0)[0], "x"), (2.5, run_style(0)[0], "x2")]
    labels = {(a.text, a.xref, a.yshift) for a in figure.layout.annotations if "resumed" in a.text}
    assert labels == {("pong resumed", "x", 0), ("pong resumed", "x2", 0),
                      ("seaquest resumed", "x", -13), ("seaquest resumed", "x2", -13)}


def test_a_test_points_hover_says_how_many_games_it_averages(tmp_path):
    """A one-game test point looked as solid as a seven-game one: its hover says how many games, and
    their lowest and highest score, where the CSV has them."""
    from dqnviz.report.plot import build_figure, read_stats

    run = read_stats(write_sittings(tmp_path / "pong.csv", epochs=4))
    traces = {t.name: t for t in build_figure([run], ["average_reward", "min_game_reward"]).data if t.xaxis == "x"}
    test = traces["test"]
    assert "%{text}" in test.hovertemplate
    assert list(test.text) == ["over 1 game only (score -13)", "over 2 games: min -12, max -9",
                               "over 3 games: min -11, max -8", "over 7 games: min -10, max -7"]
    assert list(traces["train"].text)[0] == "over 5 games: min -19, max -9"
    meanq = build_figure([run], ["meanq"]).data
    assert all(t.text is None and "%{text}" not in t.hovertemplate for t in meanq)
    # an older CSV without nr_games: no games line, rather than "NaN games"
    columns = [c for c in COLUMNS if c != "nr_games"]
    old = read_stats(write_stats(tmp_path / "old.csv", columns=columns))
    assert all(t.text is None and "%{text}" not in t.hovertemplate for t in build_figure([old], ["average_reward"]).data)


def test_the_runs_table_reads_on_a_phone(tmp_path):
    """At 420 px the best test phase column was squeezed to 67 px by the CSV's path, and a row wrapped
    to 250 px: the file shows its name (the path in its title), no column is squeezed, and the table
    scrolls in its own box, not the page. The charts' resume marks are drawn in the narrow layout too."""
    from tests.browser import open_report

    folder = tmp_path / "a" / "rather" / "long" / "folder" / "of" / "training" / "reports"
    folder.mkdir(parents=True)
    path = write_sittings(folder / "pong-h100-10min-expected-sarsa.csv", epochs=4, resume_at=3)
    out = tmp_path / "pong.html"
    assert run_cli(["plot", path, "--out", str(out)]) == 0
    with open_report(out, width=420, height=900) as check:
        page = check.page
        page.wait_for_function("() => window.dqnvizPageReady === true")
        table = page.evaluate("""() => {
            const table = document.querySelector('table.runs');
            const best = Array.from(table.rows[0].cells).find(c => c.textContent.trim() === 'best test phase');
            const code = Array.from(table.querySelectorAll('td code')).find(c => c.textContent.endsWith('.csv'));
            return {best: Math.round(best.getBoundingClientRect().width), rows: Array.from(table.rows).map(r => r.getBoundingClientRect().height),
                    file: code.textContent, title: code.title, page: document.documentElement.scrollWidth,
                    wrap: table.parentElement.scrollWidth > table.parentElement.clientWidth};
        }""")
        assert table["best"] >= 150, table
        assert max(table["rows"]) <= 130, table
        assert table["file"] == "pong-h100-10min-expected-sarsa.csv" and table["title"] == path
        assert table["page"] <= 420 and table["wrap"], table
        plot = page.evaluate("""() => { const p = document.getElementById('stats-plot');
            return [p.dataset.layout, p._fullLayout.shapes.length,
                    p._fullLayout.annotations.filter(a => a.text === 'resumed').length]; }""")
        assert plot == ["narrow", 4, 4]
        assert check.errors == [] and check.requests == []


def test_a_csv_with_a_byte_order_mark_plots(tmp_path):
    """Excel saves a CSV with a UTF-8 byte-order mark: it is no part of the first column's name."""
    from dqnviz.report.plot import build_figure, read_stats

    plain = write_stats(tmp_path / "pong.csv")
    (tmp_path / "bom").mkdir()
    bom = tmp_path / "bom" / "pong.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + open(plain, "rb").read())
    run, expected = read_stats(bom), read_stats(plain)
    assert run.columns == expected.columns and run.columns[0] == "epoch" and run.rows == expected.rows
    fields = ["average_reward", "meanq"]
    assert build_figure([run], fields).to_json() == build_figure([expected], fields).to_json()
    out = tmp_path / "bom.html"
    assert run_cli(["plot", str(bom), "--out", str(out)]) == 0 and out.stat().st_size > 0


def _reference_steps_position(run, row):
    """Run.position(row, "steps") as defined row by row: a test row sits at the total_train_steps of
    the first train row (in file order) of its epoch that has a number there, else at its own."""
    from dqnviz.report.plot import _number

    if row["phase"] == "test":
        for other in run.rows:
            if other["phase"] == "train" and _number(other["epoch"]) == _number(row["epoch"]):
                steps = _number(other.get("total_train_steps"))
                if steps == steps:
                    return steps
    return _number(row.get("total_train_steps"))


def _same(a, b):
    return a == b or (a != a and b != b)


def write_large_stats(path, epochs):
    """A random row and ``epochs`` train and test rows (monotonic counters), with the oddities that
    Run.position must place as its row-by-row definition does: an epoch with two train rows (the first
    without steps), a test row without a train row, a train row without steps, an epoch "7.0" and an
    empty epoch."""
    rows = [dict(epoch=0, phase="random", total_train_steps=0)]
    for epoch in range(1, epochs + 1):
        rows.append(dict(epoch=epoch, phase="train", steps=1000, total_train_steps=1000 * epoch))
        rows.append(dict(epoch=epoch, phase="test", steps=200, total_train_steps=1000 * epoch + 7))
    # rows[2 * e - 1] is epoch e's train row, rows[2 * e] its test row: edited from the end, so that
    # an insert or a deletion leaves the places of the ones still to edit as they were
    rows[2 * 20]["epoch"] = ""  # epoch 20's test row: no epoch (NaN matches nothing)
    rows[2 * 12 - 1]["total_train_steps"] = ""  # epoch 12: no train steps at all
    del rows[2 * 9 - 1]  # epoch 9: a test row without a train row, at its own steps
    rows[2 * 7 - 1]["epoch"] = "7.0"  # the same epoch, written otherwise
    rows[2 * 5 - 1]["total_train_steps"] = ""  # epoch 5: its train row has no steps ...
    rows.insert(2 * 5, dict(epoch=5, phase="train", steps=1000, total_train_steps=4999))  # ... and a second one has
    rows.insert(2 * 5 + 1, dict(epoch=5, phase="train", steps=1000, total_train_steps=5001))  # (the first with a number wins)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([row.get(c, 1.0) for c in COLUMNS])
    return str(path)


def test_positions_of_a_large_csv_match_the_row_by_row_definition(tmp_path):
    """dqnviz plot was quadratic in the rows (20,000 rows took 99 s): Run.position scanned every row
    for a test row's train row. Its lookup must place every row where the scan did."""
    from dqnviz.report.plot import read_stats

    run = read_stats(write_large_stats(tmp_path / "large.csv", epochs=10_000))
    assert len(run.rows) > 20_000 and len(run.resumes()) == 0
    positions = [run.position(row, "steps") for row in run.rows]
    # the reference scans the rows for each row: checked on the first 100 rows (the oddities) and
    # every 97th row of the rest, which keeps it quick
    checked = list(range(100)) + list(range(100, len(run.rows), 97)) + [len(run.rows) - 1]
    for index in checked:
        assert _same(positions[index], _reference_steps_position(run, run.rows[index])), (index, run.rows[index])
    tests = {row["epoch"]: position for row, position in zip(run.rows, positions) if row["phase"] == "test"}
    assert tests["5"] == 4999 and tests["9"] == 9007 and tests["12"] == 12007 and tests["7"] == 7000
    assert tests[""] == 20007 and tests["10000"] == 10_000_000  # no epoch: at its own steps
    # a changed rows list is looked up afresh
    run.rows = [dict(row, total_train_steps="1") if row["phase"] == "train" else row for row in run.rows]
    assert run.position(run.rows[2], "steps") == 1


def test_a_large_csv_plots_as_the_row_by_row_definition(tmp_path, monkeypatch):
    """The whole figure of a 20,000-row CSV against steps: the same as with the row-by-row Run.position,
    here swapped in for a smaller slice of the same CSV (the scan is quadratic)."""
    from dqnviz.report import plot

    path = write_large_stats(tmp_path / "large.csv", epochs=10_000)
    run = plot.read_stats(path)
    fields = ["average_reward", "total_train_steps"]
    figure = plot.build_figure([run], fields, x="steps")
    train, test = [t for t in figure.data if t.name == "train"], [t for t in figure.data if t.name == "test"]
    assert train and test
    for trace in figure.data:
        if trace.name in ("train", "test"):
            rows = [p[2] for p in run._points(trace.name, fields[0])]
            assert len(trace.x) == len(rows)
            assert all(_same(x, p) for x, p in zip(trace.x, [run.position(r, "steps") for r in rows]))

    small = tmp_path / "small.csv"
    with open(path) as f:
        small.write_text("".join(line for _, line in zip(range(400), f)))
    fast = plot.build_figure([plot.read_stats(small)], fields, x="steps").to_json()
    monkeypatch.setattr(plot.Run, "position", lambda self, row, x="epoch": (
        _reference_steps_position(self, row) if x == "steps" else
        plot._number(row["epoch"]) if x == "epoch" else plot._number(row.get("total_time")) / 60))
    assert plot.build_figure([plot.read_stats(small)], fields, x="steps").to_json() == fast


def write_resuming_stats(path, epochs):
    """Train and test rows whose counters start again every epoch: each train row looks like a resume."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerow([dict(epoch=0, phase="random", total_train_steps=0, steps=100).get(c, 1.0) for c in COLUMNS])
        for epoch in range(1, epochs + 1):
            for phase in ("train", "test"):
                # weight_updates 20 in a test row, 10 in the next train row: they start again
                row = dict(epoch=epoch, phase=phase, steps=100, total_train_steps=100 * epoch,
                           weight_updates=10 if phase == "train" else 20, replay_memory_count=100,
                           total_time=10 * epoch + (5 if phase == "test" else 0), epoch_time=5)
                writer.writerow([row.get(c, 1.0) for c in COLUMNS])
    return str(path)


def test_many_resumes_are_all_marked_in_order(tmp_path):
    """A CSV in which every epoch looks like a resume: _mark_resumes added each mark with plotly's
    add_shape/add_annotation, which copy every mark so far (100 rows took 105 s). All the marks are
    there, after the subplot titles, in the order of the runs' resumes, chart by chart."""
    from dqnviz.report.plot import build_figure, read_stats

    run = read_stats(write_resuming_stats(tmp_path / "many.csv", epochs=1000))
    resumes = run.resumes()
    assert [r.epoch for r in resumes] == list(range(2, 1001))
    fields = ["average_reward", "meanq"]
    figure = build_figure([run], fields)
    expected = [(f"x{axis}", resume.epoch - 0.5) for axis in ("", "2") for resume in resumes]
    assert [(s.xref, s.x0) for s in figure.layout.shapes] == expected
    titles = [a.text for a in figure.layout.annotations[:2]]
    assert titles[0].startswith("average_reward") and titles[1].startswith("meanq")
    labels = figure.layout.annotations[2:]
    assert [(a.xref, a.x) for a in labels] == expected and all(a.text == "resumed" for a in labels)
    assert labels[0].hovertext == "many resumed before epoch 2:<br>weight_updates start again (20 → 10)"


def test_hover_numbers_drop_trailing_zeros(tmp_path):
    """A count read "nr_games = 26.00" and a score "score so far = 1.750": the hover's value format
    ('~' in d3's format) keeps 4 significant digits without padding them with zeros."""
    from dqnviz.report.plot import build_figure, read_stats
    from tests.browser import open_report

    run = read_stats(write_sittings(tmp_path / "pong.csv", epochs=4))
    for trace in build_figure([run], ["average_reward", "nr_games", "meanq"]).data:
        values = re.findall(r"%\{y:([^}]*)\}", trace.hovertemplate)
        assert values and all(v.startswith("~") for v in values), trace.hovertemplate
    out = tmp_path / "pong.html"
    assert run_cli(["plot", str(tmp_path / "pong.csv"), "--fields", "nr_games", "--out", str(out)]) == 0
    with open_report(out) as check:  # plotly's own formatting of the first test point (5 games)
        text = check.page.evaluate("""() => { const gd = document.getElementById('stats-plot');
            const i = gd.data.findIndex(t => t.name === 'test');
            Plotly.Fx.hover(gd, [{curveNumber: i, pointNumber: 3}]);
            return document.querySelector('.hoverlayer .hovertext')?.textContent; }""")
        assert "nr_games = 7" in text and "7.000" not in text, text


def test_a_phones_charts_keep_their_titles_and_resume_labels_clear_of_the_points(tmp_path):
    """At 390 px the meanq chart's title was cut at the right edge and the "resumed" labels, inside
    the charts' tops, sat on the data points: in the narrow layout a title's description has a line
    of its own and the labels stand over the chart, a row per resumed run."""
    from tests.browser import open_report

    paths = [write_sittings(tmp_path / "pong.csv", epochs=6, resume_at=3),
             write_sittings(tmp_path / "breakout.csv", epochs=6, resume_at=5)]
    out = tmp_path / "runs.html"
    assert run_cli(["plot", *paths, "--out", str(out)]) == 0
    with open_report(out, width=390, height=900) as check:
        page = check.page
        assert page.evaluate("document.getElementById('stats-plot').dataset.layout") == "narrow"
        figure = _boxes(page, "#stats-plot .main-svg")[0]
        plots = _boxes(page, ".draglayer .nsewdrag")
        notes = page.evaluate("""() => Array.from(document.querySelectorAll('.infolayer .annotation')).map(a => {
            const r = a.getBoundingClientRect(); return [a.textContent, r.left, r.top, r.right, r.bottom]; })""")
        titles = [n[1:] for n in notes if "·" in n[0] or n[0].startswith(("average_reward", "meanq", "nr_games", "meancost"))]
        labels = [n[1:] for n in notes if "resumed" in n[0]]
        assert len(plots) == 4 and len(titles) == 4 and len(labels) == 8, notes
        for title in titles:
            assert figure[0] <= title[0] and title[2] <= figure[2], (title, figure)  # not cut at either edge
        for label in labels:
            assert not any(_overlap(label, plot) for plot in plots), (label, plots)  # over the chart, not on it
            assert not any(_overlap(label, title) for title in titles), (label, titles)
        assert not any(_overlap(a, b) for i, a in enumerate(labels) for b in labels[i + 1:])
        assert check.errors == []


def test_a_long_run_draws_some_of_its_markers_and_lists_some_of_its_points(tmp_path, monkeypatch):
    """A run of thousands of epochs drew a marker per point (a solid band; 1.75 M SVG nodes and
    23 s per zoom at 100,000 rows) and listed every point in its tables. A trace now draws at most
    MARKERS_SHOWN markers (its line and hover keep every point), and a table at most TABLE_ROWS
    rows, evenly spread, first and last kept, its caption saying so."""
    from dqnviz.report import plot

    monkeypatch.setattr(plot, "TABLE_ROWS", 50)
    csv_path = write_stats(tmp_path / "long.csv", epochs=plot.MARKERS_SHOWN + 40)
    short_path = write_stats(tmp_path / "short.csv", epochs=20)
    runs = [plot.read_stats(csv_path)]
    figure = plot.build_figure(runs, ["average_reward"])
    train = _traces(figure)["train"]
    assert len(train.x) == plot.MARKERS_SHOWN + 40 and train.marker.maxdisplayed == plot.MARKERS_SHOWN
    assert _traces(plot.build_figure([plot.read_stats(short_path)], ["average_reward"]))["train"].marker.maxdisplayed is None
    (table,) = plot.data_tables(runs, ["average_reward"])
    points = 1 + 2 * (plot.MARKERS_SHOWN + 40)  # the baseline, every train and every test point
    assert table["total"] == points and len(table["rows"]) == 50
    assert table["rows"][0]["phase"].startswith("random") and table["rows"][-1]["x"] == str(plot.MARKERS_SHOWN + 40)
    out = tmp_path / "long.html"
    assert run_cli(["plot", csv_path, "--fields", "average_reward", "--out", str(out)]) == 0
    assert f"(50 of its {points:,} points, evenly spread: the CSV holds them all)" in out.read_text()


# --- groups of runs (--group): the mean over seeds with its 95% interval ---------------------------

T_975_2 = 4.302652729911275  # Student's t, 0.975 quantile, 2 degrees of freedom (from tables)


def write_seed(path, test_scores, test_games=None, meanq=0.5):
    """A run of two epochs whose test rows score ``test_scores`` (one per epoch) over ``test_games``
    games (0: no game ended, the score a running one)."""
    test_games = test_games or [5] * len(test_scores)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, restval=1.0)
        writer.writeheader()
        writer.writerow(dict(epoch=0, phase="random", average_reward=-20, meanq=0.0, nr_games=3,
                             total_train_steps=0, total_time=10))
        for epoch, (score, games) in enumerate(zip(test_scores, test_games), start=1):
            writer.writerow(dict(epoch=epoch, phase="train", average_reward=score - 1, meanq=meanq, nr_games=4,
                                 total_train_steps=1000 * epoch, total_time=10 + 60 * epoch))
            writer.writerow(dict(epoch=epoch, phase="test", average_reward=score, meanq=meanq, nr_games=games,
                                 total_train_steps=1000 * epoch, total_time=20 + 60 * epoch))
    return str(path)


def test_a_group_is_the_mean_of_its_runs_in_a_band_of_its_95_percent_interval(tmp_path):
    from dqnviz.report.plot import build_figure, data_tables, group_runs, read_stats

    paths = [write_seed(tmp_path / f"s{seed}.csv", scores, meanq=q)
             for seed, (scores, q) in enumerate([([10, 4], 0.2), ([12, 6], 0.4), ([17, 8], 0.9)])]
    group = group_runs("seeds", [read_stats(p) for p in paths])
    epochs, means = group.series("test", "average_reward")
    assert epochs == [1, 2] and means == pytest.approx([13, 6])
    # x̄ ± t · s / √3: epoch 1's s² = (9 + 1 + 16) / 2 = 13; epoch 2's = (4 + 0 + 4) / 2 = 4
    band_x, low, high = group.band("test", "average_reward")
    half = [T_975_2 * (13 ** 0.5) / 3 ** 0.5, T_975_2 * 2 / 3 ** 0.5]
    assert band_x == [1, 2]
    assert low == pytest.approx([13 - half[0], 6 - half[1]]) and high == pytest.approx([13 + half[0], 6 + half[1]])
    assert group.baseline("average_reward") == -20 and group.series("train", "meanq")[1] == pytest.approx([0.5, 0.5])
    assert group.resumes() == []
    figure = build_figure([group], ["average_reward"])
    bands = [t for t in figure.data if t.fill == "toself"]
    line = next(t for t in figure.data if t.name == "test")
    band = next(t for t in bands if t.legendgroup == line.legendgroup)
    assert len(bands) == 2 and band.showlegend is False and band.hoverinfo == "skip"
    assert list(band.x) == [1, 2, 2, 1] and list(band.y) == pytest.approx([13 + half[0], 6 + half[1], 6 - half[1], 13 - half[0]])
    red, green, blue = (int(line.line.color[i:i + 2], 16) for i in (1, 3, 5))
    assert band.fillcolor == f"rgba({red},{green},{blue},0.25)"  # the test phase's band
    assert line.text[0] == f"mean of 3 runs: 95% CI {13 - half[0]:.4g} – {13 + half[0]:.4g}; runs 10 – 17"
    table = data_tables([group], ["average_reward"])[0]["rows"]
    assert [r["value"] for r in table if r["phase"] == "test"][0] == f"13 (95% CI {13 - half[0]:.4g} – {13 + half[0]:.4g}, 3 runs)"


def test_a_groups_game_score_averages_the_runs_in_which_a_game_ended(tmp_path):
    """A test phase in which no game ended holds the running score of an unfinished game: not a
    game's score to average. Where no run's game ended, the mean is an unfinished point, as a run's."""
    from dqnviz.report.plot import group_runs, read_stats

    paths = [write_seed(tmp_path / "a.csv", [10, 3], [5, 0], meanq=0.2),
             write_seed(tmp_path / "b.csv", [14, 5], [5, 0], meanq=0.4),
             write_seed(tmp_path / "c.csv", [-7, 9], [0, 0], meanq=0.9)]
    group = group_runs("seeds", [read_stats(p) for p in paths])
    assert group.series("test", "average_reward") == ([1], [12.0])  # c's -7 is no game's score
    assert group.unfinished("test", "average_reward") == ([2], [pytest.approx(17 / 3)])
    assert group.series("test", "meanq")[1] == pytest.approx([0.5, 0.5])  # every run measured meanq
    assert group.games_text("test", "average_reward")[0].startswith("mean of 2 runs: 95% CI")


def test_plot_draws_groups_beside_runs(tmp_path, capsys):
    from tests.browser import all_plots_drawn, open_report

    for seed, scores in enumerate([[10, 4], [12, 6], [17, 8]]):
        write_seed(tmp_path / f"pong-s{seed}.csv", scores)
    single = write_seed(tmp_path / "other.csv", [1, 2])
    out = tmp_path / "groups.html"
    assert run_cli(["plot", single, "--group", f"seeds={tmp_path}/pong-s*.csv", "--fields", "average_reward,meanq",
                    "--out", str(out)]) == 0
    html = out.read_text()
    assert "seeds (mean of 3)" in html and "mean of 3:" in html and "pong-s2.csv" in html
    assert "95% confidence interval" in html
    with open_report(out) as check:
        plots, drawn = all_plots_drawn(check.page)
        assert (plots, drawn) == (1, 1) and check.errors == []
        fills = check.page.evaluate("() => document.querySelector('.js-plotly-plot').data"
                                    ".filter(t => t.fill === 'toself').map(t => t.name)")
        # average_reward's train and test; meanq's one line (equal in the train and test rows)
        assert fills == ["seeds · train: 95% CI", "seeds · test: 95% CI", "seeds · train: 95% CI"]


@pytest.mark.parametrize("argv, message", [
    (["--group", "seeds"], "--group seeds: expected NAME=CSV,…"),
    (["--group", "=a.csv"], "--group =a.csv: expected NAME=CSV,…"),
    (["--group", "seeds={tmp}/nothing*.csv"], "--group seeds: no file matches {tmp}/nothing*.csv"),
    (["--group", "seeds={tmp}/missing.csv"], "statistics file not found: {tmp}/missing.csv"),
    (["{tmp}/a.csv", "--group", "a={tmp}/a.csv"], "--group a=…: 'a' names another run or group"),
    (["--fields", "meanq"], "give one or more statistics CSVs, or --group NAME=CSV,…"),
    (["--group", "g= , "], "--group g: no CSV given"),
])
def test_a_bad_group_is_a_one_line_error(tmp_path, capsys, argv, message):
    write_seed(tmp_path / "a.csv", [1, 2])
    out = tmp_path / "out.html"
    assert run_cli(["plot", *[a.format(tmp=tmp_path) for a in argv], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_group_is_cut_where_its_shortest_run_ends_and_a_file_counts_once(tmp_path, capsys):
    """Past the shortest run, the mean would be of fewer runs and jump where one ends: the group
    stops at the last epoch all its runs reached, and says so. The same file named twice (a glob
    and a path, written differently) is one run; a dqnviz test score list a glob matches is left out."""
    from dqnviz.report.plot import build_figure

    write_seed(tmp_path / "pong-s0.csv", [10, 4])
    write_seed(tmp_path / "pong-s1.csv", [12, 6, 30, 40])
    (tmp_path / "pong-s1_2_test.csv").write_text("episode,score,frames\n1,3,100\n")
    out = tmp_path / "g.html"
    group_text = f"seeds={tmp_path}/pong-s*.csv,{tmp_path}/./pong-s0.csv"
    assert run_cli(["plot", "--group", group_text, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "group seeds: drawn to epoch 2, the last that all its 2 runs reached (the longest goes on to epoch 4)" in err
    assert "--group left out 1 CSV file of dqnviz test game scores that its globs matched" in err
    html = out.read_text()
    assert "mean of 2:" in html and "Group seeds: drawn to epoch 2" in html
    from dqnviz.commands.plot import read_group

    group, left_out = read_group(group_text)
    assert [m.name for m in group.members] == ["pong-s0", "pong-s1"] and len(left_out) == 1
    assert group.series("test", "average_reward") == ([1, 2], [11.0, 5.0])
    figure = build_figure([group], ["average_reward"])
    assert max(max(t.x) for t in figure.data if t.x is not None and None not in t.x) <= 2


def test_a_groups_band_stops_where_fewer_than_two_runs_give_a_point(tmp_path):
    """Where a game ended in one run alone, that point has no interval: the band stops there and
    starts again after it, instead of drawing across it."""
    from dqnviz.report.plot import group_runs, read_stats

    paths = [write_seed(tmp_path / "a.csv", [10, 3, 7], [5, 5, 5]),
             write_seed(tmp_path / "b.csv", [14, 5, 9], [5, 0, 5])]
    group = group_runs("seeds", [read_stats(p) for p in paths])
    band_x, low, high = group.band("test", "average_reward")
    assert band_x == [1, None, 3]
    xs, ys = group.band_outline("test", "average_reward")
    assert xs == [1, 1, None, 3, 3] and ys[2] is None
    assert group.games_text("test", "average_reward")[1] == "1 of 2 runs only (a game ended in it alone): no interval"
    alone = group_runs("one", [read_stats(paths[0])])
    assert alone.band("test", "average_reward") == ([], [], []) and alone.games_text("test", "average_reward")[0] == \
        "one run: no interval"


def test_a_resume_inside_a_train_phase_is_marked_where_the_first_sitting_stopped(tmp_path):
    """A stop inside epoch 3's train phase wrote no row for the 964 steps it trained; the refill row
    of the next sitting counts them. By steps and minutes the resume is marked there, not at the
    first sitting's last row, and it is said to be during epoch 3."""
    from dqnviz.report.plot import build_context, build_figure, group_runs, read_stats

    rows = [dict(epoch=0, phase="random", total_train_steps=0, total_time=5, epoch_time=5),
            dict(epoch=1, phase="train", steps=1000, total_train_steps=1000, total_time=25, epoch_time=20),
            dict(epoch=1, phase="test", steps=500, total_train_steps=1000, total_time=30, epoch_time=25),
            dict(epoch=2, phase="train", steps=1000, total_train_steps=2000, total_time=50, epoch_time=20),
            dict(epoch=2, phase="test", steps=500, total_train_steps=2000, total_time=55, epoch_time=25),
            dict(epoch=3, phase="refill", steps=500, total_train_steps=2964, total_time=78, epoch_time=3),
            dict(epoch=3, phase="train", steps=1000, total_train_steps=3000, total_time=80, epoch_time=5),
            dict(epoch=3, phase="test", steps=500, total_train_steps=3000, total_time=85, epoch_time=10)]
    path = tmp_path / "s1.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, restval=1.0)
        writer.writeheader()
        writer.writerows(rows)
    run = read_stats(path)
    (resume,) = run.resumes()
    assert resume.when == "during epoch 3 (after 964 of its train steps)"
    assert run.resume_position(resume, "steps") == 2964 and run.resume_position(resume, "minutes") == 75 / 60
    assert run.resume_position(resume, "epoch") == 2.5
    figure = build_figure([run], ["average_reward"], x="steps")
    assert any(shape.x0 == 2964 for shape in figure.layout.shapes)
    # a run's resume inside a group is not marked on the group's charts, but the page says it
    other = tmp_path / "s0.csv"
    with open(other, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, restval=1.0)
        writer.writeheader()
        writer.writerows(dict(row, total_time=row["total_time"] - 20) if row["epoch"] == 3 else row  # one sitting
                         for row in rows if row["phase"] != "refill")
    group = group_runs("seeds", [read_stats(other), run])
    context = build_context([group], ["average_reward"], build_figure([group], ["average_reward"]))
    assert [r["name"] for r in context["resumes"]] == ["s1 (in group seeds; not marked on its charts)"]


def test_a_default_chart_whose_column_a_csv_lacks_is_left_out_with_a_note(tmp_path, capsys):
    """Without --fields, a CSV lacking meanq (a default chart) still plots the other charts; named
    with --fields, a missing column is refused in one line."""
    columns = [c for c in COLUMNS if c != "meanq"]
    csv_path = write_stats(tmp_path / "nomeanq.csv", columns=columns)
    out = tmp_path / "nomeanq.html"
    assert run_cli(["plot", csv_path, "--out", str(out)]) == 0
    error = capsys.readouterr().err.strip()
    assert error == f"dqnviz plot: left out the default chart meanq: {csv_path} lacks that column"
    page = out.read_text()
    assert "average_reward" in page and "meancost" in page
    assert run_cli(["plot", csv_path, "--out", str(tmp_path / "again.html"), "--fields", "meanq"]) == 2
    assert "unknown field meanq" in capsys.readouterr().err
