"""Data and page for ``dqnviz compare``: the filters of several snapshots side by side, with numbers.

:func:`gather` loads nothing itself: it takes loaded snapshots (and, asked to, lets their
networks go once the pairs they are in are done), plays games with each (its own game), and
computes everything the page shows: filter cards (input, guided backprop, receptive field box),
first-layer weights, temporal lean, effective receptive fields, and the similarity
numbers of :mod:`dqnviz.analysis.similarity` (Hungarian filter matching with a random-network
baseline, linear CKA per layer on each game's own states, and the cross-layer similarity of
guided-backprop patterns), and how far each network moved from the weights its run started from
(:func:`dqnviz.snapshot.starting_point`; two runs with one seed started identical, see :func:`shared_start`).
:func:`build_context` turns that into the context of
``templates/compare.html.j2``.

Layers are compared where they match: a view is computed for a layer only when every snapshot has
a layer of that name with the same output shape (and, for weights, the same kernel shape);
everything else is listed as skipped, with the reason.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from dqnviz.analysis import similarity as sim
from dqnviz.errors import UserError
from dqnviz.snapshot import starting_point
from dqnviz.report.render import MODEBAR_ROOM, gradient_shares, script_json, with_narrow_layout

CKA_STATES = 256  # states (evenly spaced over the games) per game for CKA
ERF_STATES = 16  # states for the effective receptive field
PATTERN_STATES = 16  # states for the cross-layer guided-backprop similarity
BASELINE_SEED = 12345  # the randomly initialised network of the filter-matching baseline
# the untrained networks of the CKA chance level: every pair of them (6 networks: 15 pairs) on the same states
CHANCE_SEEDS = tuple(BASELINE_SEED + k for k in range(6))
CHANCE_QUANTILES = (0.05, 0.95)  # the band of the chance level: 90 % of the untrained pairs lie within it
STREAM_GAP = 0.6  # extra room on the CKA chart's x axis between the trunk and each stream of a dueling head
LEAST_HISTORY = 3  # a card shows a state's last three frames t-2, t-1, t as red, green and blue


class KeptStates:
    """The states of a played game that are read after its snapshot's own analysis, under their
    indices in the game: ``len()``, ``shape`` and ``dtype`` are the whole game's, ``states[i]``
    and ``states[indices]`` give kept states, and any other index is an IndexError.

    :func:`gather` keeps the states of the filter cards (drawn on the page) and of CKA, a few
    hundred, and lets the rest of each game go once that snapshot's cards are made.
    """

    def __init__(self, states: np.ndarray, keep):
        keep = np.unique(np.asarray(keep, np.int64))
        self.shape, self.dtype = states.shape, states.dtype
        self._rows = states[keep]  # a copy: the game's own array can be freed
        self._row_of = {int(index): row for row, index in enumerate(keep)}

    def __len__(self) -> int:
        return self.shape[0]

    def _row(self, index) -> int:
        try:
            return self._row_of[int(index)]
        except KeyError:
            raise IndexError(f"state {int(index)} of {len(self)} was not kept") from None

    def __getitem__(self, index) -> np.ndarray:
        """``states[i]`` for an integer i, ``states[indices]`` for an integer array of indices
        (as in the game, from 0): slices, masks and negative indices would name states by their
        place among the kept ones, not in the game, so they are refused."""
        if isinstance(index, (int, np.integer)):
            return self._rows[self._row(index)]
        indices = np.asarray(index)
        if isinstance(index, (slice, tuple)) or indices.dtype.kind not in "iu":
            raise TypeError(f"kept states are read by their indices in the game (integers), not by {index!r}")
        return self._rows[np.array([self._row(i) for i in indices.ravel()], np.int64).reshape(indices.shape)]

    def __iter__(self):
        raise TypeError("kept states are not the whole game: read them by their indices")

    def __array__(self, dtype=None, copy=None):
        raise TypeError("kept states are not the whole game: read them by their indices")


@dataclass(frozen=True)
class NetworkFacts:
    """What the page and the chance levels read of a network after :func:`gather` has let it go."""

    architecture: tuple  # (actions, dueling, history, frame shape): see :func:`architecture`
    name: str  # the Keras model's name
    kernel_layers: tuple  # the layers with weights, in model order

    @classmethod
    def of(cls, model) -> "NetworkFacts":
        return cls(architecture(model), model.name, tuple(layer.name for layer in model.layers if layer.weights))


@dataclass
class Played:
    """One snapshot with the states it played and its layer facts (``states``: after the snapshot's
    own analysis, only those read later, as :class:`KeptStates`). ``gather(…, let_go=True)`` lets
    the network go (``snapshot.model`` None) once no later pair needs it; :attr:`network` keeps
    what is read of it afterwards."""

    snapshot: object
    states: np.ndarray | KeptStates | None  # None until played; KeptStates once its own analysis is done
    scores: list
    conv: list  # conv layer names
    shapes: dict  # layer name -> output shape (without batch)
    kernels: dict  # conv layer name -> kernel shape
    ended: bool = True  # the last game ended (False: --max-steps cut it, its score is a score so far)
    digest: str = ""  # of every state played, in order: equal digests, the same game step for step
    facts: NetworkFacts | None = None  # recorded from the network while it is loaded (see network)

    @property
    def name(self):
        return self.snapshot.name

    @property
    def network(self) -> NetworkFacts:
        """The network's facts, recorded the first time they are read (gather reads them before it
        lets the network go)."""
        if self.facts is None:
            self.facts = NetworkFacts.of(self.model)
        return self.facts

    @property
    def model(self):
        return self.snapshot.model

    @property
    def meta(self):
        return self.snapshot.meta


@dataclass
class CompareData:
    played: list
    evolution: bool  # one game at several epochs (sorted by epoch)
    pairs: list  # (i, j) indices into played that are compared
    conv_layers: list  # conv layers compared
    cka_layers: list  # all layers with CKA
    cards: dict  # layer -> snapshot index -> [card dict]
    weights: list  # per snapshot: (order of filters, kernel (8, 8, C, F)) or None
    lean: list  # per snapshot: energy per input frame or None
    fields: dict  # layer -> snapshot index -> {"size", "theoretical", "stride"}
    matching: list  # dicts per pair
    baseline: dict  # snapshot index -> mean matched cosine vs a random network; "random" -> random vs random
    # dicts per pair, layer and states: {"a", "b", "on", "layer", "value"} and the chance level of that value,
    # "chance" (mean CKA of untrained pairs on the same states), "chance_range" (5th, 95th percentile of
    # those pairs, CHANCE_QUANTILES), "chance_draws" (one value per pair)
    cka: list
    patterns: list  # per snapshot: (mean, {pair: value}) or None
    skipped: list  # (view, reason)
    timings: dict = field(default_factory=dict)
    start: list = field(default_factory=list)  # per snapshot: dqnviz.snapshot.StartingPoint
    # per snapshot: its first-layer filters in matched order (row r of every snapshot is one matched
    # set), and each row's cosine with its partner in the column it was matched to (None: the first)
    orders: list = field(default_factory=list)
    partner_cosine: list = field(default_factory=list)
    silent: dict = field(default_factory=dict)  # layer -> snapshot index -> filters at ≤ 0 on every state
    shared_start: list = field(default_factory=list)  # dicts per pair that started from the same weights


def one_run(snapshots: list) -> bool:
    """Whether ``snapshots`` are epochs of one training run: one game and one run name
    (``snapshots/<run>_<epoch>.keras``), and then

    * no two of one epoch (forks of one snapshot, or copies);
    * where every one records a ``run_id`` (kept through a run's resumes): the same one;
    * where some do: the same one, and those without one older than its ``run_id_since`` (the
      epoch a run begun before run identities took one; 0 for a run begun with one), and
    * where none or only some do: the same network (its input history and dueling head, as
      ``--resume`` checks them; the game fixes the actions), and the same
      ``init_seed`` and ``initialised_under`` wherever two record them.

    Two runs of one name (``dqnviz train breakout`` here and the shipped ``breakout_13``) are
    then told apart by their identities, or failing those by their networks or first weights.
    """
    if len(snapshots) < 2:
        return False
    if len({(s.meta.get("game"), s.meta.get("run") or s.meta.get("game")) for s in snapshots}) != 1:
        return False
    if len({float(s.meta.get("epoch") or 0) for s in snapshots}) < len(snapshots):
        return False  # two of one epoch: forks of one snapshot, or copies, are no time line
    ids = [s.meta.get("run_id") for s in snapshots]
    if any(ids):
        if len({i for i in ids if i}) > 1:
            return False
        # a snapshot without an identity is this run's only if older than the identity: a run begun
        # before identities, resumed as itself, carries one from ``run_id_since`` on
        since = min(int(s.meta.get("run_id_since", 0)) for s in snapshots if s.meta.get("run_id"))
        if any(not s.meta.get("run_id") and float(s.meta.get("epoch") or 0) >= since for s in snapshots):
            return False
        if all(ids):
            return True
    from dqnviz.resume import network_options  # what --resume checks a network by

    if len({tuple(sorted(network_options(s).items())) for s in snapshots if s.model is not None}) > 1:
        return False
    for key in ("init_seed", "initialised_under"):
        if len({s.meta[key] for s in snapshots if s.meta.get(key) is not None}) > 1:
            return False
    return True


def order_snapshots(snapshots: list) -> tuple[list, bool]:
    """Snapshots of one run at several epochs (:func:`one_run`) are sorted by epoch (the evolution
    view). Agents of different games, or of different runs of one game, keep the order given: their
    epochs count different trainings, so they are no time line."""
    if one_run(snapshots):
        return sorted(snapshots, key=lambda s: (float(s.meta.get("epoch") or 0), s.name)), True
    return list(snapshots), False


def layer_facts(model):
    import keras

    conv, shapes, kernels = [], {}, {}
    for layer in model.layers:
        try:
            shape = tuple(int(d) for d in layer.output.shape[1:])
        except (AttributeError, ValueError, TypeError):
            continue
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.Conv2D):
            conv.append(layer.name)
            kernels[layer.name] = tuple(int(d) for d in layer.kernel.shape)
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) or layer.name == "q":
            shapes[layer.name] = shape
    return conv, shapes, kernels


def _evenly(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def _activations(model, states, layers, batch_size=128) -> dict:
    """{layer: its outputs for ``states``}, every layer from the same forward passes (compiled
    under JAX), in inference mode."""
    from dqnviz.analysis._model import compiled_runner, predict

    outputs = [model.get_layer(name).output for name in layers]
    run = compiled_runner(model, outputs if len(outputs) > 1 else outputs[0])
    values = predict(run, np.asarray(states, np.float32), batch_size)
    values = values if len(outputs) > 1 else (values,)
    return {name: np.asarray(value, np.float32) for name, value in zip(layers, values)}


def _common_layers(played: list, kind: str) -> tuple[list, list]:
    """Layers present in every snapshot with equal output shapes; plus (view, reason) for the rest."""
    skipped = []
    if kind == "conv":
        names = [n for n in played[0].conv]
        union = list(dict.fromkeys(n for p in played for n in p.conv))
    else:
        names = list(played[0].shapes)
        union = list(dict.fromkeys(n for p in played for n in p.shapes))
    keep = []
    for name in union:
        missing = [p.name for p in played if name not in (p.conv if kind == "conv" else p.shapes)]
        if missing:
            have = [p.name for p in played if p.name not in missing]
            skipped.append((name, f"only {', '.join(have)} {'has' if len(have) == 1 else 'have'} a layer {name!r} "
                                  f"({', '.join(missing)} {'does' if len(missing) == 1 else 'do'} not)"))
            continue
        shapes = {p.shapes[name] for p in played}
        if len(shapes) > 1:
            detail = ", ".join(f"{p.name} {'×'.join(map(str, p.shapes[name]))}" for p in played)
            reason = f"output shapes differ ({detail})"
            if name in ("q", "advantage"):
                counts = ", ".join(f"{p.name} {p.shapes[name][-1]}" for p in played)
                reason = (f"different action sets ({counts} actions): the outputs are Q-values of different "
                          "actions, so unit i means something else in each network")
            skipped.append((name, reason))
            continue
        if name in names or kind != "conv":
            keep.append(name)
    return keep, skipped


ALL_PAIRS_UP_TO = 4  # snapshots of different runs: every pair up to this many (6 pairs), else each against the first


def last_turns(pairs: list, n: int) -> list:
    """For each of ``n`` snapshots, the turn of :func:`gather` after which its network is let go:
    that of the last snapshot it is paired with (pairs (i, j), i < j), or its own if none comes
    after it. So only the networks that later pairs need are held: for one run's epochs (each
    with the one before) the last two, for ``--pairs first`` the first and the current one."""
    return [max([i, *(j for a, j in pairs if a == i)]) for i in range(n)]


def choose_pairs(n: int, evolution: bool, pairs: str = "auto") -> list:
    """The pairs (i, j), i < j, that get similarity numbers (filter matching, CKA, shared starts).

    ``pairs``: ``"all"``, every pair (n(n − 1)/2); ``"first"``, each snapshot against the first
    (n − 1); ``"auto"``, consecutive epochs for one run's snapshots (the evolution view), else
    every pair up to :data:`ALL_PAIRS_UP_TO` snapshots and each against the first beyond (8
    runs: 7 pairs, not 28, whose tables and legends no one could read).
    """
    if pairs not in ("auto", "all", "first"):
        raise ValueError(f"pairs must be 'auto', 'all' or 'first', not {pairs!r}")
    if pairs == "auto":
        if evolution:
            return [(i, i + 1) for i in range(n - 1)]
        pairs = "all" if n <= ALL_PAIRS_UP_TO else "first"
    if pairs == "first":
        return [(0, j) for j in range(1, n)]
    return list(combinations(range(n), 2))


def _unit_cards(analysis, model, states, layer, filters: list, units: list, stride_size) -> list:
    """Each filter's strongest unit over ``states`` (``units``, from
    :func:`~dqnviz.analysis.top_activations`) and its guided-backprop image (one batched pass).

    The image is the gradient of the very unit the card names (its position is passed on). A filter
    whose largest activation is ≤ 0 never fires on these states (a dead ReLU, as ``dqnviz nvis``
    calls it): it has no strongest unit, so its card is marked ``silent``.
    """
    size, stride = stride_size
    best = np.stack([states[int(s)] for s, _, _ in units])
    positions = np.array([position for _, position, _ in units], np.int64)
    with warnings.catch_warnings():  # a filter that never fires has a card marked silent, not a warning
        warnings.simplefilter("ignore", analysis.ZeroGradientWarning)
        gradients = np.asarray(analysis.guided_backprop(model, best, layer, np.asarray(filters, np.int64),
                                                        position=positions))
    cards = []
    for f, (s, (y, x), value), gradient in zip(filters, units, gradients):
        cards.append({"filter": int(f), "state": int(s), "y": int(y), "x": int(x), "value": float(value),
                      "box": (int(x) * stride, int(y) * stride, size, size), "gradient": gradient,
                      "silent": value <= 0})
    return cards


def check_history(snapshots: list) -> None:
    """Refuse, before any game is played, snapshots whose states stack fewer than three frames."""
    for snapshot in snapshots:
        snapshot.check_history("compare", f"at least {LEAST_HISTORY}", least=LEAST_HISTORY,
                               why="its cards show a state's last three frames t-2, t-1, t as red, green and blue")


def check_filter_count(count, snapshots: list) -> int:
    """``--filters N`` must lie in 1..(most filters of any conv layer), as ``dqnviz nvis`` requires; a
    count above one layer's filters (but within the largest) shows all of that layer's. ``"all"``
    is that largest count.

    Returns:
        The count, ``"all"`` resolved.

    Raises:
        UserError: the count is out of range.
    """
    import dqnviz.analysis as analysis
    from dqnviz.report.nvis import check_filter_range

    channels = {}
    for snapshot in snapshots:
        for name in analysis.conv_layers(snapshot.model):
            n = int(snapshot.model.get_layer(name).output.shape[-1])
            channels[name] = max(channels.get(name, 0), n)
    if count == "all":
        return max(channels.values())
    check_filter_range(count, channels)
    return count


def four_frames(images: np.ndarray) -> np.ndarray:
    """States or gradients ``(..., H, W, history ≥ 3)`` in the four-frame layout that
    :func:`~dqnviz.analysis.encode_rgb` reads (it shows frames t-2, t-1, t as RGB): their last four
    frames, or with history 3 a zero frame t-3 put in front, which the RGB image does not show."""
    images = np.asarray(images)
    if images.shape[-1] >= 4:
        return images[..., -4:]
    padding = np.zeros(images.shape[:-1] + (4 - images.shape[-1],), images.dtype)
    return np.concatenate([padding, images], axis=-1)


def frame_labels(history: int) -> list:
    """``["t-3", "t-2", "t-1", "t"]`` for a history of 4: the input frames, oldest first."""
    return [f"t-{history - 1 - t}" if t < history - 1 else "t" for t in range(history)]


def _int(value):
    value = np.asarray(value).ravel()
    return int(value[0])


def gather(snapshots: list, filters: int = 8, games: int = 1, epsilon: float = 0.05, seed: int = 0,
           max_steps: int | None = None, progress: bool = True, pairs: str = "auto",
           let_go: bool = False) -> CompareData:
    """Play with every snapshot and compute all views and numbers of the compare page; ``pairs``:
    which pairs of snapshots get similarity numbers (see :func:`choose_pairs`).

    ``let_go``: for a caller done with the snapshots once the page is built (``dqnviz compare``):
    each snapshot's network is let go (its ``model`` set to None) after the turn of the last
    snapshot it is paired with (:func:`last_turns`), and with it the W₀ and W − W₀ its starting
    point rebuilt, so that many snapshots do not hold every network to the end. The snapshots
    are then spent, also when gather stops part-way (load them again to use them). Without it they
    are left as they were given."""
    import dqnviz.analysis as analysis
    from dqnviz.agent import checked_env_for_snapshot, play_games
    from dqnviz.analysis._model import forget_compiled
    from dqnviz.analysis.probes import silent_filters
    from dqnviz.progress import Progress
    from dqnviz.report.nvis.options import StrongestFilters

    timings = dict.fromkeys(("play", "cards+erf", "cka", "cka chance", "patterns"), 0.0)
    check_history(snapshots)
    snapshots, evolution = order_snapshots(snapshots)
    # The layers compared come from the networks alone; then each snapshot in turn plays its games
    # and goes through everything that reads all its states, after which it keeps only the states
    # read later (KeptStates). Memory then grows by a few MB a snapshot, not by whole games (a
    # Pong game of ~2,000 states is 55 MB): 24 epochs of one run no longer hold 24 games at once.
    played = [Played(snapshot, None, [], *layer_facts(snapshot.model), facts=NetworkFacts.of(snapshot.model))
              for snapshot in snapshots]

    conv_layers, skipped_conv = _common_layers(played, "conv")
    cka_layers, skipped_cka = _common_layers(played, "all")
    skipped = []
    for name, reason in skipped_conv:
        skipped.append((f"{name}: filter cards, receptive fields", reason))
    for name, reason in skipped_cka:
        if name not in dict(skipped_conv):
            skipped.append((f"{name}: representation similarity (CKA)", reason))
    pairs = choose_pairs(len(played), evolution, pairs)
    # the turn after which each network is let go (with let_go): a snapshot object given twice,
    # after the later of its places' turns
    last_needed = last_turns(pairs, len(played))
    let_go_after = [max(last_needed[k] for k, q in enumerate(played) if q.snapshot is p.snapshot) for p in played]
    input_shapes = {tuple(int(d) for d in p.model.inputs[0].shape[1:]) for p in played}
    cka_possible = len(input_shapes) == 1 and bool(cka_layers)

    untrained = functools.cache(untrained_network)  # shared by the filter-matching baseline and the CKA chance level

    # --- first-layer weights: conv1 matched across snapshots (the cards of the other layers show
    # each snapshot's most active filters)
    t0 = time.perf_counter()
    first = conv_layers[0] if conv_layers else None
    weights, lean, matching, baseline = [None] * len(played), [None] * len(played), [], {}
    orders, partner_cosine = [None] * len(played), [None] * len(played)
    kernel_shapes = {p.kernels.get(first) for p in played} if first else set()
    if first and len(kernel_shapes) == 1:
        kernels = [p.model.get_layer(first).get_weights()[0] for p in played]
        rows = [sim.kernels_as_rows(k) for k in kernels]
        n_filters = kernels[0].shape[-1]
        orders[0] = np.arange(n_filters)
        for i in range(1, len(played)):
            ref = i - 1 if evolution else 0
            match = sim.match_filters(rows[ref][orders[ref]], rows[i])
            order = np.empty(n_filters, int)
            order[match.rows] = match.cols
            orders[i] = order
            partner_cosine[i] = np.full(n_filters, np.nan)
            partner_cosine[i][match.rows] = match.similarities
        for i, p in enumerate(played):
            weights[i] = kernels[i]
            lean[i] = sim.temporal_lean(kernels[i])
        for i, j in pairs:
            match = sim.match_filters(rows[i], rows[j])
            matching.append({"a": i, "b": j, "mean": match.mean, "similarities": match.similarities,
                             "median": float(np.median(match.similarities))})
        baseline.update(_random_baseline(played, first, rows, untrained))
    elif first:
        skipped.append((f"{first}: weights, filter matching, temporal lean",
                        "kernel shapes differ (" + ", ".join(f"{p.name} {p.kernels.get(first)}" for p in played) + ")"))
    timings["cards+erf"] += time.perf_counter() - t0

    cards = {layer: {} for layer in conv_layers}
    fields = {layer: {} for layer in conv_layers}
    silent = {layer: {} for layer in conv_layers}
    patterns = []
    # (snapshot, states owner) -> {layer: unit Gram matrix}: each representation reduced at once to
    # its N × N matrix (N = CKA_STATES), CKA(X, Y) = ⟨K̂_X, K̂_Y⟩_F (sim.unit_gram), so that memory
    # does not grow with the activations of every (network, states) pair (23 MB each for a Nature
    # network, 64 of them for 8 snapshots of separate runs) and each matrix is made once. A pair's
    # matrices are made in the turn of its later snapshot, while both networks are loaded.
    grams, starts, shared = {}, [None] * len(played), {}
    # each snapshot's CKA states, taken from its kept states when read (not held twice)
    subsets = _CkaStates(played)
    # every snapshot's game is checked before the first is played: a wrong one is said up front,
    # not after minutes of the others' analyses
    envs = [checked_env_for_snapshot(p.snapshot, seed=seed) for p in played]
    for i, p in enumerate(played):
        # --- the games
        t0 = time.perf_counter()
        env, envs[i] = envs[i], None
        total = max_steps or games * 4500
        with Progress(f"play {p.name}", total=total, enabled=progress) as bar:
            record = play_games(p.model, env, games=games, epsilon=epsilon, seed=seed, max_steps=max_steps,
                                on_step=lambda step, score: bar.update(step, score=float(score)))
        if len(record.states) == 0:
            raise UserError(f"{p.name}: no states were played; raise --max-steps")
        p.states, p.scores = record.states, [float(s) for s in record.scores]
        p.ended = not (max_steps and len(record.states) >= max_steps) or env.game_over
        p.digest = states_digest(p.states)
        del record, env
        timings["play"] += time.perf_counter() - t0

        # --- filter cards and receptive fields: every filter's strongest unit over all the states
        # played, all layers from the same passes (as in nvis: a game's first states, blank frames
        # before the start, only if nothing else fires)
        t0 = time.perf_counter()
        with Progress(f"filters of {p.name}", total=len(conv_layers), unit="layers", enabled=progress) as bar:
            in_play = analysis.full_history(p.states)
            every = analysis.top_activations_by_layer(p.model, p.states, conv_layers, prefer=in_play)
            for li, layer in enumerate(conv_layers):
                silent[layer][i] = silent_filters(p.model, layer, every[li])
                count = min(filters, len(every[li]))
                if layer == first and orders[i] is not None:
                    chosen = [int(f) for f in orders[i][:count]]
                else:  # strongest first, by the activation its card shows (as nvis: those firing in play first)
                    chosen = StrongestFilters(count).choose(every[li], in_play)
                size, stride = analysis.receptive_field(p.model, layer)
                size, stride = _int(size), _int(stride)
                cards[layer][i] = _unit_cards(analysis, p.model, p.states, layer, chosen,
                                              [every[li][f] for f in chosen], (size, stride))
                erf = analysis.effective_receptive_field(p.model, p.states[_evenly(len(p.states), ERF_STATES)], layer)
                fields[layer][i] = {"size": int(erf["size"]), "core": int(erf["core"]), "theoretical": size,
                                    "stride": stride}
                bar.update(li + 1)
        timings["cards+erf"] += time.perf_counter() - t0

        # --- cross-layer similarity of guided-backprop patterns, on the snapshot's own states
        t0 = time.perf_counter()
        patterns.append(_pattern_similarity(p, analysis))
        timings["patterns"] += time.perf_counter() - t0

        # --- what is read later: the cards' states (the page) and the CKA states
        shown = [c["state"] for layer in conv_layers for c in cards[layer][i]]
        p.states = KeptStates(p.states, shown + list(_evenly(len(p.states), CKA_STATES)))
        # and the network's compiled analyses: CKA compiles one pass of its own per network below
        forget_compiled(p.model)
        starts[i] = starting_point(p.snapshot)

        # --- CKA's Gram matrices of the pairs whose later snapshot this is: each network of the
        # pair on each one's states
        if cka_possible:
            t0 = time.perf_counter()
            wanted = [(who, owner) for a, b in pairs if b == i for owner in dict.fromkeys((a, b)) for who in (a, b)]
            wanted = [key for key in dict.fromkeys(wanted) if key not in grams]
            partners = [played[a].name for a, b in pairs if b == i]
            label = f"CKA of {p.name} with " + (partners[0] if len(partners) == 1 else f"{len(partners)} snapshots before it")
            with Progress(label, total=len(wanted), unit="passes", enabled=progress and bool(wanted)) as bar:
                for k, (who, owner) in enumerate(wanted, start=1):
                    grams[(who, owner)] = {layer: sim.unit_gram(values) for layer, values in
                                           _activations(played[who].model, subsets[owner], cka_layers).items()}
                    bar.update(k)
            timings["cka"] += time.perf_counter() - t0
        # --- the pairs whose later snapshot this is: did they start from the same weights?
        shared.update({(entry["a"], entry["b"]): entry
                       for entry in shared_start(played, starts, [(a, b) for a, b in pairs if b == i])})
        # --- the networks no later pair needs are let go (a Keras model holds reference cycles,
        # which only the cycle collector frees), and so are their W₀ and W − W₀ (13 MB for a
        # Nature network), which only shared_start reads
        if let_go:
            done = [w for w in range(i + 1) if let_go_after[w] == i and played[w].snapshot.model is not None]
            for w in done:
                forget_compiled(played[w].model)
                played[w].snapshot.model = None
                starts[w].initial, starts[w].change = None, {}
            if done:
                gc.collect()

    # --- CKA on each game's own states, from the Gram matrices
    cka = []
    if cka_possible:
        for i, j in pairs:
            for owner in dict.fromkeys((i, j)):
                for layer in cka_layers:
                    cka.append({"a": i, "b": j, "on": owner, "layer": layer,
                                "value": sim.cka_of_grams(grams[(i, owner)][layer], grams[(j, owner)][layer])})
    elif cka_layers:
        skipped.append(("representation similarity (CKA)", "the snapshots take inputs of different shapes "
                        f"({', '.join(str(s) for s in input_shapes)}), so they cannot see the same states"))

    # --- the chance level of every CKA value: untrained networks of the same architectures, same states
    t0 = time.perf_counter()
    if cka:
        with Progress("CKA of untrained networks, on each snapshot's states", total=len(_state_owners(pairs)),
                      unit="snapshots", enabled=progress) as bar:
            levels = chance_levels(played, pairs, subsets, cka_layers, untrained, on_states=bar.update)
        for entry in cka:
            level = levels.get((entry["a"], entry["b"], entry["on"]), {}).get(entry["layer"])
            entry.update(level or {"chance": None, "chance_range": None, "chance_draws": []})
    timings["cka chance"] = time.perf_counter() - t0

    return CompareData(played, evolution, pairs, conv_layers, cka_layers, cards, weights, lean, fields,
                       matching, baseline, cka, patterns, skipped, timings,
                       start=starts, shared_start=[shared[pair] for pair in pairs if pair in shared], orders=orders,
                       partner_cosine=partner_cosine, silent=silent)


class _CkaStates:
    """``subsets[i]``: the CKA states of ``played[i]`` (:data:`CKA_STATES` of its game, evenly
    spaced), copied out of its kept states at each read."""

    def __init__(self, played: list):
        self.played = played

    def __getitem__(self, i: int) -> np.ndarray:
        states = self.played[i].states
        return states[_evenly(len(states), CKA_STATES)]


def states_digest(states: np.ndarray) -> str:
    """A digest of ``states`` (their shape, dtype and bytes): two snapshots whose digests are equal
    met the same states, step for step (same weights, or weights that act alike where it shows on
    the screen), so their numbers on one's states are those on the other's."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((states.shape, str(states.dtype))).encode())
    digest.update(np.ascontiguousarray(states).data)
    return digest.hexdigest()


