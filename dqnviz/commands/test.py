"""``dqnviz test SNAPSHOT``: evaluate an agent with the Nature protocol."""

from __future__ import annotations

HELP = "evaluate snapshots (Nature protocol: 30 episodes, ε = 0.05, 5-minute cap)"
DESCRIPTION = """\
Evaluate a snapshot as in Mnih et al. (2015): 30 episodes with ε = 0.05, up to 30 random
no-op starts, a lost life is not the end, and a cap of 18,000 frames (5 minutes) per episode.
Use --max-frames 108000 for the Machado et al. (2018) protocol (with --repeat-action-probability 0.25).

The last line reads: average 12.3 ± 4.5 over 30 episodes (min 3, max 21): the mean score and
the standard deviation of the episodes' scores (population std, as the README's tables give it).
A game cut off by --max-frames (counted from the end of the no-op start) counts with its score
so far; a line on stderr says how many were.

Given several snapshots (say every epoch of a run), each plays the same games (episode i:
emulator seed S+i-1), one line each, and a last line names the best (or the tied best), with
the standard error of each average (sample std / √episodes; none from a single game), which
says whether the gap between two epochs is more than luck. A snapshot given twice is tested once.

--csv writes episode, score and frames (emulator frames played, the no-op start not counted: a game
that ends inside an agent step counts only the frames it played) to a name ending in .csv, so
that `--csv snapshots/pong_2?.keras` (or any other file given by mistake) is never overwritten.

examples:
  dqnviz test snapshots/pong_24.keras
  dqnviz test snapshots/pong_2?.keras --csv reports/pong_epochs_test.csv
"""


def add_arguments(parser) -> None:
    from dqnviz.commands.arguments import (MAX_ENVS, add_count_and_epsilon, add_seed, nonempty, sticky_probability,
                                           whole_number)
    from dqnviz.config import TEST_MAX_FRAMES

    parser.add_argument("snapshots", nargs="+", metavar="SNAPSHOT", help="one or more .keras snapshots written by dqnviz train")
    add_count_and_epsilon(parser, "--episodes", "episodes to play", default=30)
    parser.add_argument("--max-frames", type=whole_number(minimum=1), default=TEST_MAX_FRAMES, metavar="N",
                        help=f"emulator frames per episode before it is cut off (default: {TEST_MAX_FRAMES:,} = 5 minutes)")
    parser.add_argument("--repeat-action-probability", type=sticky_probability, default=None, metavar="P",
                        help="sticky actions (default: the snapshot's training setting)")
    add_seed(parser, "random seed: episode i (from 1) uses emulator seed S+i-1")
    parser.add_argument("--parallel", type=whole_number(1, MAX_ENVS), default=8, metavar="N",
                        help="games played at once, sharing one batched network call per step; "
                             "the scores do not depend on it (default: 8)")
    parser.add_argument("--csv", type=nonempty, metavar="FILE", help="also write one row per episode (episode, score, frames) to FILE, a name ending in .csv; "
                                                      "with several snapshots a first column names the snapshot")
    parser.add_argument("--quiet", action="store_true", help="no progress, only the final line(s)")


def score_text(value) -> str:
    """A game score as people write it: ``12345`` (not ``12345.0`` or ``1.23e+04``), ``0.5``."""
    value = float(value)
    return f"{value:.0f}" if value.is_integer() and abs(value) < 1e15 else f"{value:g}"


def summary(values) -> str:
    """``average 12.3 ± 4.5 over 30 episodes (min 3, max 21)``: the mean and population std of the scores."""
    return (f"average {values.mean():.1f} ± {values.std():.1f} over {len(values)} episode{'' if len(values) == 1 else 's'} "
            f"(min {score_text(values.min())}, max {score_text(values.max())})")


def games_and_seeds(episodes: int, seed: int) -> str:
    """``30 games (seeds 0–29)``, or ``1 game (seed 0)``: game i is played with emulator seed S+i."""
    if episodes == 1:
        return f"1 game (seed {seed})"
    return f"{episodes} games (seeds {seed}–{seed + episodes - 1})"


def standard_error(values) -> float:
    """Standard error of the mean score: s / √n, with s the sample standard deviation (0 for one game)."""
    return float(values.std(ddof=1) / len(values) ** 0.5) if len(values) > 1 else 0.0


