"""``dqnviz plot``: training statistics CSVs as an interactive HTML page (and optionally a PNG)."""

from __future__ import annotations

HELP = "training statistics (reports/<run>.csv) as interactive charts"

DESCRIPTION = """\
Plot the statistics CSV that `dqnviz train` writes (simple_dqn's columns) as one self-contained
HTML page: one chart per field against epoch (or, with --x, agent steps trained or wall-clock
minutes), each with the random baseline (epoch 0), the train phase and the test phase. Several CSVs
are overlaid as separate runs, named by file. The game-score CSVs of `dqnviz test`
(reports/*_test.csv) that a glob such as reports/*.csv also matches are left out, with a note.

  dqnviz plot reports/pong.csv
  dqnviz plot reports/pong.csv reports/pong_dueling.csv --fields average_reward,meanq
  dqnviz plot reports/*.csv                    every run in reports/
  dqnviz plot reports/*.csv --x steps          at the same training, where the runs' epochs differ
  dqnviz plot reports/pong.csv reports/pong-h100.csv --x minutes
                                               a CPU run and a GPU run by wall-clock time
  dqnviz plot reports/breakout.csv --png       also write reports/breakout.png
  dqnviz plot --group nature='reports/pong-s*.csv' --group dueling='reports/pong-dueling-s*.csv'
                                               runs of several seeds as their mean, with its 95% interval
"""


def add_arguments(parser) -> None:
    from dqnviz.commands.arguments import nonempty

    parser.add_argument("csv", nargs="*", metavar="CSV", help="statistics CSV(s) written by dqnviz train")
    parser.add_argument("--group", action="append", default=[], metavar="NAME=CSV,…",
                        help="draw these runs (comma-separated files or quoted globs; seeds of one "
                             "configuration, say) as one line NAME: their mean at each epoch, in a band of its 95%% "
                             "confidence interval; repeat for several groups")
    parser.add_argument("--fields", default=None, metavar="A,B,…",
                        help="columns to plot, comma separated (default: average_reward,meanq,nr_games,meancost); "
                             "any CSV column can be named")
    parser.add_argument("--out", type=nonempty, default=None, metavar="FILE",
                        help="HTML file to write (default: reports/<csv name>.html; for two CSVs <first>_and_<second>.html, "
                             "for more <first>_and_more.html)")
    parser.add_argument("--x", choices=["epoch", "steps", "minutes"], default="epoch",
                        help="the x axis: epoch (default), steps (agent steps trained so far, total_train_steps) "
                             "or minutes (wall-clock minutes since the run started, total_time)")
    parser.add_argument("--png", action="store_true",
                        help="also write a static PNG next to the HTML (needs kaleido, `pip install kaleido`, or playwright "
                             "with Chromium; without either the page is written and the command fails)")


