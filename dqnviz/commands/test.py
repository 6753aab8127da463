"""``dqnviz test SNAPSHOT``: evaluate an agent with the Nature protocol."""

from __future__ import annotations

HELP = "evaluate snapshots (Nature protocol: 30 episodes, ε = 0.05, 5-minute cap)"
DESCRIPTION = """\
Evaluate a snapshot as in Mnih et al. (2015): 30 episodes with ε = 0.05, up to 30 random
no-op starts, a lost life is not the end, and a cap of 18,000 frames (5 minutes) per episode.
Use --max-frames 108000 for the Machado et al. (2018) protocol (with --repeat-action-probability 0.25).

The last line reads: average 12.3 ± 4.5 over 30 episodes (min 3, max 21).

Given several snapshots (say every epoch of a run), each plays the same games (game i: emulator
seed S+i), one line each, and a last line names the best, with the standard error of each
average (std / √episodes), which says whether the gap between two epochs is more than luck.

examples:
  dqnviz test snapshots/pong_24.keras
  dqnviz test snapshots/pong_2?.keras --csv reports/pong_epochs_test.csv
"""


def add_arguments(parser) -> None:
    from dqnviz.commands.arguments import MAX_ENVS, MAX_GAMES, MAX_SEED, probability, whole_number

    parser.add_argument("snapshots", nargs="+", metavar="SNAPSHOT", help="one or more .keras snapshots written by dqnviz train")
    parser.add_argument("--episodes", type=whole_number(1, MAX_GAMES), default=30, metavar="N", help="episodes to play (default: 30)")
    parser.add_argument("--epsilon", type=probability, default=0.05, metavar="E", help="ε of the ε-greedy policy (default: 0.05)")
    parser.add_argument("--max-frames", type=whole_number(minimum=1), default=18_000, metavar="N",
                        help="emulator frames per episode before it is cut off (default: 18,000 = 5 minutes)")
    parser.add_argument("--repeat-action-probability", type=probability, default=None, metavar="P",
                        help="sticky actions (default: the snapshot's training setting)")
    parser.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0, metavar="S",
                        help="random seed: game i uses emulator seed S+i (default: 0)")
    parser.add_argument("--parallel", type=whole_number(1, MAX_ENVS), default=8, metavar="N",
                        help="games played at once, sharing one batched network call per step; "
                             "the scores do not depend on it (default: 8)")
    parser.add_argument("--csv", metavar="FILE", help="also write one row per episode (episode, score, frames) to FILE; "
                                                      "with several snapshots a first column names the snapshot")
    parser.add_argument("--quiet", action="store_true", help="no progress, only the final line(s)")


def summary(values) -> str:
    """``average 12.3 ± 4.5 over 30 episodes (min 3, max 21)``: the mean and population std of the scores."""
    return (f"average {values.mean():.1f} ± {values.std():.1f} over {len(values)} episode{'' if len(values) == 1 else 's'} "
            f"(min {values.min():g}, max {values.max():g})")


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
    from pathlib import Path

    import numpy as np

    from dqnviz.agent import env_for_snapshot, evaluate
    from dqnviz.errors import UserError
    from dqnviz.progress import Progress
    from dqnviz.snapshot import atomic_write, check_writable, load_snapshot

    overrides = {"max_frames_per_episode": args.max_frames}
    if args.repeat_action_probability is not None:
        overrides["repeat_action_probability"] = args.repeat_action_probability
    # Load (and check) every snapshot before the first game: a typo in the last one should not
    # cost the time of testing the others.
    snapshots = [load_snapshot(path) for path in args.snapshots]
    if args.csv:
        if Path(args.csv).is_dir():
            raise UserError(f"--csv {args.csv} is a folder; give a file name such as "
                            f"{Path(args.csv) / (Path(args.snapshots[0]).stem + '_test.csv')}")
        check_writable(args.csv)
    for path, snapshot in zip(args.snapshots, snapshots):
        env = env_for_snapshot(snapshot.meta, seed=args.seed, **overrides)
        if env.num_actions != snapshot.model.output_shape[-1]:
            raise UserError(f"{path}: the model has {snapshot.model.output_shape[-1]} outputs but {env.rom.name} has {env.num_actions} actions")
    several = len(snapshots) > 1
    names = [snapshot.name for snapshot in snapshots]
    if len(set(names)) < len(names):  # the same file name in two folders: use the paths
        names = list(args.snapshots)
    width = max(len(name) for name in names)
    rows, results_by_snapshot = [], []
    for number, (name, snapshot) in enumerate(zip(names, snapshots), start=1):
        def make_env(seed, meta=snapshot.meta):
            return env_for_snapshot(meta, seed=seed, **overrides)

        label = f"testing {name}" + (f" ({number}/{len(snapshots)})" if several else "")
        scores = []
        with Progress(label, total=args.episodes, unit="episodes", enabled=not args.quiet) as bar:
            def progress(done, score):
                scores.append(score)
                bar.update(done, last=score, average=float(np.mean(scores)))

            results = evaluate(snapshot.model, make_env, args.episodes, args.epsilon, args.seed,
                               parallel=args.parallel, progress=progress)
        values = np.array([r["score"] for r in results])
        results_by_snapshot.append(values)
        rows.extend({"snapshot": name, **r} if several else r for r in results)
        print(f"{name:<{width}}  {summary(values)}" if several else summary(values), flush=True)
    if args.csv:
        def write(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, (["snapshot"] if several else []) + ["episode", "score", "frames"])
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(args.csv, write)
    if several:
        games = {snapshot.meta.get("game") for snapshot in snapshots}
        if len(games) > 1:
            print(f"no best named: the snapshots play different games ({', '.join(sorted(map(str, games)))})")
            return 0
        means = [values.mean() for values in results_by_snapshot]
        best = int(np.argmax(means))
        errors = ", ".join(f"{name} {standard_error(values):.1f}" for name, values in zip(names, results_by_snapshot))
        print(f"best: {names[best]}, average {means[best]:.1f}, on the same {games_and_seeds(args.episodes, args.seed)}; "
              f"standard errors: {errors}")
    return 0
