"""dqnviz: train DQN agents on Atari and see what they learned.

The analysis functions work on any Keras 3 image model::

    import dqnviz
    snapshot = dqnviz.load_snapshot("snapshots/breakout_13.keras")
    record = dqnviz.play_games(snapshot.model, dqnviz.env_for_snapshot(snapshot.meta), max_steps=200)
    images = dqnviz.guided_backprop(snapshot.model, record.states, "conv2", 5)

Snapshots and games: load_snapshot, save_snapshot, Snapshot, build_q_network, TrainConfig,
resolve_rom, AtariEnv, env_for_snapshot, play_games.
Analysis (dqnviz.analysis): guided_backprop, saliency, receptive_field, effective_receptive_field,
top_activations, top_activations_by_layer, full_history, conv_layers, image_layers, rectified_by,
temporal_lean, linear_cka, encode_rgb, encode_gradient_rgb, frames_strip.
Errors: UserError (a user's mistake, with a one-line message); ZeroGradientWarning (guided_backprop
images that are all zero, with their cause); UnguidedCodeWarning (a layer whose own code guided
backprop's rule cannot reach).
Report: nvis_report, the ``dqnviz nvis`` page for any Keras image model and the states you give::

    dqnviz.nvis_report(model, record.states, "my_agent.html", filters="top8")

The names are imported on first use, so ``import dqnviz`` does not start a Keras backend.
"""

__version__ = "0.1.0"

_LAZY = {
    "load_snapshot": "dqnviz.snapshot",
    "save_snapshot": "dqnviz.snapshot",
    "Snapshot": "dqnviz.snapshot",
    "build_q_network": "dqnviz.network",
    "TrainConfig": "dqnviz.config",
    "resolve_rom": "dqnviz.atari",
    "AtariEnv": "dqnviz.atari",
    "env_for_snapshot": "dqnviz.agent",
    "play_games": "dqnviz.agent",
    "guided_backprop": "dqnviz.analysis",
    "ZeroGradientWarning": "dqnviz.analysis",
    "UnguidedCodeWarning": "dqnviz.analysis",
    "saliency": "dqnviz.analysis",
    "receptive_field": "dqnviz.analysis",
    "effective_receptive_field": "dqnviz.analysis",
    "encode_rgb": "dqnviz.analysis",
    "encode_gradient_rgb": "dqnviz.analysis",
    "frames_strip": "dqnviz.analysis",
    "conv_layers": "dqnviz.analysis",
    "image_layers": "dqnviz.analysis",
    "rectified_by": "dqnviz.analysis",
    "temporal_lean": "dqnviz.analysis",
    "linear_cka": "dqnviz.analysis",
    "top_activations": "dqnviz.analysis",
    "top_activations_by_layer": "dqnviz.analysis",
    "full_history": "dqnviz.analysis",
    "nvis_report": "dqnviz.report.nvis",
    "UserError": "dqnviz.errors",
}

__all__ = sorted(_LAZY)


def __dir__():
    """The lazy names too, for tab completion and ``help(dqnviz)``."""
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name):
    # Lazy, so `import dqnviz` and `dqnviz --help` do not start a Keras backend.
    if name in _LAZY:
        import importlib

        if name != "UserError":  # every other name leads to Keras: start its backend quietly first
            from dqnviz.backend.choice import start_for_the_api

            start_for_the_api()
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dqnviz' has no attribute {name!r}")
