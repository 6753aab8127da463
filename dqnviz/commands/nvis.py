"""``dqnviz nvis SNAPSHOT``: guided backprop, receptive fields and saliency as one HTML file."""

from __future__ import annotations

HELP = "what each conv filter responds to (guided backprop), receptive fields and saliency, as HTML"

DESCRIPTION = """\
Play games with a snapshot, find for each conv filter the game state and position where it fires
most, and write one self-contained, interactive HTML report (no network needed to view it):

  * per layer, a card per filter: the input state (RGB = frames t-2, t-1, t), the guided-backprop
    image of that unit, its single frames (t-3..t for four stacked frames) and the unit's
    receptive field on the input;
  * effective versus theoretical receptive field of each layer;
  * gradient and perturbation saliency of Q(s, a*) for telling states, next to the Q-values.

The snapshot's states must stack at least three frames (dqnviz train --history 3 or more;
the default is 4). For any other Keras image model, and states you give, Python's
dqnviz.nvis_report(model, states, "out.html") writes the same page.

examples:
  dqnviz nvis snapshots/breakout_13.keras                    the 8 strongest filters of conv1..conv3
  dqnviz nvis snapshots/pong_24.keras --filters all --out pong.html
  dqnviz nvis snapshots/pong_24.keras --layers conv3 --filters 16 --max-steps 2000
  dqnviz nvis snapshots/pong_24.keras --filters 8                        the first 8 of each layer
  dqnviz nvis snapshots/pong_24.keras --layers conv2,conv3 --filters 5,40  filters 5 and 40
"""


def add_arguments(parser) -> None:
    from dqnviz.commands.arguments import add_playing_arguments, nonempty

    parser.add_argument("snapshot", metavar="SNAPSHOT", help="a .keras snapshot written by dqnviz train")
    add_playing_arguments(parser, games_help="games to play for states")
    parser.add_argument("--filters", default=None, metavar="N|all|topN|I,J",
                        help="which filters of each layer: the first N, 'all', 'topN' (the N that fire "
                             "most strongly on the states played, strongest first) or indices such "
                             "as 0,5,17 ('17,' for filter 17 alone) (default: top8, the 8 strongest)")
    parser.add_argument("--layers", type=nonempty, default=None, metavar="L1,L2",
                        help="layers to show, comma separated: conv layers, or any layer with an image output "
                             "after them, such as a ReLU (default: all conv layers)")
    parser.add_argument("--out", type=nonempty, default=None, metavar="FILE",
                        help="output file (default: reports/<snapshot name>.html)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--timings", action="store_true", help="print the seconds spent in each phase")


FEW_STATES = 100
"""Fewer states played than this, and nvis says that its page shows little (a game of Pong is ~1,000)."""


def run(args) -> int:
    import sys
    import time
    from pathlib import Path

    from dqnviz.outputs import check_output
    from dqnviz.report.nvis import (
        build_context, default_filters, describe_filters, gather, parse_filters, parse_layers, write_report,
    )
    from dqnviz.snapshot import load_snapshot

    start = time.perf_counter()
    from dqnviz.commands.arguments import playing_options

    options = playing_options(args)
    snapshot = load_snapshot(args.snapshot)
    loaded = time.perf_counter() - start
    snapshot.check_history("nvis", "at least 3", least=3, why="its cards show a state's last three frames "
                           "t-2, t-1, t as red, green and blue")
    layers = parse_layers(args.layers, snapshot.model)
    channels = {name: int(snapshot.model.get_layer(name).output.shape[-1]) for name in layers}
    if args.filters is None:
        args.filters = default_filters(channels)
    filters = parse_filters(args.filters, channels)
    out = Path(args.out) if args.out else Path("reports") / f"{snapshot.name}.html"
    if out.exists() and out.is_dir():
        from dqnviz.errors import UserError

        raise UserError(f"--out {out} is a folder; give a file name such as {out / (snapshot.name + '.html')}")
    check_output(out, inputs=[args.snapshot], suffixes=(".html", ".htm"), makes="an HTML report")

    data = gather(snapshot, layers, filters, progress=not args.quiet, **options)
    played = len(data.record.states)
    if played < FEW_STATES:  # a page all the same, from a handful of states: said, not refused
        print(f"dqnviz nvis: only {played} {'state was' if played == 1 else 'states were'} played"
              f"{f' (--max-steps {args.max_steps})' if args.max_steps else ''}: each filter's strongest inputs are "
              f"chosen among {'it' if played == 1 else 'them'}, so the filters look alike; a game of Pong is about "
              f"1,000 states", file=sys.stderr)
    t0 = time.perf_counter()
    context = build_context(data, options={**options, "filters": describe_filters(args.filters)})
    data.timings["figures"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    path = write_report(out, context)
    data.timings["render"] = time.perf_counter() - t0
    if args.timings:
        timings = {"load": loaded, **data.timings}
        print("timings " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()), file=sys.stderr)
    # like compare, record and plot: the file written, on stdout, with or without --quiet
    from dqnviz.progress import plural

    size = path.stat().st_size / 1e6
    cards, states = sum(len(v) for v in data.cards.values()), len(data.record.states)
    print(f"wrote {path} ({size:.1f} MB, {cards} {plural('filter', cards)} from {states:,} "
          f"{plural('state', states)}, {time.perf_counter() - start:.1f} s)")
    return 0
