"""dqnviz: train DQN agents on Atari and see what they learned.

The analysis functions work on any Keras 3 image model::

    import dqnviz
    snapshot = dqnviz.load_snapshot("snapshots/breakout_13.keras")
    images = dqnviz.guided_backprop(snapshot.model, states, "conv2", 5)
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
    "guided_backprop": "dqnviz.analysis",
    "saliency": "dqnviz.analysis",
    "receptive_field": "dqnviz.analysis",
    "effective_receptive_field": "dqnviz.analysis",
    "encode_rgb": "dqnviz.analysis",
    "encode_gradient_rgb": "dqnviz.analysis",
    "frames_strip": "dqnviz.analysis",
    "conv_layers": "dqnviz.analysis",
    "top_activations": "dqnviz.analysis",
    "UserError": "dqnviz.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    # Lazy, so `import dqnviz` and `dqnviz --help` do not start a Keras backend.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dqnviz' has no attribute {name!r}")