def _pattern_similarity(p: Played, analysis):
    """The cross-layer similarity of ``p``'s guided-backprop patterns on :data:`PATTERN_STATES` of
    its own states (:func:`dqnviz.analysis.similarity.cross_layer_similarity`): per state, the
    pattern of each conv layer's most active filter. None with fewer than two conv layers."""
    if len(p.conv) < 2:
        return None
    states = p.states[_evenly(len(p.states), PATTERN_STATES)]
    outputs = _activations(p.model, states, p.conv)
    images = {}
    for layer in p.conv:
        a = outputs[layer]
        top = a.reshape(len(a), -1, a.shape[-1]).max(axis=1).argmax(axis=1)  # most active filter per state
        with warnings.catch_warnings():  # a state on which no filter fires: a zero image, as it should be
            warnings.simplefilter("ignore", analysis.ZeroGradientWarning)
            images[layer] = np.asarray(analysis.guided_backprop(p.model, states, layer, top.astype(np.int64)))
    return sim.cross_layer_similarity(images)


def shared_start(played: list, starts: list, pairs: list) -> list:
    """Pairs that started from the same weights, with how alike their changes since then are.

    Two runs start identically in every layer before the heads when they used the same seed,
    backend, initialisation scheme (``"shared"``, one initialiser drawing every kernel, or
    ``"independent"``) and input shape (``build_q_network`` draws conv1, conv2, conv3, fc in that
    order).
    Then filter i of one network and filter i of the other began as the same filter, and
    ``cos(W_a − W₀, W_b − W₀)`` per layer says whether training moved them the same way (read
    from the starting points' ``initial`` and ``change``: before ``gather(…, let_go=True)`` lets
    them go).
    """
    out = []
    for i, j in pairs:
        a, b = starts[i], starts[j]
        if a.seed is None or a.seed != b.seed or a.backend != b.backend or a.initialisation != b.initialisation:
            continue
        if "conv1" not in played[i].kernels or played[i].kernels["conv1"] != played[j].kernels.get("conv1"):
            continue
        alignment = {}
        if a.initial is not None and b.initial is not None:
            for name in a.initial:
                if name in b.initial and a.initial[name].shape == b.initial[name].shape \
                        and np.array_equal(a.initial[name], b.initial[name]):
                    # NaN, not 0, where a layer did not move: there is no direction to compare
                    da, db = (np.asarray(point.change[name], np.float64) for point in (a, b))
                    norms = np.linalg.norm(da) * np.linalg.norm(db)
                    alignment[name] = float(da @ db / norms) if norms else float("nan")
        out.append({"a": i, "b": j, "seed": a.seed, "backend": a.backend, "alignment": alignment})
    return out