def run(args) -> int:
    import csv
    import os
    import sys
    from pathlib import Path

    import numpy as np

    from dqnviz.agent import checked_env_for_snapshot, env_for_snapshot, evaluate
    from dqnviz.errors import UserError
    from dqnviz.outputs import atomic_write, check_output
    from dqnviz.progress import Progress, plural
    from dqnviz.snapshot import load_snapshot

    overrides = {"max_frames_per_episode": args.max_frames}
    if args.repeat_action_probability is not None:
        overrides["repeat_action_probability"] = args.repeat_action_probability
    if args.csv:
        csv_path = Path(args.csv)
        if csv_path.is_dir():
            raise UserError(f"--csv {args.csv} is a folder; give a file name such as "
                            f"{csv_path / (Path(args.snapshots[0]).stem + '_test.csv')}")
        kept = not_a_csv(csv_path)
        if kept:  # `test --csv snapshots/pong_2?.keras`: the shell gives --csv the first snapshot
            raise UserError(f"--csv {args.csv} is {kept}, not a CSV file; give a .csv name "
                            f"(--csv takes the word after it: put it after the snapshots)")
        check_output(args.csv, "--csv", inputs=args.snapshots, suffixes=(".csv",), makes="a CSV of the games")
    # The same file given twice (overlapping globs) is tested once.
    paths, seen = [], set()
    for path in args.snapshots:
        key = os.path.realpath(path)
        if key in seen:
            if not args.quiet:
                print(f"{path} is given twice; testing it once", file=sys.stderr)
            continue
        seen.add(key)
        paths.append(path)
    # Load (and check) every snapshot before the first game: a typo in the last one should not
    # cost the time of testing the others. Only the first keeps its network meanwhile; the others
    # are loaded again when their turn comes, so that a run's 200 epochs take one network's
    # memory, not 200 (a load is a fraction of a second, a test of 30 games minutes).
    snapshots = []
    for path in paths:
        snapshot = load_snapshot(path)
        checked_env_for_snapshot(snapshot, seed=args.seed, **overrides)
        if snapshots:
            snapshot.model = None
            release_networks()
        snapshots.append(snapshot)
    several = len(snapshots) > 1
    names = [snapshot.name for snapshot in snapshots]
    if len(set(names)) < len(names):  # the same file name in two folders: use the paths
        names = list(paths)
    width = max(len(name) for name in names)
    rows, results_by_snapshot, tested, not_tested = [], [], [], []
    for number, (name, snapshot) in enumerate(zip(names, snapshots), start=1):
        if snapshot.model is None:  # loaded again: checked again, in case the file changed meanwhile
            try:
                checked_env_for_snapshot(reloaded := load_snapshot(snapshot.path), seed=args.seed, **overrides)
            except UserError as error:  # gone or changed since it was checked: the others' results still count
                print(f"dqnviz test: {name} was not tested: {error}", file=sys.stderr, flush=True)
                not_tested.append(name)
                continue
            snapshot.model = reloaded.model
        def make_env(seed, meta=snapshot.meta):
            return env_for_snapshot(meta, seed=seed, **overrides)

        label = f"testing {name}" + (f" ({number}/{len(snapshots)})" if several else "")
        scores = []
        with Progress(label, total=args.episodes, unit="episodes", enabled=not args.quiet) as bar:
            def progress(done, score):
                scores.append(score)  # shown as text: a float field would read 1.98e+03
                bar.update(done, last=score_text(score), average=f"{np.mean(scores):.1f}")

            model, snapshot.model = snapshot.model, None  # released once tested
            results = evaluate(model, make_env, args.episodes, args.epsilon, args.seed,
                               parallel=args.parallel, progress=progress)
            del model
        if number < len(snapshots):  # the next one's network takes its place (after the last: the end)
            release_networks()
        values = np.array([r["score"] for r in results])
        results_by_snapshot.append(values)
        tested.append(name)
        rows.extend({"snapshot": name, **r} if several else r for r in results)
        print(f"{name:<{width}}  {summary(values)}" if several else summary(values), flush=True)
        cut = sum(1 for r in results if r["frames"] >= args.max_frames)
        if cut:  # their scores count, as the protocol says, but they are no game's whole score
            print(f"dqnviz test: {name + ': ' if several else ''}{cut} of {len(results)} "
                  f"{plural('game', len(results))} cut off at --max-frames {args.max_frames:,}: "
                  f"{'its score is the score' if cut == 1 else 'their scores are the scores'} so far",
                  file=sys.stderr, flush=True)
    if args.csv:
        def write(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, (["snapshot"] if several else []) + ["episode", "score", "frames"])
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(args.csv, write)
        if not args.quiet:  # on stderr: stdout's last line stays the result, as the help says
            games = f"{len(rows):,} {plural('game', len(rows))}" if not several else \
                f"{len(tested)} snapshots × {args.episodes:,} {plural('game', args.episodes)}"
            print(f"wrote {args.csv} ({games})", file=sys.stderr, flush=True)
    if several and len(tested) > 1:
        _say_best(tested, results_by_snapshot, snapshots, args)
    if not_tested:  # said last, after what was measured: the command did not do all it was asked
        from dqnviz.units import format_few

        raise UserError(f"{format_few(not_tested)} {'was' if len(not_tested) == 1 else 'were'} not tested "
                        f"(removed or changed since the start); the others' results stand")
    return 0


def _say_best(names, results_by_snapshot, snapshots, args) -> None:
    """The last line of a test of several snapshots: the best average, and the standard errors."""
    from dqnviz.progress import join_words

    games = {snapshot.meta.get("game") for snapshot in snapshots}
    if len(games) > 1:
        print(f"no best named: the snapshots play different games ({', '.join(sorted(map(str, games)))})")
        return
    means = [float(values.mean()) for values in results_by_snapshot]
    top = [name for name, mean in zip(names, means) if mean == max(means)]
    best = top[0] if len(top) == 1 else "tied between " + join_words(top)
    if args.episodes == 1:
        errors = "no standard errors from a single game (it takes --episodes 2 or more)"
    else:
        errors = "standard errors: " + ", ".join(f"{name} {standard_error(values):.1f}"
                                                 for name, values in zip(names, results_by_snapshot))
    print(f"best: {best}, average {max(means):.1f}, on the same {games_and_seeds(args.episodes, args.seed)}; "
          f"{errors}")


def release_networks() -> None:
    """Free the networks (and their compiled functions) no longer referenced: Keras models hold
    reference cycles, which only the cycle collector frees, and Keras keeps global state per model."""
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


def not_a_csv(path) -> str | None:
    """What ``--csv path`` would overwrite that is no CSV file (:func:`dqnviz.outputs.snapshot_like`),
    or None where a CSV may be written."""
    from dqnviz.outputs import snapshot_like

    return snapshot_like(path)
