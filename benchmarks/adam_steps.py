"""How much of Adam's step its ε leaves to each layer, in a trained agent's own recipe.

    KERAS_BACKEND=jax python benchmarks/adam_steps.py snapshots/breakout_13.keras
    KERAS_BACKEND=jax python benchmarks/adam_steps.py snapshots/pong_24.keras --steps 4000 --epsilons 1.5e-4,1e-8

Adam moves each weight by ``lr · m̂ / (√v̂ + ε)``, where m̂ and v̂ are the bias-corrected running
means of the gradient g and of g². (Keras writes it as ``lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ) · m / (√v + ε)``,
the same step with ε / √(1 − β₂ᵗ) in place of ε: a larger ε over the first few thousand updates,
ε itself once β₂ᵗ ≈ 0, as in any long run.) Where the gradient's scale √v̂ is far above ε the step
is about ``lr`` per unit of m̂/√v̂, whatever the scale; where √v̂ is below ε it shrinks to
``lr · m̂ / ε``, plain SGD at a rate lr / ε. The share of the ε-free step that a weight keeps, once
β₂ᵗ ≈ 0, is

    kept = √v̂ / (√v̂ + ε)

The script resumes the snapshot's own recipe (its optimizer, learning rate, batch, replay ratio,
targets, dueling head; a 40,000-transition replay and 4 environments so that it fits the 2-core
CPU) with a fresh optimizer, fills the replay with ``--random-steps`` of random play (by default
only the 256 that the first batches need), trains ``--steps`` agent steps on the agent's own play
(ε as the schedule has it by then, 0.01–0.05), and reads the optimizer's v after those updates.
It prints, per layer, the median √v̂ and the median share kept for each ε of ``--epsilons``, and
the median over all the network's weights. √v̂ hardly depends on ε (it is the gradient's scale),
so one run gives every ε's share; it is the gradient's scale over these few hundred updates, which
a long run's need not equal.

This is a measurement of step sizes, not of learning: which ε learns faster is for a learning
run to show. It was written because both Breakout runs (the CPU's ``breakout_13`` and the H200's
8-minute run) levelled off at 25–40 points with Adam's ε = 1.5e-4 (Rainbow's), where CleanRL's
DQN, with PyTorch's ε = 1e-8, reaches 291–334 in 10 M agent steps.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

def trained_moments(snapshot_path: str, steps: int, random_steps: int, seed: int = 0):
    """``(config, updates, {layer variable: v̂})`` after ``steps`` agent steps of the snapshot's
    recipe, resumed from its weights with a fresh optimizer."""
    from dqnviz.atari import resolve_rom
    from dqnviz.config import stored_config
    from dqnviz.snapshot import load_snapshot
    from dqnviz.trainer import Trainer

    snapshot = load_snapshot(snapshot_path)
    config, _ = stored_config(snapshot.meta)
    config = config.replace(num_envs=4, replay_size=40_000, validation_states=32, seed=seed,
                            device_replay=False, emulator_threads=0)
    if config.optimizer != "adam":
        raise SystemExit(f"{snapshot_path} was trained with {config.optimizer}, not Adam: its ε is another one")
    rom = resolve_rom(snapshot.meta["game"])
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(rom, config, run="adam-steps", snapshot_dir=folder, report_dir=folder, resume=snapshot,
                          show_progress=False, log=lambda *_: None)
        trainer.run_phase(0, "random", max(random_steps, 4 * config.batch_size))
        stats = trainer.run_phase(1, "train", steps)
        state = trainer.learner.optimizer_state()
        beta_2 = float(trainer.learner.optimizer.beta_2)
    updates = int(np.asarray(state["iteration"]).ravel()[0])
    if updates != stats.updates:  # an optimizer state found beside the snapshot was restored
        raise SystemExit(f"{snapshot_path}: the optimizer had made {updates} updates, this run {stats.updates}: "
                         "copy the snapshot to a folder of its own, so that it starts afresh")
    corrected = {name[: -len("_velocity")]: np.asarray(value, np.float64) / (1.0 - beta_2 ** updates)
                 for name, value in state.items() if name.endswith("_velocity")}
    return config, stats, updates, corrected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("snapshot", nargs="?", default="snapshots/breakout_13.keras",
                        help="a snapshot trained with Adam (default: snapshots/breakout_13.keras)")
    parser.add_argument("--steps", type=int, default=6000, help="agent steps trained (default: 6000)")
    parser.add_argument("--random-steps", type=int, default=256, help="random steps that fill the replay first "
                        "(at least 4 batches; default 256)")
    parser.add_argument("--epsilons", default="1.5e-4,1e-5,1e-8", help="Adam ε values to report, comma-separated")
    parser.add_argument("--seed", type=int, default=0, help="seeds the games and the draws (default: 0)")
    args = parser.parse_args()
    epsilons = [float(value) for value in args.epsilons.split(",")]

    from _timing import print_machine

    from dqnviz.errors import UserError

    print_machine()
    try:
        config, stats, updates, moments = trained_moments(args.snapshot, args.steps, args.random_steps, args.seed)
    except UserError as error:  # a wrong path, a corrupt snapshot: one line, as dqnviz says it
        raise SystemExit(f"adam_steps.py: error: {error}") from None
    scores = f"{np.mean(stats.game_scores):.1f} over {len(stats.game_scores)} games" if stats.game_scores else "no game ended"
    print(f"{args.snapshot}: Adam, learning rate {config.learning_rate:g}, its ε {config.adam_epsilon:g}, "
          f"batch {config.batch_size} every {config.train_frequency} agent steps; {updates} updates "
          f"in {stats.steps:,} agent steps (training games {scores})")
    print()
    header = f"{'layer variable':28s} {'weights':>9s} {'median √v̂':>11s}" + "".join(
        f"{'kept, ε=' + format(e, 'g'):>16s}" for e in epsilons) + "   (kept: √v̂ / (√v̂ + ε), once β₂ᵗ ≈ 0)"
    print(header)
    total = sum(v.size for v in moments.values())
    kept_all = {e: [] for e in epsilons}
    for name, v in moments.items():
        scale = np.sqrt(v).ravel()
        kept = {e: scale / (scale + e) for e in epsilons}
        for e in epsilons:
            kept_all[e].append(kept[e])
        print(f"{name:28s} {scale.size:9,d} {np.median(scale):10.2e}" +
              "".join(f"{np.median(kept[e]):16.2f}" for e in epsilons))
    print(f"{'all weights':28s} {total:9,d} {'':10s}" +
          "".join(f"{np.median(np.concatenate(kept_all[e])):16.2f}" for e in epsilons))


if __name__ == "__main__":
    main()