def architecture(model) -> tuple:
    """``(actions, dueling, history, frame shape)`` of a network: what
    :func:`dqnviz.network.build_q_network` needs to build an untrained one like it."""
    from dqnviz.network import DuelingQ

    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    dueling = any(isinstance(layer, DuelingQ) for layer in model.layers)
    return int(model.output_shape[-1]), dueling, shape[-1], shape[:-1]


def untrained_network(arch: tuple, seed: int):
    """An untrained network of architecture ``arch`` (see :func:`architecture`), built by
    :func:`dqnviz.network.build_q_network` with ``seed``; None where that architecture cannot be built.

    Callers wrap it in ``functools.cache`` once per run, so each architecture and seed is built
    once and the networks are freed with the run.
    """
    from dqnviz.network import build_q_network

    actions, dueling, history, frame_shape = arch
    try:
        return build_q_network(actions, dueling=dueling, history=history, frame_shape=frame_shape, seed=seed)
    except Exception:  # an unusual network: no untrained reference rather than no page
        return None


def _output_shape(model, layer):
    try:
        return tuple(int(d) for d in model.get_layer(layer).output.shape[1:])
    except (ValueError, AttributeError, TypeError):
        return None


def _state_owners(pairs: list) -> list:
    """The snapshots whose states the ``pairs`` are compared on (both of each pair), first seen first."""
    return list(dict.fromkeys(owner for i, j in pairs for owner in (i, j)))


