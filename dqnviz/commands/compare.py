"""``dqnviz compare A B [C …]``: the filters of several snapshots side by side, with numbers."""

from __future__ import annotations

HELP = "compare the filters of two or more snapshots side by side, with similarity numbers, as HTML"

DESCRIPTION = """\
Compare snapshots of different games, or of one game at different epochs, in one self-contained
HTML report: per conv layer the filter cards of every snapshot side by side (input, guided
backprop, receptive field), the first-layer weights per input frame, the temporal lean of the
first layer, effective versus theoretical receptive fields, and similarity numbers (Hungarian
filter matching against a random-network baseline, linear CKA per layer against its chance level
(the CKA of untrained networks of the same architectures on the same states), and the similarity
of guided-backprop patterns across layers), each explained on the page. It also measures how far
each network moved from the weights its run started from (rebuilt from the seed, under the
backend it trained with). Two runs with the same seed start from the same network, which makes
their first layers look alike whatever they learned: the page flags such pairs and compares
what changed instead.

Snapshots of one run are sorted by epoch and read as "how the filters evolved"; agents of
different games or runs keep the order given: the cards line up their first-layer filters with
those of the first snapshot, and the numbers cover the pairs that --pairs chooses. Networks of
different shapes (dueling vs plain, different action sets) are compared where their layers match;
the page lists the views skipped and why. States must stack at least three frames (--history 3 or
more): a card shows a state's last three frames as red, green and blue.

examples:
  dqnviz compare snapshots/breakout_13.keras snapshots/pong_24.keras
  dqnviz compare snapshots/pong_1.keras snapshots/pong_5.keras snapshots/pong_20.keras --filters 4
"""


def add_arguments(parser) -> None:
    from dqnviz.commands.arguments import add_playing_arguments, nonempty, whole_number

    parser.add_argument("snapshots", nargs="+", metavar="SNAPSHOT", help="two or more .keras snapshots")
    parser.add_argument("--out", type=nonempty, default=None, metavar="FILE",
                        help="output file (default: reports/compare_<a>_vs_<b>.html)")
    def filter_count(text):
        return "all" if str(text).strip().lower() == "all" else whole_number(minimum=1)(text)

    parser.add_argument("--filters", type=filter_count, default=8, metavar="N|all",
                        help="filters per layer and snapshot: conv1's first N in matched order, deeper "
                             "layers' N strongest on the states played; or 'all' (default: 8; at most the "
                             "filters of the largest layer)")
    parser.add_argument("--pairs", choices=("auto", "all", "first"), default="auto",
                        help="which pairs get similarity numbers: all, or each snapshot against the first "
                             "(default auto: consecutive epochs for one run's snapshots, else all pairs up to "
                             "4 snapshots and each against the first beyond)")
    add_playing_arguments(parser, games_help="games each snapshot plays for states",
                          max_steps_help="at most N agent steps per snapshot (default: whole games, each cut at 4,500 agent "
                                         "steps = 18,000 frames)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def options_from(args) -> dict:
    from dqnviz.commands.arguments import playing_options

    return {"filters": args.filters, "pairs": args.pairs, **playing_options(args)}


def run(args) -> int:
    import os
    import time
    from pathlib import Path

    from dqnviz.errors import UserError
    from dqnviz.outputs import check_output
    from dqnviz.snapshot import load_snapshot, read_meta

    start = time.perf_counter()
    if len(args.snapshots) < 2:
        raise UserError("give at least two snapshots to compare")
    if len({os.path.realpath(p) for p in args.snapshots}) != len(args.snapshots):
        raise UserError("a snapshot is given twice; compare different snapshots")
    options = options_from(args)
    for path in args.snapshots:  # fast checks of every file before any model is built
        read_meta(path)
    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as {out / 'compare.html'}")

    from dqnviz.report.compare import (
        build_context, check_filter_count, check_history, default_output, gather, write_report,
    )
    from dqnviz.report.render import distinct_labels

    snapshots = [load_snapshot(path) for path in args.snapshots]
    check_history(snapshots)  # before any game is played
    options["filters"] = check_filter_count(options["filters"], snapshots)
    for snapshot, label in zip(snapshots, distinct_labels(args.snapshots)):
        snapshot.label = label  # the file's stem, or with as many folders as tell two of one name apart
    out = check_output(out or default_output([s.name for s in snapshots]), inputs=[s.path for s in snapshots],
                       suffixes=(".html", ".htm"), makes="an HTML report")
    data = gather(snapshots, filters=options["filters"], games=options["games"], epsilon=options["epsilon"],
                  seed=options["seed"], max_steps=options["max_steps"], progress=not args.quiet,
                  pairs=options["pairs"], let_go=True)  # each network is let go once its pairs are done
    context = build_context(data, options)
    write_report(out, context)
    print(f"wrote {out} ({time.perf_counter() - start:.1f} s)")
    return 0
