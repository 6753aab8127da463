"""The states of a snapshot's report: :func:`gather` plays games with the snapshot and
analyses the states it acted on."""

from __future__ import annotations

import time

from dqnviz.errors import UserError
from dqnviz.report.nvis.findings import NvisData, analyse
from dqnviz.report.nvis.states import state_view


def gather(snapshot, layers, filters: dict, games=1, epsilon=0.05, seed=0, max_steps=None,
           progress=True, saliency_states=3) -> NvisData:
    """Play games with a snapshot, then :func:`analyse` the states it acted on."""
    from dqnviz.agent import checked_env_for_snapshot, play_games
    from dqnviz.config import TEST_MAX_FRAMES
    from dqnviz.progress import Progress, plural

    model = snapshot.model
    t0 = time.perf_counter()
    env = checked_env_for_snapshot(snapshot, seed=seed)
    frame_skip = max(int(snapshot.meta.get("preprocessing", {}).get("frame_skip", 4)), 1)
    total = max_steps or games * (TEST_MAX_FRAMES // frame_skip)
    with Progress(f"play {games} {plural('game', games)}", total=total, enabled=progress) as bar:
        record = play_games(model, env, games=games, epsilon=epsilon, seed=seed, max_steps=max_steps,
                            on_step=lambda step, score: bar.update(step, score=float(score)))
    played = time.perf_counter() - t0
    states = record.states
    if len(states) < 1:
        raise UserError(f"collected {len(states)} game states: nothing to analyse "
                        "(play more games or raise --max-steps)")
    data = analyse(model, states, record.q_values, layers, filters, state_view(states, frame_stack=True),
                   progress=progress, saliency_states=saliency_states)
    data.snapshot, data.record = snapshot, record
    data.timings = {"play": played, **data.timings}
    return data