def chance_levels(played: list, pairs: list, subsets: list, layers: list, untrained=None,
                  seeds=CHANCE_SEEDS, on_states=None) -> dict:
    """The chance level of CKA: the same layers of untrained networks, on the same states.

    For a pair (i, j) on the states of ``owner``, every pair of seeds s < t gives two untrained
    networks, one shaped like snapshot i (seed s) and one like snapshot j (seed t), both fed
    ``subsets[owner]``; their linear CKA per layer is one draw of what CKA is before any learning.
    With the 6 seeds of :data:`CHANCE_SEEDS` that is 15 draws, summarised by their mean and the
    5th and 95th percentiles (:data:`CHANCE_QUANTILES`, :func:`dqnviz.analysis.similarity.chance_level`).

    The cost is the networks' forward passes, not the pairs: each network's layers are reduced once
    to a :func:`~dqnviz.analysis.similarity.unit_gram` matrix, after which a pair is one dot product.
    A layer whose weights, and those of every layer before it, equal another network's on these
    states (the trunks of two architectures that differ only in their heads, built from one seed)
    shares that network's matrix, so it costs no second pass. The passes of one architecture run
    in one network, each seed's weights loaded into it in turn, so that they are compiled once
    per architecture, not once per seed (under JAX a compile costs more than the pass).

    ``on_states(done)``, if given, is called after each snapshot's states are done (``done`` of
    them so far): a progress bar's ``update``.

    Returns:
        ``{(i, j, owner): {layer: {"chance": mean, "chance_range": (5th, 95th percentile),
        "chance_draws": [...]}}}``, a layer left out where the untrained networks lack it (or it is
        constant on these states).
    """
    untrained = untrained or functools.cache(untrained_network)
    runners = {}  # architecture -> the network whose compiled passes run every seed's weights

    def activations(arch, model, states, layers):
        if arch not in runners:
            runners[arch] = untrained_network(arch, seed=0)
        runner = runners[arch]
        runner.set_weights(model.get_weights())
        return _activations(runner, states, layers)

    out = {}
    for done, owner in enumerate(_state_owners(pairs), start=1):
        grams = {}  # (architecture, seed) -> {layer: unit Gram matrix}, freed after each owner's states
        by_weights = {}  # fingerprint of a layer and all before it -> its unit Gram matrix on these states
        states = subsets[owner]

        def gram_matrices(who, seed):
            key = (played[who].network.architecture, seed)
            if key not in grams:
                model = untrained(*key)
                have = [layer for layer in layers if model is not None
                        and _output_shape(model, layer) == played[who].shapes[layer]]
                prints = _layer_fingerprints(model) if have else {}
                new = list(dict.fromkeys(layer for layer in have if prints[layer] not in by_weights))
                if new:
                    for layer, values in activations(key[0], model, states, new).items():
                        by_weights[prints[layer]] = sim.unit_gram(values)
                grams[key] = {layer: by_weights[prints[layer]] for layer in have}
            return grams[key]

        for i, j in pairs:
            if owner not in (i, j):
                continue
            draws = {layer: [] for layer in layers}
            for s, t in combinations(seeds, 2):
                x, y = gram_matrices(i, s), gram_matrices(j, t)
                for layer in layers:
                    if layer in x and layer in y:
                        draws[layer].append(sim.cka_of_grams(x[layer], y[layer]))
            levels = {layer: sim.chance_level(values, CHANCE_QUANTILES) for layer, values in draws.items()}
            out[(i, j, owner)] = {layer: {"chance": level.mean, "chance_range": (level.low, level.high),
                                          "chance_draws": level.draws}
                                  for layer, level in levels.items() if level is not None}
        if on_states is not None:
            on_states(done)
    return out