def run(args) -> int:
    import sys
    from pathlib import Path

    from dqnviz.errors import UserError
    from dqnviz.progress import plural
    from dqnviz.report.plot import (
        ScoresCSV, check_fields, check_x, default_output, group_notes, parse_fields, read_stats, render_page,
        write_png,
    )
    from dqnviz.report.render import distinct_labels, write_html
    from dqnviz.outputs import check_output

    fields = parse_fields(args.fields)
    if not args.csv and not args.group:
        raise UserError("give one or more statistics CSVs, or --group NAME=CSV,…")
    csvs = unique_files(args.csv)  # the same file twice (a shell glob and a name) is drawn once
    if len(csvs) < len(args.csv):
        twice = len(args.csv) - len(csvs)
        print(f"dqnviz plot: {twice} CSV {'file was' if twice == 1 else 'files were'} given twice, drawn once",
              file=sys.stderr)
    runs, scores = [], []
    for path in csvs:
        try:
            runs.append(read_stats(path))
        except ScoresCSV as error:  # reports/*.csv also matches the score lists of dqnviz test
            scores.append((path, error))
    if not runs and not args.group:
        raise scores[0][1]
    if scores:
        print(f"dqnviz plot: left out {len(scores)} CSV {plural('file', len(scores))} of dqnviz test "
              f"game scores (episode, score, …), not training statistics: "
              f"{first_three([path for path, _ in scores])}", file=sys.stderr)
        csvs = [run.path for run in runs]
    groups, left_out = [], []
    for text in args.group:
        group, scores = read_group(text)
        groups.append(group)
        left_out += scores
    if left_out:
        print(f"dqnviz plot: --group left out {len(left_out)} CSV {plural('file', len(left_out))} of "
              f"dqnviz test game scores that its globs matched: {first_three(left_out)}", file=sys.stderr)
    members = [member for group in groups for member in group.members]
    in_groups = {}
    for group in groups:
        for member in group.members:
            in_groups.setdefault(Path(member.path).resolve(), []).append(group.name)
    for path, names in in_groups.items():
        if len(names) > 1:
            print(f"dqnviz plot: {path.name} is in {len(names)} groups ({', '.join(names)}): each counts it",
                  file=sys.stderr)
    for run in runs + members:
        if run.cut_line:
            line, values = run.cut_line
            print(f"dqnviz plot: {run.path} line {line} is cut short ({values} of {len(run.columns)} values, no line "
                  f"end): left out", file=sys.stderr)
        if run.unreadable:
            (line, column, text), more = run.unreadable[0], len(run.unreadable) - 1
            print(f"dqnviz plot: {run.path} line {line}: {column} {text!r} is not a finite number, left out of "
                  f"the charts" + (f" (and {more} more)" if more else ""), file=sys.stderr)
    # each run is named by its file's stem, or where two share one, with as many folders as tell them apart
    for run, name in zip(runs, distinct_labels([run.path for run in runs], joiner="/")):
        run.name = name
    taken = [run.name for run in runs]
    for group in groups:
        if group.name in taken:
            raise UserError(f"--group {group.name}=…: {group.name!r} names another run or group; give it another name")
        taken.append(group.name)
    if args.fields is None:  # the default charts: one a CSV lacks is left out, not the whole plot
        lacking = {field: [run for run in runs + members if field not in run.columns] for field in fields}
        kept = [field for field in fields if not lacking[field]]
        if kept and len(kept) < len(fields):
            for field in (f for f in fields if lacking[f]):
                print(f"dqnviz plot: left out the default chart {field}: "
                      f"{first_three([run.path for run in lacking[field]])} {'lacks' if len(lacking[field]) == 1 else 'lack'} "
                      f"that column", file=sys.stderr)
            fields = kept
    check_fields(runs + members, fields, args.x)
    check_x(runs + members, args.x)
    # named after what it draws: the runs given, then the groups
    out = Path(args.out) if args.out else default_output(
        [run.path for run in runs] + [f"{group.name}.csv" for group in groups])
    runs += groups
    csvs += [member.path for member in members]
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as {out / 'plot.html'}")
    check_output(out, inputs=csvs, suffixes=(".html", ".htm"), makes="an HTML page")
    notes = group_notes(runs)
    for note in notes:
        print(f"dqnviz plot: {note}", file=sys.stderr)
    html, figure = render_page(runs, fields, x=args.x, notes=notes)
    write_html(out, html)
    print(f"wrote {out}")
    if args.png:
        png, how = write_png(figure, out.with_suffix(".png"))
        if png is None:  # asked for and not made: a failure, though the page is written
            print(f"dqnviz plot: no PNG written: {how}", file=sys.stderr)
            return 1
        else:
            print(f"wrote {png} (rendered with {how})")
    return 0


def unique_files(paths: list) -> list:
    """``paths`` without a file given again, however its path is written (the first kept)."""
    from pathlib import Path

    seen, kept = set(), []
    for path in paths:
        resolved = Path(path).resolve()
        if resolved not in seen:
            seen.add(resolved)
            kept.append(path)
    return kept


def first_three(items: list) -> str:
    """``"a, b, c, …"``: a message's first three of ``items``."""
    return ", ".join(map(str, items[:3])) + (", …" if len(items) > 3 else "")


def read_group(text: str) -> tuple:
    """``--group NAME=CSV,…`` as a :class:`~dqnviz.report.plot.RunGroup`, and the ``dqnviz test``
    score CSVs its globs matched and it left out (as the positional CSVs' are): each comma-separated
    part a file or a glob (sorted; quoted, so that the shell leaves it to us; ``~`` expanded). A
    file named twice, however written, counts once."""
    import glob
    import os

    from dqnviz.errors import UserError
    from dqnviz.report.plot import ScoresCSV, group_runs, read_stats

    name, equals, patterns = text.partition("=")
    name = name.strip()
    if not equals or not name or not patterns.strip():
        raise UserError(f"--group {text}: expected NAME=CSV,… (a name, '=', then files or quoted globs, comma-separated)")
    paths, globbed = [], set()
    for pattern in (os.path.expanduser(part.strip()) for part in patterns.split(",")):
        if not pattern:
            continue
        magic = any(c in pattern for c in "*?[")
        found = sorted(glob.glob(pattern)) if magic else []
        if found:
            globbed.update(found)
        elif os.path.exists(pattern) or not magic:
            found = [pattern]  # a file (whose name may hold [ or *), or one read_stats says is missing
        else:
            raise UserError(f"--group {name}: no file matches {pattern}")
        paths += found
    paths = unique_files(paths)
    if not paths:
        raise UserError(f"--group {name}: no CSV given")
    members, scores = [], []
    for path in paths:
        try:
            members.append(read_stats(path))
        except ScoresCSV as error:
            if path not in globbed:
                raise UserError(f"--group {name}: {error}") from None
            scores.append(path)  # reports/<run>*.csv also matches the score lists of dqnviz test
    if not members:
        raise UserError(f"--group {name}: {first_three(scores)} "
                        f"{'holds' if len(scores) == 1 else 'hold'} dqnviz test game scores, not training statistics")
    return group_runs(name, members), scores
