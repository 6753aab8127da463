"""``dqnviz test SNAPSHOT``: evaluate an agent with the Nature protocol."""

from __future__ import annotations

HELP = "evaluate a snapshot (Nature protocol: 30 episodes, ε = 0.05, 5-minute cap)"
DESCRIPTION = """\
Evaluate a snapshot as in Mnih et al. (2015): 30 episodes with ε = 0.05, up to 30 random
no-op starts, a lost life is not the end, and a cap of 18,000 frames (5 minutes) per episode.
Use --max-frames 108000 for the Machado et al. (2018) protocol (with --repeat-action-probability 0.25).

The last line reads: average 12.3 ± 4.5 over 30 episodes (min 3, max 21).
"""


def add_arguments(parser) -> None:
    from dqnviz.commands.arguments import probability, whole_number

    parser.add_argument("snapshot", help="a .keras snapshot written by dqnviz train")
    parser.add_argument("--episodes", type=whole_number(minimum=1), default=30, metavar="N", help="episodes to play (default: 30)")
    parser.add_argument("--epsilon", type=probability, default=0.05, metavar="E", help="ε of the ε-greedy policy (default: 0.05)")
    parser.add_argument("--max-frames", type=whole_number(minimum=1), default=18_000, metavar="N",
                        help="emulator frames per episode before it is cut off (default: 18,000 = 5 minutes)")
    parser.add_argument("--repeat-action-probability", type=probability, default=None, metavar="P",
                        help="sticky actions (default: the snapshot's training setting)")
    parser.add_argument("--seed", type=whole_number(minimum=0), default=0, metavar="S",
                        help="random seed: game i uses emulator seed S+i (default: 0)")
    parser.add_argument("--parallel", type=whole_number(minimum=1), default=8, metavar="N",
                        help="games played at once, sharing one batched network call per step; "
                             "the scores do not depend on it (default: 8)")
    parser.add_argument("--csv", metavar="FILE", help="also write one row per episode (episode, score, frames) to FILE")
    parser.add_argument("--quiet", action="store_true", help="no progress, only the final line")


def run(args) -> int:
    import csv

    import numpy as np

    from dqnviz.agent import env_for_snapshot, evaluate
    from dqnviz.progress import Progress
    from dqnviz.snapshot import atomic_write, load_snapshot

    snapshot = load_snapshot(args.snapshot)
    overrides = {"max_frames_per_episode": args.max_frames}
    if args.repeat_action_probability is not None:
        overrides["repeat_action_probability"] = args.repeat_action_probability

    def make_env(seed):
        return env_for_snapshot(snapshot.meta, seed=seed, **overrides)

    env = make_env(args.seed)
    if env.num_actions != snapshot.model.output_shape[-1]:
        from dqnviz.errors import UserError

        raise UserError(f"{args.snapshot}: the model has {snapshot.model.output_shape[-1]} outputs but {env.rom.name} has {env.num_actions} actions")
    scores = []
    with Progress(f"testing {snapshot.name}", total=args.episodes, unit="episodes", enabled=not args.quiet) as bar:
        def progress(done, score):
            scores.append(score)
            bar.update(done, last=score, average=float(np.mean(scores)))

        results = evaluate(snapshot.model, make_env, args.episodes, args.epsilon, args.seed,
                           parallel=args.parallel, progress=progress)
    values = np.array([r["score"] for r in results])
    if args.csv:
        def write(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, ["episode", "score", "frames"])
                writer.writeheader()
                writer.writerows(results)

        atomic_write(args.csv, write)
    print(f"average {values.mean():.1f} ± {values.std():.1f} over {len(values)} episode{'' if len(values) == 1 else 's'} "
          f"(min {values.min():g}, max {values.max():g})")
    return 0