def _layer_fingerprints(model) -> dict:
    """``{layer name: digest}`` of each layer's class, configuration and weights together with those
    of every layer before it (``model.layers`` is in graph order, so that covers all it depends on):
    two layers with one digest compute the same function of the input."""
    import hashlib

    running = hashlib.sha256()
    out = {}
    for layer in model.layers:
        running.update(f"{type(layer).__name__}:{_layer_settings(layer)}".encode())
        for value in layer.get_weights():
            value = np.ascontiguousarray(value)
            running.update(f"{value.dtype}{value.shape}".encode())
            running.update(value.tobytes())
        out[layer.name] = running.copy().hexdigest()
    return out


def _layer_settings(layer) -> str:
    """A layer's settings as text: its public attributes that are numbers, strings, tuples of them
    or functions (by name: ``activation``), and its dtype policy. What ``get_config()`` says, read
    without it: under JAX, ``get_config()`` imports TensorFlow (4 s) to check for its types."""
    def plain(value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (tuple, list)):
            items = [plain(v) for v in value]
            return items if all(i is not _SKIP for i in items) else _SKIP
        if callable(value) and hasattr(value, "__name__"):  # an activation function
            return f"{getattr(value, '__module__', '')}.{value.__name__}"
        return _SKIP

    settings = {key: plain(value) for key, value in vars(layer).items() if not key.startswith("_")}
    settings = {key: value for key, value in settings.items() if value is not _SKIP}
    settings["dtype_policy"] = getattr(getattr(layer, "dtype_policy", None), "name", None)
    return json.dumps(settings, sort_keys=True)


_SKIP = object()  # an attribute _layer_settings leaves out: a tensor, a variable, a sub-object


STREAM_LABELS = {"trunk": "trunk", "value": "value stream", "advantage": "advantage stream",
                 "join": "q: joins the streams"}


def layer_streams(networks: list, layers: list) -> list:
    """The compared ``layers`` split into the streams of :func:`dqnviz.network.network_streams`;
    ``networks``: the models, or their :func:`architecture` tuples.

    A dueling network is the trunk conv1 → conv3, two parallel streams fc_value → value and
    fc → advantage, and q, which joins them: drawing one line through all of them would join
    parallel branches as if one followed the other. The layers are split so only where every
    network is dueling; where one is plain, the layers all of them have (conv1 → fc → q) are one
    chain, a path through each network (fc → advantage → q in a dueling one).

    Only dqnviz snapshots reach compare (:func:`dqnviz.snapshot.load_snapshot` refuses a file
    without dqnviz's metadata), so the layer names are normally those of
    :func:`dqnviz.network.build_q_network`.

    Returns:
        ``[{"label", "layers"}]`` in model order, streams without a compared layer left out; one
        chain (label ``None``) for plain networks, or where a compared layer lies in no stream.
    """
    from dqnviz.network import network_streams

    dueling = all((network if isinstance(network, tuple) else architecture(network))[1] for network in networks)
    streams = [{"label": STREAM_LABELS.get(name), "layers": [layer for layer in members if layer in layers]}
               for name, members in network_streams(dueling)]
    streams = [stream for stream in streams if stream["layers"]]
    if len(streams) < 2 or sum(len(stream["layers"]) for stream in streams) < len(layers):
        return [{"label": None, "layers": list(layers)}]
    return streams


def _random_baseline(played: list, layer: str, rows: list, untrained=None) -> dict:
    """Mean matched cosine of each snapshot's first layer against a randomly initialised network.

    The random networks are :func:`dqnviz.network.build_q_network` with a fixed seed, shaped like
    the snapshot; ``"random"`` is two such networks (two seeds) against each other.
    """
    untrained = untrained or functools.cache(untrained_network)

    def random_rows(i, seed):
        """The untrained network's kernels at ``layer`` as rows, or None where there is no such
        network (an unusual architecture) or it has no such layer."""
        model = untrained(played[i].network.architecture, seed)
        if model is None or layer not in {l.name for l in model.layers}:
            return None
        return sim.kernels_as_rows(model.get_layer(layer).get_weights()[0])

    out = {}
    if not played:
        return out
    for i in range(len(played)):
        reference = random_rows(i, BASELINE_SEED)
        if reference is None or reference.shape[1] != rows[i].shape[1]:
            return {}
        out[i] = sim.match_filters(rows[i], reference).mean
    out["random"] = sim.match_filters(random_rows(0, BASELINE_SEED), random_rows(0, BASELINE_SEED + 1)).mean
    return out


# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]


def weight_strip(kernel_filter: np.ndarray, scale: int = 6) -> np.ndarray:
    """One first-layer filter (kh, kw, frames) as a grey strip of its frames, signed: grey 0, white +, black −;
    grey and alpha, with transparent 2-px gaps between the frames (no data: the page's background
    shows through, white or dark)."""
    from dqnviz.report.nvis.images import _strip

    k = np.asarray(kernel_filter, np.float64)
    top = float(np.abs(k).max()) or 1.0
    frames = np.clip(128 + 127 * k / top, 0, 255).astype(np.uint8)
    return _strip(np.moveaxis(frames, -1, 0).repeat(scale, axis=1).repeat(scale, axis=2))


def _layout(**extra):
    base = dict(margin=dict(l=50, r=10, t=36, b=40), paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="white",
                font=dict(size=12), legend=dict(orientation="h", y=1.15))
    base.update(extra)
    return base


LEGEND_ROW = 22  # px per legend entry under a chart
# pairs of snapshots (CKA, filter matching): colours that are not the snapshots' own
PAIR_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
# the layers of one network, in their order (the evolution chart): alike hues kept apart
LAYER_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#e6ab02", "#66a61e", "#a6761d", "#666666"]


def _legend_below(entries: int, height: int) -> dict:
    """``height``, ``margin`` and ``legend`` of a chart ``height`` px tall (plus room for its legend)
    whose legend of ``entries`` lines sits under the x axis title: above the plot, a legend of long
    pair names wrapped down over the lines (and the modebar sits there)."""
    if entries <= 1:
        return dict(height=height)
    bottom = 40 + 30 + LEGEND_ROW * entries
    height += 30 + LEGEND_ROW * entries
    plot = height - 36 - MODEBAR_ROOM - bottom
    return dict(height=height, margin=dict(l=50, r=10, t=36, b=bottom),
                legend=dict(orientation="v", x=0, xanchor="left", yanchor="top", y=-60 / plot, tracegroupgap=0))


