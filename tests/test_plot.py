"""``dqnviz plot``: statistics CSVs to an interactive page; bad inputs fail cleanly."""

import argparse
import csv
import os

import pytest

from dqnviz.report.plot import COLUMNS


def run_cli(argv):
    """Run a dqnviz subcommand like ``dqnviz.cli.main`` does (UserError → message, exit 2)."""
    try:
        from dqnviz.cli import main

        return main(argv)
    except ImportError:  # other subcommands not written yet: drive this one directly
        import importlib
        import sys

        from dqnviz.errors import UserError

        module = importlib.import_module(f"dqnviz.commands.{argv[0]}")
        parser = argparse.ArgumentParser(prog=f"dqnviz {argv[0]}")
        module.add_arguments(parser)
        try:
            return module.run(parser.parse_args(argv[1:]))
        except UserError as error:
            print(f"dqnviz {argv[0]}: error: {error}", file=sys.stderr)
            return error.exit_code


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
        # 3 fields × (random, train, test) + meancost, which only the train phase measures
        assert len(names) == 10
        assert names[:3] == ["random:2", "train:3", "test:3"]
        assert names[-1] == "train:3"
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
        assert len(names) == 2 * 2 * 3


def test_default_output_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_stats(tmp_path / "pong.csv")
    write_stats(tmp_path / "b.csv")
    write_stats(tmp_path / "c.csv")
    assert run_cli(["plot", "pong.csv"]) == 0
    assert (tmp_path / "reports" / "pong.html").is_file()
    assert run_cli(["plot", "pong.csv", "b.csv", "c.csv"]) == 0
    assert (tmp_path / "reports" / "pong_and_more.html").is_file()


def test_png_written_or_clearly_explained(tmp_path, capsys):
    csv_path = write_stats(tmp_path / "pong.csv")
    out = tmp_path / "pong.html"
    assert run_cli(["plot", csv_path, "--out", str(out), "--png"]) == 0
    assert out.is_file()
    captured = capsys.readouterr()
    png = tmp_path / "pong.png"
    if png.exists():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "wrote" in captured.out and "pong.png" in captured.out
    else:
        assert "no static image renderer is available" in captured.err
        assert "pip install kaleido" in captured.err


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
    assert run_cli(["plot", a, b, "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "meancost" in err and "b.csv" in err
    assert not out.exists()


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
        assert best["score"] == -10
        labels.append(best["label"])
    assert labels == ["epoch 3, 1 game", "epoch 3, no game ended", "epoch 3, 12 games"]


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
    monkeypatch.setattr(plot, "render_page", lambda runs, fields: drawn.append([r.name for r in runs]) or original(runs, fields))
    assert run_cli(["plot", "pong.csv", str(tmp_path / "pong.csv"), "./pong.csv", "--out", "p.html"]) == 0
    assert drawn == [["pong"]]
    assert "2 CSV file(s) given twice, drawn once" in capsys.readouterr().err


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