def build_context(data: CompareData, options: dict | None = None) -> dict:
    import plotly.graph_objects as go

    import dqnviz.analysis as analysis
    from dqnviz.report.nvis import ImageStore, zoom_window

    images = ImageStore()
    played = data.played
    names = [p.name for p in played]
    snapshots = []
    for i, p in enumerate(played):
        score = p.meta.get("test_score") or {}
        snapshots.append({"index": i, "name": p.name, "game": p.meta.get("game", "?"), "epoch": p.meta.get("epoch", "?"),
                          "actions": int(p.network.architecture[0]), "dueling": bool(p.meta.get("config", {}).get("dueling"))
                          if isinstance(p.meta.get("config"), dict) else "dueling" in p.network.name,
                          "states": int(len(p.states)), "scores": p.scores, "test_score": score.get("average"),
                          "cut": not p.ended,
                          "colour": PALETTE[i % len(PALETTE)], "network": p.network.name})

    state_keys = {}

    def state_image(i, s):
        if (i, s) not in state_keys:
            state_keys[(i, s)] = images.add(analysis.encode_rgb(four_frames(played[i].states[s])))
        return state_keys[(i, s)]

    layers = []
    for layer in data.conv_layers:
        first = layer == (data.conv_layers[0] if data.conv_layers else None) and data.weights[0] is not None
        columns = []
        for i, p in enumerate(played):
            cards = data.cards[layer][i]
            guided = np.asarray(analysis.encode_gradient_rgb(four_frames(np.stack([c["gradient"] for c in cards]))))
            rows = []
            for r, (c, rgb) in enumerate(zip(cards, guided)):
                rows.append({**{k: v for k, v in c.items() if k != "gradient"}, "snapshot": p.name, "layer": layer,
                             "input": state_image(i, c["state"]), "guided": images.add(rgb),
                             "link": f"{p.name}-{layer}-{c['filter']}",
                             "shares": gradient_shares(c["gradient"], frame_labels(np.shape(c["gradient"])[-1])),
                             # opened on the unit's receptive field, as nvis's cards (double-click: the whole state)
                             "zoom": zoom_window(c["box"], (p.states.shape[2], p.states.shape[1])),
                             "cosine": _partner_cosine(data, i, r) if first else None})
            partner = (i - 1 if data.evolution else 0) if first and i > 0 else None
            columns.append({"snapshot": snapshots[i], "cards": rows, "field": data.fields[layer][i],
                            "silent": len(data.silent.get(layer, {}).get(i, ())), "channels": int(p.shapes[layer][-1]),
                            "partner": partner})
        layers.append({"name": layer, "columns": columns, "matched": first,
                       "rows": max(len(c["cards"]) for c in columns)})

    # first-layer weights, rows aligned by matching (same order as the conv1 cards, all filters)
    weight_rows = []
    if data.weights[0] is not None:
        orders, first = data.orders, data.conv_layers[0]
        for r in range(data.weights[0].shape[-1]):
            weight_rows.append([{"snapshot": names[i], "filter": int(orders[i][r]),
                                 "img": images.add(weight_strip(data.weights[i][..., orders[i][r]])),
                                 "energy": float(np.sum(data.weights[i][..., orders[i][r]] ** 2)),
                                 "cosine": _partner_cosine(data, i, r),
                                 "silent": int(orders[i][r]) in data.silent.get(first, {}).get(i, ())}
                                for i in range(len(played))])

    figures = {}
    history = None
    lean_table = None  # the chart's shares as text: frame × snapshot (the page's data table)
    if data.lean[0] is not None:
        history = len(data.lean[0])
        frames = frame_labels(history)
        lean_table = {"frames": frames, "rows": []}
        fig = go.Figure()
        for i, p in enumerate(played):
            energy = np.asarray(data.lean[i])
            share = 100 * energy / (energy.sum() or 1.0)
            lean_table["rows"].append({"name": p.name, "share": [float(v) for v in share]})
            fig.add_bar(name=p.name, x=frames, y=share.round(2), marker_color=PALETTE[i % len(PALETTE)],
                        customdata=energy, hovertemplate=f"{p.name}<br>frame %{{x}}: %{{y:.1f}}% of the energy"
                                                         "<br>Σ w² = %{customdata:.4g}<extra></extra>")
        fig.add_hline(y=100 / history, line=dict(color="#56606b", dash="dot", width=1),
                      annotation=dict(text=f"even share {100 / history:.3g}%", font=dict(size=11, color="#56606b")),
                      annotation_position="top left")
        fig.update_layout(**_layout(barmode="group", height=340, yaxis_title="share of first-layer Σw² (%)",
                                    xaxis_title="input frame (t = newest)"))
        figures["fig-lean"] = script_json(fig)

    if data.conv_layers:
        fig = go.Figure()
        theoretical = [data.fields[l][0]["theoretical"] for l in data.conv_layers]
        fig.add_bar(name="theoretical", x=data.conv_layers, y=theoretical, marker=dict(color="#c5ccd3", line=dict(color="#52606d", width=1)),
                    hovertemplate="%{x}: theoretical %{y} px<extra></extra>")
        for i, p in enumerate(played):
            # a solid bar for 90% of the gradient, a hatched one for half of it, each in the snapshot's colour
            for key, what, pattern in (("size", "90%", ""), ("core", "half", "/")):
                fig.add_bar(name=f"{what} · {p.name}", x=data.conv_layers,
                            y=[data.fields[l][i].get(key) for l in data.conv_layers],
                            marker=dict(color=PALETTE[i % len(PALETTE)], pattern=dict(shape=pattern, fillmode="overlay",
                                                                                      fgcolor="white")),
                            hovertemplate=f"{p.name}<br>%{{x}}: {what} of the gradient within %{{y}} px<extra></extra>")
        fig.update_layout(**_layout(barmode="group", height=360, yaxis_title="side of the square (input pixels)",
                                    xaxis_title="conv layer"))
        figures["fig-erf"] = script_json(fig)

    cka_rows, cka_streams = [], []
    if data.cka:
        fig, cka_rows, cka_streams, narrow = _cka_figure(data, names)
        figures["fig-cka"] = with_narrow_layout(fig, NARROW_CHART, narrow)

    shared = {(x["a"], x["b"]): x for x in data.shared_start}
    matching_rows = []
    for m in data.matching:
        i, j = m["a"], m["b"]
        matching_rows.append({"a": names[i], "b": names[j], "mean": m["mean"], "median": m["median"],
                              "base_a": data.baseline.get(i), "base_b": data.baseline.get(j),
                              "shared_seed": shared[(i, j)]["seed"] if (i, j) in shared else None})

    # how far each network moved from its initial weights, and how alike the moves of a shared start are
    kernel_layers = list(played[0].network.kernel_layers)
    measured = [start for start in data.start if start.movement]
    movement_layers = [name for name in kernel_layers  # none when no snapshot was measured
                       if measured and all(name in start.movement for start in measured)]
    start_rows = [{"snapshot": names[i], "seed": start.seed, "backend": start.backend, "reason": start.reason,
                   "movement": start.movement} for i, start in enumerate(data.start)]
    start_missing = {}  # reason -> the snapshots it applies to, in their order
    for row in start_rows:
        if not row["movement"]:
            start_missing.setdefault(row["reason"], []).append(row["snapshot"])
    evolution_panels = []
    if data.evolution and len(played) >= 3:
        drawn = _evolution_figure(data, movement_layers)
        if drawn is not None:
            fig, evolution_panels = drawn
            figures["fig-evolution"] = script_json(fig)
    shared_rows = [{"a": names[x["a"]], "b": names[x["b"]], "seed": x["seed"], "backend": x["backend"],
                    "alignment": x["alignment"]} for x in data.shared_start]
    alignment_layers = [name for name in kernel_layers if any(name in x["alignment"] for x in data.shared_start)]
    match_table = None  # the histogram's counts as text: one row per 0.05 bin that holds a filter
    if data.matching:
        edges = np.round(np.linspace(-1, 1, 41), 2)
        counts = [np.histogram(np.minimum(np.round(m["similarities"], 4), 0.9999), bins=edges)[0] for m in data.matching]
        match_table = {"pairs": [f"{names[m['a']]} vs {names[m['b']]}" for m in data.matching],
                       "rows": [{"low": float(edges[b]), "high": float(edges[b + 1]), "counts": [int(c[b]) for c in counts]}
                                for b in range(40) if any(c[b] for c in counts)]}
        fig = go.Figure()
        for m in data.matching:
            # plotly's bins are [start, start + size): a similarity of exactly 1 (a filter matched to
            # itself) would fall past the axis and vanish, so it is counted in the last bin, [0.95, 1)
            fig.add_histogram(x=np.minimum(np.round(m["similarities"], 4), 0.9999), name=f"{names[m['a']]} vs {names[m['b']]}",
                              xbins=dict(start=-1, end=1, size=0.05),
                              hovertemplate="similarity %{x}<br>%{y} filters<extra>%{fullData.name}</extra>",
                              marker_color=PAIR_COLOURS[len(fig.data) % len(PAIR_COLOURS)])
        chance = data.baseline.get("random")
        if chance is not None and np.isfinite(chance):  # where unrelated filters land: the chance level
            fig.add_vline(x=float(chance), line=dict(color="#56606b", dash="dot", width=1.5),
                          annotation=dict(text=f"random vs random {chance:.2f}", font=dict(size=11, color="#56606b")),
                          annotation_position="top left")
        # room above the tallest bar for the chance level's label
        tallest = max(np.histogram(np.minimum(m["similarities"], 0.9999), bins=40, range=(-1, 1))[0].max()
                      for m in data.matching)
        # side by side, not overlaid: an overlaid pair's bars hid the shorter bars behind them
        fig.update_layout(**_layout(barmode="group", bargap=0.05,
                                    xaxis=dict(title="cosine similarity of matched filters", range=[-1, 1]),
                                    yaxis=dict(title="filters", range=[0, 1.3 * tallest + 1]),
                                    **_legend_below(len(data.matching), 300)))
        figures["fig-match"] = script_json(fig)

    pattern_rows = []
    for i, item in enumerate(data.patterns):
        if item is None:
            pattern_rows.append({"snapshot": names[i], "mean": None, "pairs": []})
        else:
            mean, pairs = item
            pattern_rows.append({"snapshot": names[i], "game": played[i].meta.get("game"), "mean": mean,
                                 "pairs": [{"a": a, "b": b, "value": v} for (a, b), v in pairs.items()]})

    summary = _summary(data, names, matching_rows, cka_rows)
    title = ("how the filters evolved · " if data.evolution else "compare · ") + " vs ".join(names)
    return {
        "title": title, "snapshots": snapshots, "evolution": data.evolution, "layers": layers,
        "weight_rows": weight_rows, "history": history, "matching": matching_rows,
        "frame_labels": frame_labels(history or int(played[0].network.architecture[2])),
        "random_vs_random": data.baseline.get("random"), "cka_rows": cka_rows, "cka_streams": cka_streams,
        "cka_layers": [layer for stream in cka_streams for layer in stream["layers"]],
        "chance_seeds": CHANCE_SEEDS, "chance_pairs": len(CHANCE_SEEDS) * (len(CHANCE_SEEDS) - 1) // 2,
        "chance_quantiles": [round(100 * q) for q in CHANCE_QUANTILES],
        "patterns": pattern_rows, "skipped": data.skipped, "figures": figures,
        "lean_table": lean_table, "match_table": match_table,
        "pairs": [(names[i], names[j]) for i, j in data.pairs],
        "every_pair": len(data.pairs) == len(played) * (len(played) - 1) // 2,
        "images_json": json.dumps(images.uris, separators=(",", ":")).replace("</", "<\\/"),
        "options": options or {}, "timings": {TIMING_WORDS.get(k, k): round(v, 1) for k, v in data.timings.items()},
        "cka_states": CKA_STATES, "pattern_states": PATTERN_STATES, "erf_states": ERF_STATES,
        "baseline_seed": BASELINE_SEED, "columns": len(played),
        "start_rows": start_rows, "start_missing": start_missing, "movement_layers": movement_layers, "shared_rows": shared_rows,
        "evolution_panels": evolution_panels,
        "alignment_layers": alignment_layers, "summary": summary,
    }


# The page's names for data.timings' keys (the keys stay short for benchmarks/compare_speed.py)
TIMING_WORDS = {"play": "playing", "cards+erf": "filter cards and receptive fields", "cka": "CKA",
                "cka chance": "CKA of untrained networks", "patterns": "cross-layer patterns"}


def _summary(data: CompareData, names: list, matching_rows: list, cka_rows: list) -> list:
    """The page's findings in words, one per entry: ``{"head", "text"}``.

    - first-layer filters: the mean matched cosine against what a random network's filters reach
      (the baselines), as a ratio; a pair that began as one network is said to be so;
    - CKA: per pair and states, the layers above, within and below the untrained pairs' band;
    - filters that never fire, per snapshot and layer.
    """
    lines = []
    for m in matching_rows:
        bases = [b for b in (m["base_a"], m["base_b"], data.baseline.get("random")) if b is not None and np.isfinite(b)]
        text = f"mean matched cosine {m['mean']:.3f}"
        if bases:
            low, high = min(bases), max(bases)
            ratio = m["mean"] / high
            text += (f"; the filters of random networks match at {low:.3f}–{high:.3f}, so the pair is "
                     f"{ratio:.1f}× the level of unrelated filters"
                     + (": no more alike than chance" if ratio < 1.1 else ""))
        if m["shared_seed"] is not None:
            text += (" (they began as one network, so a high value says little: see the alignment of the changes)"
                     if any(x["alignment"] for x in data.shared_start)
                     else " (they began as one network, so a high value says little)")
        lines.append({"head": f"First-layer filters, {m['a']} vs {m['b']}", "text": text})
    words = {"above": "above chance", "within": "within the chance band", "below": "below chance"}
    for row in cka_rows:
        if row["shared_seed"] is not None or row["repeats"]:
            continue  # began at CKA 1, where the band of unrelated networks does not apply; or said already
        groups = {}
        for layer, verdict in row["verdict"].items():
            if verdict:
                groups.setdefault(verdict, []).append(layer)
        if groups:
            parts = [f"{words[v]} in {', '.join(groups[v])}" for v in ("above", "within", "below") if v in groups]
            same = (f"; the same on {row['second']}'s states, which were these, step for step"
                    if row["same_game"] else "")
            lines.append({"head": f"CKA, {row['label']}", "text": "; ".join(parts) + same})
    dead = [f"{names[i]} {layer} {len(filters)} of {data.played[i].shapes[layer][-1]}"
            for layer in data.conv_layers for i, filters in sorted(data.silent.get(layer, {}).items()) if filters]
    if dead:
        lines.append({"head": "Filters that never fire on the states played", "text": ", ".join(dead)})
    return lines


CHANCE_COLOUR = "#56606b"
CHANCE_SYMBOLS = ["circle-open", "square-open", "diamond-open", "triangle-up-open", "cross-open", "star-open"]


def _verdict(value, span) -> str | None:
    """``"above"``, ``"within"`` or ``"below"`` the chance band ``span`` of the untrained pairs (their 5th and
    95th percentiles, :data:`CHANCE_QUANTILES`), or None without a value or band."""
    if value is None or span is None or not np.isfinite(value):
        return None
    low, high = span
    return "above" if value > high else "below" if value < low else "within"


def _cka_figure(data: CompareData, names: list):
    """The CKA chart, its table rows, and the streams its x axis is grouped by.

    A line per pair and states, drawn only along layers that follow each other (a dueling network's
    parallel streams are separate pieces of one legend entry, see :func:`layer_streams`), and a grey
    dotted line per states for the chance level: the CKA of untrained networks on those states.
    """
    import plotly.graph_objects as go

    played = data.played
    streams = layer_streams([p.network.architecture for p in played], data.cka_layers)
    position = {}
    for g, stream in enumerate(streams):
        for layer in stream["layers"]:
            position[layer] = round(len(position) + STREAM_GAP * g, 3)

    fig = go.Figure()

    def add_line(entries, key, name, **style):
        """One trace per stream (a legend group), so no line joins two streams."""
        shown = False
        for stream in streams:
            layers = [layer for layer in stream["layers"] if layer in entries and _finite(entries[layer][key]) is not None]
            if not layers:
                continue
            extra = dict(style)
            if key == "chance":
                extra["error_y"] = dict(type="data", symmetric=False, color=CHANCE_COLOUR, thickness=1, width=4,
                                        array=[round(entries[l]["chance_range"][1] - entries[l]["chance"], 4) for l in layers],
                                        arrayminus=[round(entries[l]["chance"] - entries[l]["chance_range"][0], 4)
                                                    for l in layers])
            fig.add_scatter(x=[position[l] for l in layers], y=[_finite(entries[l][key]) for l in layers],
                            customdata=layers, mode="lines+markers", name=name, legendgroup=name,
                            showlegend=not shown, cliponaxis=False, **extra)  # a CKA of 1 shows whole
            shown = True
        return shown

    rows, chance_lines, legend = [], {}, 0
    shared = {(x["a"], x["b"]): x["seed"] for x in data.shared_start}  # began as one network: CKA 1, not chance
    for k, (i, j) in enumerate(data.pairs):
        # a colour per pair (two pairs on one snapshot's states must not look alike), the line
        # style tells whose states: solid the first snapshot's, dashed the second's
        colour = PAIR_COLOURS[k % len(PAIR_COLOURS)]
        for owner in dict.fromkeys((i, j)):
            entries = {e["layer"]: e for e in data.cka if e["a"] == i and e["b"] == j and e["on"] == owner}
            game = played[owner].meta.get("game", "?")
            label = f"{names[i]} vs {names[j]} on {game} states ({names[owner]})"
            # the legend's in two lines: one line of both names and the states ran past a phone's width
            legend += 2 * add_line(entries, "value", f"{names[i]} vs {names[j]}<br>on {game} states ({names[owner]})", line=dict(color=colour, dash="solid" if owner == i else "dash"),
                               marker=dict(symbol="circle" if owner == i else "square"),
                               hovertemplate=label + "<br>%{customdata}: CKA %{y:.3f}<extra></extra>")
            # untrained pairs on the same states: one line per distinct level (pairs of one architecture share it)
            key = (owner, tuple((l, _finite(e.get("chance"))) for l, e in sorted(entries.items())))
            if key not in chance_lines:
                name = f"chance: untrained pairs<br>on {game} states ({names[owner]})"
                if name in chance_lines.values():  # another architecture's level on the same states
                    name += f", shaped as {names[i]} and {names[j]}"
                chance_lines[key] = name
                legend += 2 * add_line(entries, "chance", name,
                                   line=dict(color=CHANCE_COLOUR, dash="dot", width=1.5),
                                   marker=dict(symbol=CHANCE_SYMBOLS[owner % len(CHANCE_SYMBOLS)], size=7),
                                   hovertemplate=name + "<br>%{customdata}: CKA %{y:.3f}"
                                                 f"<br>(mean of the untrained pairs; the bar: their {_percentile_band()})"
                                                 "<extra></extra>")
            # both snapshots met the same states, step for step: the second row repeats the first's values
            same_game = played[i].digest != "" and played[i].digest == played[j].digest
            rows.append({"label": label, "values": {layer: e["value"] for layer, e in entries.items()},
                         "same_game": same_game, "repeats": names[i] if same_game and owner == j else None,
                         "second": names[j],
                         "chance": {layer: e.get("chance") for layer, e in entries.items()},
                         "range": {layer: e.get("chance_range") for layer, e in entries.items()},
                         "shared_seed": shared.get((i, j)),
                         "verdict": {layer: None if (i, j) in shared else _verdict(e["value"], e.get("chance_range"))
                                     for layer, e in entries.items()}})

    shapes, annotations = [], []
    if len(streams) > 1:  # a shaded band and a name per stream, under the layer names
        for stream in streams:
            first, last = position[stream["layers"][0]], position[stream["layers"][-1]]
            shapes.append(dict(type="rect", xref="x", yref="paper", x0=first - 0.4, x1=last + 0.4, y0=0, y1=1,
                               fillcolor="#eef1f4", line=dict(width=0), layer="below"))
            annotations.append(dict(text=stream["label"], x=(first + last) / 2, xref="x", y=0, yref="paper",
                                    yanchor="top", yshift=-22, showarrow=False, font=dict(size=11, color="#56606b")))
    ticks = list(position.values())
    fig.update_layout(**_layout(yaxis=dict(title="linear CKA", range=[0, 1.04]),
                                xaxis=dict(title=None if len(streams) > 1 else "layer", tickvals=ticks,
                                           ticktext=list(position), range=[min(ticks) - 0.5, max(ticks) + (0.9 if len(streams) > 1 else 0.5)],
                                           showgrid=False, zeroline=False),
                                shapes=shapes, annotations=annotations, **_legend_below(legend, 340)))
    return fig, rows, streams, _narrow_cka_layout(fig, list(position), annotations)


def _evolution_figure(data: CompareData, movement_layers: list):
    """One run across its epochs (the evolution view), as ``(figure, panels)``, or None where
    fewer than two epochs have a figure to draw.

    - ``"moved"``: each layer's distance from its start ``‖W − W₀‖ / ‖W₀‖`` against the epoch
      (the "Distance from the start" table), a gap where a snapshot's could not be measured;
    - ``"previous"``: each layer's linear CKA with the epoch before, on the later epoch's states
      (the CKA table's rows of consecutive epochs); or ``"first"`` where the pairs are each epoch
      with the first (``--pairs first``): its CKA with the first epoch, on the later one's states.

    A layer whose distance flattens and whose CKA nears 1 has settled. Snapshots whose epoch is
    not a number (hand-made metadata) are left out.
    """
    from plotly.subplots import make_subplots

    played = data.played
    epochs = [p.meta.get("epoch") for p in played]
    numbered = [i for i, epoch in enumerate(epochs)
                if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) and np.isfinite(epoch)]
    values = {(e["a"], e["b"], e["on"], e["layer"]): e["value"] for e in data.cka}
    compared = set(data.pairs)
    if all((i, i + 1) in compared for i in range(len(played) - 1)):
        similarity, partner = "previous", lambda j: j - 1
    elif all((0, j) in compared for j in range(1, len(played))):
        similarity, partner = "first", lambda j: 0
    else:
        similarity, partner = None, None

    def lines(layers, points_of):
        """{layer: its (x, y) points} of the layers with at least two values (a None value: a gap)."""
        every = {layer: points_of(layer) for layer in layers}
        return {layer: points for layer, points in every.items() if sum(y is not None for _, y in points) >= 2}

    panels = [("moved", lines(movement_layers, lambda layer: [
        (epochs[i], data.start[i].movement.get(layer, {}).get("change")) for i in numbered]))]
    if similarity:
        panels.append((similarity, lines(data.cka_layers, lambda layer: [
            (epochs[j], values.get((partner(j), j, j, layer))) for j in numbered if j > 0])))
    panels = [(key, layers) for key, layers in panels if layers]
    if not panels:
        return None
    first_epoch = epochs[0]
    titles = {"moved": "distance from the start, ‖W − W₀‖ / ‖W₀‖",
              "previous": "CKA with the epoch before, on this epoch's states",
              "first": f"CKA with the first epoch ({first_epoch}), on this epoch's states"}
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.14,
                        subplot_titles=[titles[key] for key, _ in panels])
    colours, shown = {}, set()
    for row, (key, layers) in enumerate(panels, start=1):
        what = "moved" if key == "moved" else "CKA"
        for layer, points in layers.items():
            colour = colours.setdefault(layer, LAYER_COLOURS[len(colours) % len(LAYER_COLOURS)])
            fig.add_scatter(x=[x for x, _ in points], y=[y for _, y in points], mode="lines+markers", name=layer,
                            legendgroup=layer, showlegend=layer not in shown, line=dict(color=colour, width=2),
                            hovertemplate=f"{layer}<br>epoch %{{x}}: {what} %{{y:.3f}}<extra></extra>", row=row, col=1)
            shown.add(layer)
    fig.update_xaxes(tickmode="array", tickvals=sorted({epochs[i] for i in numbered}))
    fig.update_xaxes(title_text="epoch", row=len(panels), col=1)
    if panels[-1][0] != "moved":
        fig.update_yaxes(range=[0, 1.05], row=len(panels), col=1)
    # layer names are short: the legend stands to the right, clear of the panels' titles
    fig.update_layout(**_layout(height=260 * len(panels) + 60, margin=dict(l=55, r=110, t=44, b=45),
                                legend=dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top",
                                            title=dict(text="layer"))))
    return fig, [key for key, _ in panels]


def _two_lines(text: str) -> str:
    """``text`` broken at the space nearest its middle: ``"value<br>stream"``, ``"q: joins<br>the streams"``."""
    spaces = [i for i, c in enumerate(text) if c == " "]
    if not spaces:
        return text
    cut = min(spaces, key=lambda i: abs(2 * i - len(text)))
    return text[:cut] + "<br>" + text[cut + 1:]


NARROW_CHART = 640  # px: a chart whose plot is narrower turns its layer names upright (render.with_narrow_layout)


def _narrow_cka_layout(fig, layer_names: list, annotations: list) -> dict:
    """The CKA chart's layout in a narrow window: layer names turned upright (side by side they
    overlap), the stream names under them on two lines, and the margin and the legend moved down
    by the names' length; the plot keeps its height."""
    label_px = 7 * max(len(name) for name in layer_names) + 6  # upright names at 12 px, about 7 px a letter
    streams_px = 30 if annotations else 0
    extra = label_px - 14 + streams_px  # beyond the one line of level labels the wide layout leaves room for
    changes = {"xaxis.tickangle": -90, "height": fig.layout.height + extra,
               "margin.b": (fig.layout.margin.b or 40) + extra, "legend.font.size": 10}
    if annotations:
        changes["annotations"] = [dict(a, text=_two_lines(a["text"]), yshift=-label_px - 4) for a in annotations]
    if fig.layout.legend.y is not None and fig.layout.legend.y < 0:  # a legend under the x axis: down by as much
        plot = fig.layout.height - fig.layout.margin.t - MODEBAR_ROOM - fig.layout.margin.b
        changes["legend.y"] = fig.layout.legend.y - extra / plot
    return changes


def _percentile_band() -> str:
    """``5th–95th percentiles``: the band of :data:`CHANCE_QUANTILES` in words."""
    low, high = (round(100 * q) for q in CHANCE_QUANTILES)
    return f"{low}th–{high}th percentiles"


def _finite(value):
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def _partner_cosine(data: CompareData, i: int, row: int):
    """The cosine of snapshot ``i``'s first-layer filter in matched row ``row`` with its partner (the
    first snapshot's, or the previous epoch's in the evolution view); None for the first column."""
    cosines = data.partner_cosine[i] if i < len(data.partner_cosine) else None
    return None if cosines is None else float(cosines[row])


def default_output(names: list):
    from pathlib import Path

    stem = f"compare_{names[0]}_vs_{names[1]}" + ("_and_more" if len(names) > 2 else "")
    return Path("reports") / f"{stem}.html"


def write_report(path, context: dict):
    from dqnviz.report.render import render, write_html

    return write_html(path, render("compare.html.j2", **context))
