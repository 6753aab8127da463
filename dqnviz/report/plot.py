"""``dqnviz plot``: training statistics (simple_dqn's CSV columns) as interactive plotly charts.

:func:`read_stats` reads and checks one statistics CSV, :func:`build_figure` draws one subplot per
field against epoch (or agent steps trained, or wall-clock minutes: :data:`X_AXES`) with, per run,
the random baseline (a horizontal line at epoch 0's ``random`` row), the ``train`` phase and the
``test`` phase, as simple_dqn's ``plot.py`` did: :func:`chart_traces` draws the lines once and
:func:`build_layout` lays them out, in two columns or (:func:`build_figures`, for a narrow window)
one. :func:`write_png` tries the static renderers that exist on the machine.
"""

from __future__ import annotations

import csv
import io
import math
import os
import dataclasses
import functools
import types
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from dqnviz.errors import UserError
from dqnviz.progress import plural
from dqnviz.report.render import MODEBAR_ROOM, script_json
from dqnviz.statistics import PHASES

COLUMNS = ["epoch", "phase", "steps", "nr_games", "average_reward", "min_game_reward", "max_game_reward",
           "last_exploration_rate", "total_train_steps", "replay_memory_count", "meanq", "meancost",
           "weight_updates", "total_time", "epoch_time", "steps_per_second"]
DEFAULT_FIELDS = ["average_reward", "meanq", "nr_games", "meancost"]
GAME_SCORE_FIELDS = ("average_reward", "min_game_reward", "max_game_reward")

TITLES = {
    "average_reward": "average game score", "meanq": "mean max Q over fixed validation states",
    "nr_games": "games played", "meancost": "mean training loss", "min_game_reward": "lowest game score",
    "max_game_reward": "highest game score", "last_exploration_rate": "exploration rate ε at epoch end",
    "steps_per_second": "agent steps per second", "epoch_time": "epoch time (s)", "total_time": "total time (s)",
    "steps": "agent steps", "total_train_steps": "training steps so far", "replay_memory_count": "replay memory size",
    "weight_updates": "weight updates",
}

# one colour per phase for a single run; one colour per run (phases by dash) for several runs
PHASE_COLOURS = {"random": "#7f7f7f", "train": "#1f77b4", "test": "#d62728"}
RUN_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
               "#bcbd22", "#7f7f7f"]
# past len(RUN_COLOURS) runs the colours repeat: the markers' shape tells those runs apart
RUN_SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "star"]
PHASE_DASH = {"random": "dot", "train": "dash", "test": "solid"}
PHASE_SYMBOLS = {"train": "circle", "test": "diamond"}  # a single run's markers (several runs: run_style)


# What ``--x`` can put on the x axis: the column it reads, the axis title and the page's wording.
X_AXES = {
    "epoch": {"column": "epoch", "title": "epoch", "against": "epoch"},
    "steps": {"column": "total_train_steps", "title": "agent steps trained (total_train_steps)",
              "against": "agent steps trained"},
    "minutes": {"column": "total_time", "title": "minutes since the run started (wall clock, total_time)",
                "against": "wall-clock minutes"},
}


def run_style(number: int) -> tuple[str, str]:
    """``(colour, marker symbol)`` of run ``number``: no two runs (up to 60) share both."""
    return RUN_COLOURS[number % len(RUN_COLOURS)], RUN_SYMBOLS[(number // len(RUN_COLOURS)) % len(RUN_SYMBOLS)]


class ScoresCSV(UserError):
    """The CSV is a ``dqnviz test`` score list (episode, score, …), which sits beside the statistics
    in reports/: a glob such as ``reports/*.csv`` picks it up, and the command leaves it out."""


@dataclass
class Run:
    """One statistics CSV: its name (file stem), path, columns and rows per phase.

    It answers what a :class:`RunGroup` is asked too, so that the page treats both alike: a plain
    run is no group, of no runs, with no spread of values at any point (so no band)."""

    name: str
    path: str
    columns: list
    rows: list  # dicts column -> str
    # (line, column, text) of the cells that are neither numbers nor empty nor "nan" (a diverged
    # run's meanq): drawn as gaps, and reported by the command
    unreadable: list = dataclasses.field(default_factory=list)
    # (line, values) of a last line cut short (fewer values than columns, no line end: a copy or a
    # crash stopped mid-row), left out and reported by the command; None when the file ends whole
    cut_line: tuple | None = None
    # {epoch: agent steps trained by the end of its train phase}, built once (see _train_steps)
    _steps: tuple | None = dataclasses.field(default=None, init=False, repr=False, compare=False)
    # class attributes, not fields (a RunGroup's are): whether it is the mean of several runs,
    # the runs it is the mean of, and (phase, field) -> {epoch: Spread} of their values
    is_group: ClassVar[bool] = False
    members: ClassVar[tuple] = ()
    spreads: ClassVar[types.MappingProxyType] = types.MappingProxyType({})

    @property
    def label(self) -> str:
        """The run's name in the page's title."""
        return self.name

    def spread_at(self, phase: str, field: str, epoch: float) -> Spread | None:
        """The :class:`Spread` of the runs' ``field`` in ``phase`` at ``epoch``; None where there is
        none (always, for a plain run)."""
        return self.spreads.get((phase, field), {}).get(epoch)

    def _points(self, phase: str, field: str, unfinished: bool = False) -> list:
        """``(epoch, value, row)`` of the ``phase`` rows, in epoch order (NaN: a gap): those with a
        game score (or the ones in which no game ended, with ``unfinished``)."""
        points = [(_number(row["epoch"]), _number(row.get(field)), row)
                  for row in self.rows if row["phase"] == phase and _no_game_ended(row, field) == unfinished]
        points.sort(key=lambda p: (math.isnan(p[0]), p[0]))
        return points

    def position(self, row: dict, x: str = "epoch") -> float:
        """Where ``row`` sits on an x axis of :data:`X_AXES` (NaN where the CSV has no number):
        its epoch; the agent steps trained by the end of its epoch's train phase (a test row learns
        nothing, so it sits at its train row's steps; the random phase, before any training, at 0);
        or the wall-clock minutes since the run started, at the end of the row's phase."""
        if x == "epoch":
            return _number(row["epoch"])
        if x == "minutes":
            return _number(row.get("total_time")) / 60
        if x != "steps":
            raise ValueError(f"unknown x axis {x!r}")
        if row["phase"] == "test":
            steps = self._train_steps().get(_number(row["epoch"]))
            if steps is not None:
                return steps
        return _number(row.get("total_train_steps"))

    def _train_steps(self) -> dict:
        """``{epoch: total_train_steps}`` of the first train row of each epoch (in file order) that
        has a number there: where :meth:`position` puts a test row by steps. Built once per rows
        list, so that placing every row is linear in the rows, not quadratic."""
        if self._steps is None or self._steps[0] is not self.rows or self._steps[1] != len(self.rows):
            steps = {}
            for row in self.rows:
                if row["phase"] == "train":
                    epoch = _number(row["epoch"])
                    if epoch == epoch and epoch not in steps:  # NaN equals no epoch
                        value = _number(row.get("total_train_steps"))
                        if value == value:
                            steps[epoch] = value
            self._steps = (self.rows, len(self.rows), steps)
        return self._steps[2]

    def positions(self, phase: str, field: str, x: str = "epoch", unfinished: bool = False) -> list:
        """The x values (see :meth:`position`) of the points of :meth:`series` (of :meth:`unfinished`)."""
        return [self.position(p[2], x) for p in self._points(phase, field, unfinished)]

    def series(self, phase: str, field: str) -> tuple[list, list]:
        """(epochs, values) of ``field`` for the rows of ``phase``, in epoch order.

        A game score of a row in which no game ended is the running score of an unfinished game,
        not a game's score: it is left out here (the line joins the phases around it), and
        :meth:`unfinished` gives it.
        """
        points = self._points(phase, field)
        return [p[0] for p in points], [p[1] for p in points]

    def hover_data(self, phase: str, field: str, unfinished: bool = False) -> list:
        """``[epoch, agent steps trained, minutes]`` of each point (NaN: not in the CSV), for the hover text."""
        return [[p[0], self.position(p[2], "steps"), self.position(p[2], "minutes")]
                for p in self._points(phase, field, unfinished)]

    def unfinished(self, phase: str, field: str) -> tuple[list, list]:
        """(epochs, running scores) of the ``phase`` rows of a game-score ``field`` in which no game ended."""
        points = self._points(phase, field, unfinished=True)
        return [p[0] for p in points], [p[1] for p in points]

    def resumes(self) -> list:
        """The :class:`Resume` points of the run: where a later sitting (``dqnviz train --resume``)
        took over, as the CSV itself shows them (see :func:`resume_signs`), in file order."""
        found = []
        for number, row in enumerate(self.rows):  # written since the trainer wrote refill rows: no guessing
            if row["phase"] == "refill":
                found.append(Resume(epoch=_number(row["epoch"]), before=self.rows[number - 1] if number else None,
                                    after=row, signs=[f"a refill row: the replay memory was refilled with "
                                                      f"{_int(_number(row.get('steps')))} agent steps of the resumed agent's play"]))
        if not any(r["phase"] == "random" for r in self.rows) and self.rows and self.rows[0]["phase"] == "train":
            first = self.rows[0]
            epoch, done = _number(first["epoch"]), _number(first.get("total_train_steps")) - _number(first.get("steps"))
            if epoch > 1 and not done <= 0:  # done NaN (no step columns): the epoch number alone says it
                sign = f"the CSV starts at epoch {_int(epoch)} without a random phase"
                if done == done:
                    sign += f", with {_int(done)} agent steps trained before it"
                found.append(Resume(epoch=epoch, before=None, after=first, signs=[sign]))
        for before, after in zip(self.rows, self.rows[1:]):
            signs = resume_signs(before, after)
            if signs:
                found.append(Resume(epoch=_number(after["epoch"]), before=before, after=after, signs=signs))
        return found

    def resume_position(self, resume: "Resume", x: str = "epoch") -> float:
        """Where ``resume`` is marked on an x axis of :data:`X_AXES` (NaN: nowhere): by epoch, half
        way between the last epoch of one sitting and the first of the next; by steps or minutes,
        where the earlier sitting stopped (its last row; the snapshot the later one started from),
        or for a CSV that starts with a resume, where its first train phase began."""
        if x == "epoch":
            return resume.epoch - 0.5
        row = resume.after
        # a refill row counts the steps trained and the time run before it, whatever the earlier
        # sitting's last row was: a stop inside a train phase wrote none for the steps it trained
        if resume.before is not None and row["phase"] != "refill":
            return self.position(resume.before, x)
        if x == "steps":  # a refill phase trains no step: its count is where the earlier sitting stopped
            return _number(row.get("total_train_steps")) - (0 if row["phase"] == "refill" else _number(row.get("steps")))
        return (_number(row.get("total_time")) - _number(row.get("epoch_time"))) / 60

    def games_text(self, phase: str, field: str) -> list | None:
        """Per point of :meth:`series` of a game-score ``field``, how many games its average is over
        and their lowest and highest score ("5 games: min 9, max 18"), for the hover text; None for
        other fields, or where the CSV has no ``nr_games``."""
        if field not in GAME_SCORE_FIELDS or "nr_games" not in self.columns:
            return None
        texts = []
        for _, _, row in self._points(phase, field):
            games = _number(row.get("nr_games"))
            low, high = _number(row.get("min_game_reward")), _number(row.get("max_game_reward"))
            if games != games:
                texts.append("")
                continue
            text = f"over {_int(games)} {plural('game', games)}"
            if games > 1 and low == low and high == high:
                text += f": min {low:g}, max {high:g}"
            elif games == 1 and low == low:
                text += f" only (score {low:g})"
            texts.append(text)
        return texts if any(texts) else None

    def _band_stretches(self, phase: str, field: str, x: str = "epoch") -> list:
        """``[(x, low, high)]``, one per stretch of consecutive points of :meth:`series` whose 95%
        interval is over two runs or more and which have a place on ``x``: a point without one is a
        gap that ends a stretch. ``[]`` for a plain run."""
        if not self.spreads:  # no interval anywhere: no pass over the points
            return []
        stretches, current = [], None
        for epoch, _, row in self._points(phase, field):
            point = self.spread_at(phase, field, epoch)
            place = self.position(row, x)
            if point is not None and point.n >= 2 and place == place:
                if current is None:
                    current = ([], [], [])
                    stretches.append(current)
                for values, value in zip(current, (place, point.low, point.high)):
                    values.append(value)
            else:
                current = None
        return stretches

    def band(self, phase: str, field: str, x: str = "epoch") -> tuple[list, list, list]:
        """``(x, low, high)`` of the 95% interval at the points of :meth:`series` over two runs or
        more, a None between two stretches where a gap parts them (see :meth:`_band_stretches`)."""
        stretches = self._band_stretches(phase, field, x)
        return tuple(_joined([stretch[part] for stretch in stretches]) for part in range(3))

    def band_outline(self, phase: str, field: str, x: str = "epoch") -> tuple[list, list]:
        """The :meth:`band` as closed shapes for a ``toself`` fill, one per stretch without a gap,
        a None between two (plotly closes each shape on its own): each stretch's highs left to
        right, then its lows right to left. Empty for a plain run."""
        stretches = self._band_stretches(phase, field, x)
        return (_joined([xs + xs[::-1] for xs, _, _ in stretches]),
                _joined([high + low[::-1] for _, low, high in stretches]))

    def baseline(self, field: str) -> float | None:
        """``field`` of the ``random`` row (epoch 0 if there is one, else the first)."""
        randoms = [row for row in self.rows if row["phase"] == "random"]
        if not randoms:
            return None
        zero = [row for row in randoms if _number(row["epoch"]) == 0]
        row = (zero or randoms)[0]
        if field in GAME_SCORE_FIELDS and _number(row.get("nr_games")) == 0:
            return None  # no random game ended: the row holds running scores, not a game's score
        value = _number(row.get(field))
        return None if math.isnan(value) else value


@dataclass
class Resume:
    """Where a later sitting of the run took over: ``after`` is its first row (a train row of
    ``epoch``), ``before`` the earlier sitting's last row (None: the CSV starts with the resume),
    ``signs`` what in the CSV shows it, in words."""

    epoch: float
    before: dict | None
    after: dict
    signs: list

    @property
    def when(self) -> str:
        """``"before epoch 3"``, or where the earlier sitting stopped inside the epoch's train phase
        (a refill row counts the steps it trained), ``"during epoch 3 (after 964 of its train steps)"``."""
        epoch = f"epoch {_int(self.epoch)}"
        if self.after["phase"] == "refill" and self.before is not None:
            done = _number(self.after.get("total_train_steps")) - _number(self.before.get("total_train_steps"))
            if done > 0:
                return f"during {epoch} (after {_int(done)} of its train steps)"
        return f"before {epoch}"


# More than this many seconds of total_time between a sitting's rows that no phase accounts for
# (the snapshot written between them takes well under a second): the replay memory's refill of a
# resumed run, which total_time counts and epoch_time does not.
RESUME_GAP_SECONDS = 5.0


def _int(value: float) -> str:
    return f"{int(round(value)):,}"


def _joined(pieces: list) -> list:
    """The lists ``pieces`` as one, a None between each two: where plotly breaks a line or a fill."""
    joined = []
    for number, piece in enumerate(pieces):
        if number:
            joined.append(None)
        joined += piece
    return joined


def resume_signs(before: dict, after: dict) -> list:
    """What shows that row ``after`` was written by a later sitting than row ``before`` (the row
    above it in the CSV), in words; ``[]`` where nothing does. A resumed run (``dqnviz train
    --resume``) writes no random row: its first row is a train row, after a refill of the replay
    memory that no row records. One sitting's counters never go back and its replay memory never
    shrinks, so the signs are: ``weight_updates`` or ``total_time`` going back (a run resumed from
    a snapshot that predates them), ``replay_memory_count`` falling (the refilled replay memory),
    ``total_time`` counting more than :data:`RESUME_GAP_SECONDS` that no phase took (the refill),
    ``total_train_steps`` growing by more than the phase's steps (an interrupted phase whose first
    sitting's steps the row does not count), and an epoch without a test row (a sitting that
    stopped in its test phase)."""
    if after["phase"] != "train" or before["phase"] in ("random", "refill"):
        return []  # a sitting starts with a train row (after its refill row, which says so itself)
    signs = []

    def value(row, column):
        return _number(row.get(column))

    if before["phase"] == "train" and value(after, "epoch") > value(before, "epoch"):
        signs.append(f"epoch {before['epoch']} has no test row")
    updates = value(before, "weight_updates"), value(after, "weight_updates")
    if updates[1] < updates[0]:
        signs.append(f"weight_updates start again ({_int(updates[0])} → {_int(updates[1])})")
    replay = value(before, "replay_memory_count"), value(after, "replay_memory_count")
    if replay[1] < replay[0]:
        signs.append(f"replay_memory_count falls ({_int(replay[0])} → {_int(replay[1])}: the replay memory was refilled)")
    times = value(before, "total_time"), value(after, "total_time")
    gap = times[1] - times[0] - value(after, "epoch_time")
    if times[1] < times[0]:
        signs.append(f"total_time starts again ({times[0]:,.0f} s → {times[1]:,.0f} s)")
    elif gap > RESUME_GAP_SECONDS and before["phase"] == "test":  # a train row's time leaves out its test phase
        signs.append(f"total_time grows {gap:,.0f} s more than the epoch took (the replay memory's refill)")
    trained = value(after, "total_train_steps") - value(before, "total_train_steps")
    steps = value(after, "steps")
    if trained > steps:
        signs.append(f"total_train_steps grows by {_int(trained)}, the row's phase counts {_int(steps)} "
                     f"steps (it was interrupted and resumed)")
    return signs


@dataclass
class Spread:
    """The values of one point of a :class:`RunGroup` across its runs: ``n`` of them, their mean, the
    95% confidence interval of the mean (``low``, ``high``; equal to the mean for one run) and the
    lowest and highest run."""

    n: int
    mean: float
    low: float
    high: float
    least: float
    most: float


def spread(values: list) -> Spread:
    """:class:`Spread` of finite ``values`` (one per run): mean x̄, and x̄ ± t₀.₉₇₅,ₙ₋₁ · s / √n with
    s the sample standard deviation (n − 1 in its denominator), Student's t interval of the mean."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Spread(n, mean, mean, mean, min(values), max(values))
    deviation = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = _t975(n - 1) * deviation / math.sqrt(n)
    return Spread(n, mean, mean - half, mean + half, min(values), max(values))


@functools.cache
def _t975(degrees_of_freedom: int) -> float:
    """t₀.₉₇₅ with these degrees of freedom: one per group size, not one per point (~80 µs each)."""
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.975, degrees_of_freedom))


@dataclass
class RunGroup(Run):
    """Several runs of one configuration (seeds, say: ``dqnviz plot --group NAME=CSV,…``) drawn as
    one run: per epoch and phase, each field's mean over the runs that have it, with the 95%
    confidence interval of that mean as a band (:func:`spread`).

    Its ``rows`` are those means, so it is drawn, placed on any x axis (the runs' mean agent steps or
    minutes at that epoch) and tabled as a run is. A game score averages only the runs in which a
    game ended in that phase (another run's is the running score of an unfinished game); where none
    did, the mean of those running scores is an unfinished point, as a run's is. A run's resume is
    its own, not the group's, so a group marks none. ``refill`` rows (a resume's) are left out.
    """

    is_group: ClassVar[bool] = True
    members: list = dataclasses.field(default_factory=list)
    # (phase, field) -> {epoch: Spread}
    spreads: dict = dataclasses.field(default_factory=dict)
    # (the last epoch all the runs reached, where the group is cut; the last any reached)
    reached: tuple = (0.0, 0.0)
    # (the first epoch all the runs have, where the group starts; the first any has)
    began: tuple = (1.0, 1.0)

    @property
    def label(self) -> str:
        """The group's name in the page's title, with how many runs it is the mean of."""
        return f"{self.name} (mean of {len(self.members)})"

    def games_text(self, phase: str, field: str) -> list | None:
        """Per point of :meth:`series`: over how many runs its mean is, the 95% interval and the range."""
        texts = []
        for epoch, _, _ in self._points(phase, field):
            point = self.spread_at(phase, field, epoch)
            if point is None:
                texts.append("")
            elif point.n < 2:
                texts.append("one run: no interval" if len(self.members) == 1 else
                             f"1 of {len(self.members)} runs only (a game ended in it alone): no interval")
            else:
                texts.append(f"mean of {point.n} runs: 95% CI {point.low:.4g} – {point.high:.4g}; "
                             f"runs {point.least:.4g} – {point.most:.4g}")
        return texts

    def resumes(self) -> list:
        return []


def group_runs(name: str, members: list) -> RunGroup:
    """The :class:`RunGroup` ``name`` of the runs ``members`` (each a :class:`Run`), with the columns
    that every one of them has."""
    columns = [c for c in members[0].columns if all(c in m.columns for m in members)]
    reached = [_last_epoch(member) for member in members]
    began = [_first_epoch(member) for member in members]
    # outside the epochs every run has, a mean would be of fewer runs, and jump where one ends or
    # starts (a run resumed under a new name starts where its snapshot was)
    first, common = max(began), min(reached)
    by_key = {}  # (epoch, phase) -> {member number: its last row there}
    for number, member in enumerate(members):
        for row in member.rows:
            epoch = _number(row["epoch"])
            if row["phase"] == "random" or (row["phase"] != "refill" and first <= epoch <= common):
                by_key.setdefault((epoch, row["phase"]), {})[number] = row
    rows, spreads = [], {}
    for (epoch, phase), found in sorted(by_key.items(), key=lambda item: (item[0][0], PHASES.index(item[0][1]))):
        games = [_number(r.get("nr_games")) for r in found.values()]
        some_game_ended = any(g > 0 for g in games)
        row = {"epoch": str(int(epoch)) if epoch.is_integer() else repr(epoch), "phase": phase}
        for column in columns:
            if column in ("epoch", "phase"):
                continue
            chosen = [r for r in found.values()
                      if not (some_game_ended and column in GAME_SCORE_FIELDS and _no_game_ended(r, column))]
            values = [v for v in (_number(r.get(column)) for r in chosen) if v == v]
            if not values:
                row[column] = ""
                continue
            point = spread(values)
            row[column] = repr(point.mean)
            spreads.setdefault((phase, column), {})[epoch] = point
        rows.append(row)
    paths = ", ".join(member.path for member in members)
    return RunGroup(name=name, path=paths, columns=columns, rows=rows, members=list(members), spreads=spreads,
                    reached=(common, max(reached)), began=(first, min(began)))


def _first_epoch(run: Run) -> float:
    """The lowest epoch of a run's train and test rows (1 for a run from the start)."""
    epochs = [e for e in (_number(row["epoch"]) for row in run.rows if row["phase"] in ("train", "test")) if e == e]
    return min(epochs, default=1.0)


def _last_epoch(run: Run) -> float:
    """The highest epoch a run's rows hold (its random phase's 0 if nothing more)."""
    epochs = [e for e in (_number(row["epoch"]) for row in run.rows) if e == e]
    return max(epochs, default=0.0)


def group_notes(runs: list) -> list:
    """What the page and the command say about the groups among ``runs``: one cut to the last epoch
    that all its runs reached, and one whose runs' epochs differ in length (so that one epoch is not
    the same training in each)."""
    notes = []
    for group in (run for run in runs if run.is_group):
        common, longest = group.reached
        first, earliest = group.began
        if first > earliest:
            notes.append(f"group {group.name}: drawn from epoch {_int(first)}, the first that all its "
                         f"{len(group.members)} runs have (the earliest starts at epoch {_int(earliest)})")
        if first > common:
            notes.append(f"group {group.name}: its runs have no epoch in common: only their random baseline is drawn")
        if longest > common:
            notes.append(f"group {group.name}: drawn to epoch {_int(common)}, the last that all its "
                         f"{len(group.members)} runs reached (the longest goes on to epoch {_int(longest)})")
        lengths = epoch_lengths(group.members)
        if lengths:
            notes.append(f"group {group.name}: its runs' epochs differ in length ("
                         + ", ".join(f"{name} {steps:,}" for name, steps in lengths)
                         + " agent steps per train phase), so each point is the mean of one epoch, not of one "
                         "amount of training")
    return notes


def _no_game_ended(row: dict, field: str) -> bool:
    """A game-score ``field`` of a row whose ``nr_games`` is 0: the trainer wrote the score so far."""
    return field in GAME_SCORE_FIELDS and _number(row.get("nr_games")) == 0


def _number(text) -> float:
    """The cell as a float; NaN (a gap in the chart) for an empty, non-numeric or infinite one."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return float("nan")
    return value if math.isfinite(value) else float("nan")


def read_stats(path) -> Run:
    """Read a statistics CSV written by ``dqnviz train``.

    Raises:
        UserError: the file is missing, a folder, not text, empty, has no data rows, or lacks
            the ``epoch`` and ``phase`` columns.
    """
    path = str(path)
    if not os.path.exists(path):
        raise UserError(f"statistics file not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder, not a statistics CSV")
    try:
        # utf-8-sig: a byte-order mark (as Excel saves a CSV) is not part of the first column's name
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()  # a run's CSV is small: read once, for the rows and whether it ends whole
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        rows = [row for row in reader if any(cell.strip() for cell in row)]
        ends_whole = not text or text[-1] in "\r\n"
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text CSV file") from None
    except csv.Error as error:  # e.g. "field larger than field limit" for an HTML page or binary file
        raise UserError(f"{path} is not a statistics CSV (it is not even a valid CSV file: {error})") from None
    if not header or not any(cell.strip() for cell in header):
        raise UserError(f"{path} is empty: expected a header line with {', '.join(COLUMNS[:3])}, … and one row per phase")
    header = [cell.strip() for cell in header]
    missing = [column for column in ("epoch", "phase") if column not in header]
    if missing and {"episode", "score"} <= set(header):
        raise ScoresCSV(f"{path} holds the game scores that dqnviz test writes (columns {', '.join(header)}), "
                        "not training statistics: dqnviz plot draws the reports/<run>.csv of dqnviz train")
    if missing:
        raise UserError(f"{path} lacks the {plural('column', len(missing))} {', '.join(missing)} "
                        f"(has: {', '.join(header)}); is it a statistics CSV from dqnviz train?")
    if not rows:
        raise UserError(f"{path} has a header but no rows: nothing to plot yet")
    cut_line = None
    if header and len(rows) > 1 and not ends_whole and len(rows[-1]) < len(header):
        cut_line = (len(rows) + 1, len(rows[-1]))  # the line number of the last row (header: 1)
        rows = rows[:-1]
    records = []
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise UserError(f"{path} line {number}: {len(row)} values for {len(header)} columns")
        records.append({column: cell.strip() for column, cell in zip(header, row)})
    unknown = sorted({r["phase"] for r in records} - set(PHASES))
    if unknown:
        raise UserError(f"{path}: unknown phase {', '.join(map(repr, unknown))} (expected random, refill, train or test)")
    unreadable = [(number, column, text) for number, record in enumerate(records, start=2)
                  for column, text in record.items()
                  if column != "phase" and text and text.lower() != "nan" and not math.isfinite(_number(text))]
    return Run(name=Path(path).stem, path=path, columns=header, rows=records, unreadable=unreadable, cut_line=cut_line)



def parse_fields(text) -> list:
    """``"a,b"`` → ``["a", "b"]`` (duplicates dropped, order kept)."""
    if text is None:
        return list(DEFAULT_FIELDS)
    fields = []
    for name in str(text).split(","):
        name = name.strip()
        if name and name not in fields:
            fields.append(name)
    if not fields:
        raise UserError("--fields is empty: name one or more CSV columns, e.g. --fields average_reward,meanq")
    return fields


def check_fields(runs: list, fields: list, x: str = "epoch") -> None:
    """Every field must be a column of every run, and neither ``phase`` (what separates the lines)
    nor the x axis's own column (``epoch`` under ``--x epoch``: a diagonal)."""
    for field in fields:
        if field in ("phase",):
            raise UserError("--fields phase: 'phase' is what separates the lines, not a number to plot")
        if field == X_AXES[x]["column"]:
            raise UserError(f"--fields {field}: it is the x axis (--x {x}), so its chart would be a diagonal; "
                            f"to draw it, choose another --x")
    for run in runs:
        missing = [field for field in fields if field not in run.columns]
        if missing:
            known = [c for c in run.columns if c not in ("phase",)]
            raise UserError(f"unknown {plural('field', len(missing))} {', '.join(missing)}: "
                            f"{run.path} has the columns {', '.join(known)}")


def check_x(runs: list, x: str) -> None:
    """``--x steps`` and ``--x minutes`` read a column that every run must have."""
    column = X_AXES[x]["column"]
    for run in runs:
        if column not in run.columns:
            raise UserError(f"--x {x} needs the column {column}, which {run.path} lacks; "
                            f"plot it with --x epoch")


def default_output(paths: list) -> Path:
    stem = Path(paths[0]).stem
    if len(paths) > 1:
        stem += "_and_more" if len(paths) > 2 else f"_and_{Path(paths[1]).stem}"
    return Path("reports") / f"{stem}.html"


# Columns that only the learner produces: the random and test phases have no gradient steps, so
# their 0 is "not measured", not a value to draw.
LEARNING_ONLY = {"meancost"}
# A long run's curve (thousands of epochs, or a sweep of many runs) drew a marker per point: a
# solid band, and an SVG node each (1.75 M nodes and 23 s per zoom for 100,000 rows). A trace
# draws at most this many of its markers, evenly spread; its line and hover keep every point.
MARKERS_SHOWN = 200
# The charts' values as tables list at most this many rows per field: every k-th point of a
# longer table (its first and last kept), said in its caption; the CSV holds them all.
TABLE_ROWS = 2_000


def _same_values(a: list, b: list) -> bool:
    """Equal lists of numbers, NaN equal to NaN, with at least one number."""
    return len(a) == len(b) and any(v == v for v in a) and all(x == y or (x != x and y != y) for x, y in zip(a, b))


def _empty_note(field: str, runs: list) -> str:
    if field in LEARNING_ONLY and not any(r["phase"] == "train" for run in runs for r in run.rows):
        return f"no train phase yet: {field} is measured only while the agent learns"
    return f"nothing to draw: no row has a number in {field}"


# Below this plot width (px) the page lays the charts out in one column, with the legend under them.
NARROW_WIDTH = 1000
LEGEND_ROW = 21  # px per entry of the vertical legend


# Hover lines that say where a point is, by the x axis: the x value itself, and the other two
# (customdata: [epoch, agent steps trained, minutes], as Run.hover_data gives them)
WHERE = {
    "epoch": ("epoch %{x}", "after %{customdata[1]:,.0f} training steps, %{customdata[2]:,.1f} min"),
    "steps": ("epoch %{customdata[0]}", "after %{x:,.0f} training steps, %{customdata[2]:,.1f} min"),
    "minutes": ("epoch %{customdata[0]}", "%{x:,.1f} min into the run, after %{customdata[1]:,.0f} training steps"),
}


def _where(x: str, data: list) -> tuple[str, str]:
    """The hover's "epoch …" and "after …" parts for points with ``data`` (Run.hover_data); the
    "after" part is left out where the CSV has neither steps nor time, as in an older CSV."""
    epoch, after = WHERE[x]
    has_steps = any(d[1] == d[1] for d in data)
    has_time = any(d[2] == d[2] for d in data)
    if x == "epoch" and not has_time:
        after = "after %{customdata[1]:,.0f} training steps" if has_steps else ""
    elif x == "minutes" and not has_steps:
        after = "%{x:,.1f} min into the run"
    elif x == "steps" and not has_time:
        after = "after %{x:,.0f} training steps"
    return epoch, after


@dataclass
class Charts:
    """The traces of every chart, drawn once whatever the layout: ``traces[i]`` are those of
    ``fields[i]`` (an empty list: the chart says why), ``entries`` the legend entries among them."""

    traces: list
    entries: int
    # per chart, the numbers (indices into the runs) of the runs it draws: their resumes are marked on it
    drawn: list = dataclasses.field(default_factory=list)


def chart_traces(runs: list, fields: list, x: str = "epoch") -> Charts:
    """Per field, the random baseline, train and test lines (and the points of phases in which no
    game ended) of every run, against ``x``, one of :data:`X_AXES`; each legend group has one entry,
    from whichever chart draws it first."""
    import plotly.graph_objects as go

    several = len(runs) > 1
    shown = set()  # legend groups with an entry

    def legend(group):
        first = group not in shown
        shown.add(group)
        return first

    charts, drawn = [], []
    for field in fields:
        traces = []
        drawn.append(set())
        for number, run in enumerate(runs):
            before = len(traces)
            colour, symbol = run_style(number)
            # the random baseline spans the run: from its first epoch, or from 0 steps or minutes
            places = [run.position(r, x) for r in run.rows]
            places = [p for p in places if not math.isnan(p)] + ([] if x == "epoch" else [0])
            first, last = (min(places), max(places)) if places else (0, 1)
            last = max(last, first + 1)
            prefix = f"{run.name} · " if several else ""
            baseline = None if field in LEARNING_ONLY else run.baseline(field)
            if baseline is not None:
                traces.append(go.Scatter(
                    x=[first, last], y=[baseline, baseline], mode="lines", name=f"{prefix}random",
                    legendgroup=f"{run.name}-random", showlegend=legend(f"{run.name}-random"),
                    line=dict(color=colour if several else PHASE_COLOURS["random"], dash=PHASE_DASH["random"], width=1.5),
                    hovertemplate=f"{prefix}random baseline (epoch 0)<br>{field} = %{{y:~.4g}}<extra></extra>",
                ))
            phases = ("train",) if field in LEARNING_ONLY else ("train", "test")
            series = {phase: run.series(phase, field) for phase in phases}
            # meanq (measured after each phase, and the test phase does not learn) and the counters
            # repeat the train row's value in the test row: a test line would hide the train line
            merged = len(phases) == 2 and all(series[p][0] for p in phases) and series["train"][0] == series["test"][0] \
                and _same_values(series["train"][1], series["test"][1])
            for phase in phases:
                epochs, y = series[phase]
                if merged and phase == "test":
                    continue
                label = "train = test" if merged else phase
                if epochs and any(v == v for v in y):
                    line_colour = colour if several else PHASE_COLOURS[phase]
                    band_x, band_y = run.band_outline(phase, field, x)
                    if band_x:  # a group's 95% interval of the mean, under its line; hidden with it from the legend
                        traces.append(go.Scatter(
                            x=band_x, y=band_y, mode="lines", fill="toself",
                            # the test phase's band the stronger: where the two overlap, each shows
                            fillcolor=_translucent(line_colour, 0.25 if phase == "test" else 0.12),
                            line=dict(width=0), hoverinfo="skip",
                            name=f"{prefix}{phase}: 95% CI", legendgroup=f"{run.name}-{phase}", showlegend=False,
                        ))
                    data = run.hover_data(phase, field)
                    epoch, after = _where(x, data)
                    # a game score's point says how many games it averages: one game is luck as often as skill
                    games = run.games_text(phase, field)
                    traces.append(go.Scatter(
                        x=run.positions(phase, field, x), y=y, mode="lines+markers", name=f"{prefix}{phase}",
                        legendgroup=f"{run.name}-{phase}", customdata=data, text=games,
                        # the phase by dash and, for one run, by marker too: not by colour alone
                        showlegend=legend(f"{run.name}-{phase}"),
                        marker=dict(size=5, symbol=symbol if several else PHASE_SYMBOLS[phase],
                                    **({"maxdisplayed": MARKERS_SHOWN} if len(y) > MARKERS_SHOWN else {})),
                        line=dict(color=line_colour, dash=PHASE_DASH[phase], width=2),
                        hovertemplate=f"{prefix}{label} {epoch}<br>{field} = %{{y:~.4g}}"
                                      + ("<br>%{text}" if games else "")
                                      + (f"<br>{after}" if after else "") + "<extra></extra>",
                    ))
                ux, uy = run.unfinished(phase, field)
                if ux:
                    group = f"{run.name}-{phase}-unfinished"
                    data = run.hover_data(phase, field, unfinished=True)
                    epoch, after = _where(x, data)
                    traces.append(go.Scatter(
                        x=run.positions(phase, field, x, unfinished=True), y=uy, mode="markers",
                        name=f"{prefix}{phase}: no game ended (score so far)", customdata=data,
                        legendgroup=group, showlegend=legend(group),
                        marker=dict(size=7, symbol="circle-open", color=colour if several else PHASE_COLOURS[phase],
                                    line=dict(width=1.5)),
                        hovertemplate=f"{prefix}{phase} {epoch}: no game ended<br>score so far "
                                      f"= %{{y:~.4g}} (not a game's score)" + (f"<br>{after}" if after else "")
                                      + "<extra></extra>",
                    ))
            if len(traces) > before:
                drawn[-1].add(number)
        charts.append(traces)
    return Charts(traces=charts, entries=len(shown), drawn=drawn)


def _translucent(colour: str, alpha: float = 0.2) -> str:
    """``"#rrggbb"`` as ``"rgba(r,g,b,alpha)"``: a band that shows the grid and other lines through it."""
    red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


RESUME_COLOUR = "#52606d"  # a single run's resume marks: the page's muted ink, apart from the phases' colours


def _resumed_runs(runs: list, x: str) -> int:
    """How many of ``runs`` have a resume to mark against ``x`` (each gets a row of labels)."""
    return sum(1 for run in runs if any(run.resume_position(r, x) == run.resume_position(r, x) for r in run.resumes()))


# px per row of "resumed" labels inside a chart's top (the wide layout), and over it (the narrow
# layout: a label's box is 15 px high); narrow layout: px between one chart's x axis and the next
# chart's title (tick labels and the axis title), and px of a second line of a chart's title
LABEL_ROW, ABOVE_ROW, NARROW_GAP, TITLE_LINE = 13, 16, 95, 18


def _mark_resumes(figure, runs: list, charts: Charts, x: str, above: bool = False) -> None:
    """A vertical dotted line labelled "resumed" at each resume (:meth:`Run.resumes`) of each run, on
    every chart that draws the run, across the chart's height: a step in a curve there may come
    from the resume (a refilled replay memory, maybe a fresh optimizer or new meanq states), not
    from learning. Hovering the label says what in the CSV shows the resume. ``above``: the labels
    sit over the chart, a row per run (the narrow layout, whose charts are too narrow for a label
    inside them to miss the points), rather than inside its top."""
    several = len(runs) > 1
    shapes, annotations = [], []  # the marks, in the order add_shape and add_annotation would add them
    # a label right of its line, or left of it in the right half of the x axis, where it would run off the chart
    places = [run.position(row, x) for run in runs for row in run.rows] + ([] if x == "epoch" else [0])
    places = [p for p in places if p == p]
    middle = (min(places) + max(places)) / 2 if places else 0
    labelled = 0  # runs whose resumes are marked so far: each run's labels a line lower, not over another's
    for number, run in enumerate(runs):
        marks = [(run.resume_position(resume, x), resume) for resume in run.resumes()]
        marks = [(place, resume) for place, resume in marks if place == place]
        if not marks:
            continue
        shift, labelled = (ABOVE_ROW if above else -LABEL_ROW) * labelled, labelled + 1
        colour = run_style(number)[0] if several else RESUME_COLOUR
        label = f"{run.name} resumed" if several else "resumed"
        for index, runs_drawn in enumerate(charts.drawn):
            if number not in runs_drawn:
                continue
            axis = "" if index == 0 else str(index + 1)
            for place, resume in marks:
                shapes.append(dict(type="line", xref=f"x{axis}", yref=f"y{axis} domain", x0=place, x1=place,
                                   y0=0, y1=1, layer="below", line=dict(color=colour, dash="dot", width=1.5),
                                   name=f"resume-{run.name}"))
                annotations.append(dict(
                    text=label, xref=f"x{axis}", yref=f"y{axis} domain", x=place, y=1,
                    xanchor="left" if place <= middle else "right", xshift=2 if place <= middle else -2,
                    yanchor="bottom" if above else "top", yshift=shift, showarrow=False, font=dict(size=10, color=colour),
                    bgcolor="rgba(255,255,255,0.75)",
                    hovertext=f"{run.name} resumed {resume.when}:<br>" + "<br>".join(resume.signs),
                    name=f"resume-{run.name}",
                ))
    # added at once (as dicts: plotly builds each mark once), after the figure's own: plotly's add_shape
    # and add_annotation copy every mark so far on each call, which made a run with many resumes quadratic
    if shapes:
        figure.layout.shapes = tuple(figure.layout.shapes) + tuple(shapes)
    if annotations:
        figure.layout.annotations = tuple(figure.layout.annotations) + tuple(annotations)


def _grid(fields: list, columns: int | None) -> tuple[int, int]:
    """``(rows, columns)`` of the charts: two columns when there are more than two, unless ``columns`` says."""
    columns = columns or (1 if len(fields) <= 2 else 2)
    return math.ceil(len(fields) / columns), columns


def build_layout(runs: list, fields: list, charts: Charts, columns: int | None = None, x: str = "epoch"):
    """A figure with the subplots, axes, notes and legend of the charts but no traces: the traces of
    ``charts`` fit any such layout unchanged, as chart ``i`` has the axes ``x{i+1}``, ``y{i+1}`` in
    every grid (make_subplots numbers them row by row). ``columns=1`` is the page's narrow layout,
    with the legend under the charts."""
    from plotly.subplots import make_subplots

    narrow = columns == 1  # asked for: the narrow layout, whatever the number of fields
    rows, columns = _grid(fields, columns)
    # narrow (down to a phone's width): a title's description on a line of its own, and the resume
    # labels over the chart (a row per resumed run) between it and the chart, never on the points
    labelled = _resumed_runs(runs, x) if narrow else 0
    above = TITLE_LINE + ABOVE_ROW * labelled  # px more over each narrow chart
    separator = "<br>" if narrow else " · "
    titles = [f"{field}{separator}{TITLES[field]}" if field in TITLES else field for field in fields]
    charts_height = max(380, 330 * rows) + (above * (rows - 1) if narrow else 0)
    if narrow and rows > 1:  # as a share of the charts' height (its margins and the legend's rows aside)
        spacing = (NARROW_GAP + above) / (charts_height - 50 - 40 - above - MODEBAR_ROOM)
    else:
        spacing = min(0.18, (0.3 if narrow else 0.5) / rows) if rows > 1 else 0.1
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.12,
                           vertical_spacing=spacing)
    for annotation in figure.layout.annotations:  # the subplot titles: long ones must fit a column
        annotation.font = dict(size=13 if narrow else 14)
        if narrow:
            annotation.yshift = ABOVE_ROW * labelled + 2
    for index, field in enumerate(fields):
        row, col = index // columns + 1, index % columns + 1
        if x == "epoch":
            span = max((max((_number(r["epoch"]) for r in run.rows), default=1) for run in runs), default=1)
            step = max(1, math.ceil(span / 10)) if not math.isnan(span) else 1
            figure.update_xaxes(title_text=X_AXES[x]["title"], tick0=0, dtick=step, row=row, col=col)
        else:  # plotly's ticks: 500k, 1M, 1.5M steps; minutes from the run's start
            figure.update_xaxes(title_text=X_AXES[x]["title"], rangemode="tozero", row=row, col=col)
        figure.update_yaxes(title_text=field, row=row, col=col)
        if not charts.traces[index]:  # an empty chart says why, rather than show a blank box
            # in paper coordinates: plotly.js drops the axes of a subplot without traces, and with
            # them any position given in those axes
            axes = figure.get_subplot(row, col)
            figure.add_annotation(text=_empty_note(field, runs), showarrow=False, font=dict(size=13, color="#56606b"),
                                  xref="paper", yref="paper", x=sum(axes.xaxis.domain) / 2,
                                  y=sum(axes.yaxis.domain) / 2)
    _mark_resumes(figure, runs, charts, x, above=narrow)
    entries = charts.entries
    height, bottom, top = charts_height, 50, 40 + (above if narrow else 0)
    if narrow:
        # under the charts: at this width a legend beside them would leave the charts no room
        # one entry a row: a phone's width holds no two entries of long run names side by side
        # (a row of them ran past the figure's right edge, cut off)
        legend_rows = entries
        height += LEGEND_ROW * legend_rows + 40
        bottom = 50 + LEGEND_ROW * legend_rows + 40
        # paper coordinates: 60 px under the last chart's axis (below its x axis title)
        legend_layout = dict(orientation="v", x=0, xanchor="left", tracegroupgap=2, y=-60 / (height - top - MODEBAR_ROOM - bottom),
                             yanchor="top")
    else:
        # beside the charts, from their top down: never under the modebar, however many runs; the
        # figure is tall enough that no entry is scrolled out of sight
        legend_layout = dict(orientation="v", x=1.01, xanchor="left", y=1, yanchor="top", tracegroupgap=2)
        height = max(height, LEGEND_ROW * entries + 40 + MODEBAR_ROOM + bottom + 20)
    figure.update_layout(
        height=height, margin=dict(l=60, r=20, t=top, b=bottom), template="plotly_white",
        legend=legend_layout, hovermode="closest",
    )
    return figure


def _with_traces(figure, fields: list, charts: Charts, columns: int | None):
    """``figure`` (a :func:`build_layout`) with the traces of ``charts`` on their charts."""
    _, columns = _grid(fields, columns)
    for index, traces in enumerate(charts.traces):
        for trace in traces:
            figure.add_trace(trace, row=index // columns + 1, col=index % columns + 1)
    return figure


def build_figure(runs: list, fields: list, columns: int | None = None, x: str = "epoch"):
    """A plotly figure: one subplot per field (two columns when there are more than two, unless
    ``columns`` says; ``columns=1`` is the page's narrow layout, with the legend under the charts),
    against ``x``, one of :data:`X_AXES`."""
    charts = chart_traces(runs, fields, x)
    return _with_traces(build_layout(runs, fields, charts, columns, x), fields, charts, columns)


def build_figures(runs: list, fields: list, x: str = "epoch") -> tuple:
    """``(figure, narrow layout)``: the page's figure (:func:`build_figure`) and the layout it
    switches to below :data:`NARROW_WIDTH`, one column with the legend under the charts; the
    traces are drawn once, for both."""
    charts = chart_traces(runs, fields, x)
    figure = _with_traces(build_layout(runs, fields, charts, x=x), fields, charts, None)
    return figure, build_layout(runs, fields, charts, columns=1, x=x).layout


# A test phase that averages fewer games than this is said to, in the page's visible text.
FEW_GAMES = 10


def _best_label(row: dict) -> str:
    """"epoch 7, 1 game": a test phase's average over one game is luck as often as skill."""
    games = _number(row.get("nr_games"))
    if games != games:  # an older CSV without nr_games
        return f"epoch {row['epoch']}"
    if games == 0:
        return f"epoch {row['epoch']}, no game ended"
    return f"epoch {row['epoch']}, {int(games)} {plural('game', games)}"


def epoch_lengths(runs: list) -> list:
    """``[(run name, agent steps of its train phase)]`` when the runs' epochs differ in length (by more
    than 10%), else ``[]``: the same epoch of two such runs is not the same amount of training."""
    lengths = []
    for run in runs:
        steps = sorted(_number(r.get("steps")) for r in run.rows if r["phase"] == "train")
        steps = [v for v in steps if v == v]
        if steps:
            lengths.append((run.name, int(steps[len(steps) // 2])))
    if len(lengths) < 2:
        return []
    values = [steps for _, steps in lengths]
    return lengths if max(values) > 1.1 * min(values) else []


def _best_test(run):
    """The test row with the highest average score among those in which a game ended."""
    if "average_reward" not in run.columns:
        return None
    tests = [r for r in run.rows if r["phase"] == "test" and not _no_game_ended(r, "average_reward")
             and _number(r.get("average_reward")) == _number(r.get("average_reward"))]
    return max(tests, key=lambda r: _number(r["average_reward"]), default=None)


def _x_text(value: float, x: str) -> str:
    if value != value:
        return "–"
    return f"{value:,.0f}" if x == "steps" else f"{value:.1f}" if x == "minutes" else f"{value:g}"


def data_tables(runs: list, fields: list, x: str = "epoch") -> list:
    """The charts' values as text, one table per field (the page's alternative to the charts): per
    run, the random baseline and every train and test point, in the order of ``x``."""
    tables = []
    for field in fields:
        rows = []
        for n, run in enumerate(runs):
            baseline = None if field in LEARNING_ONLY else run.baseline(field)
            if baseline is not None:
                text = f"{baseline:.4g}"
                if (point := run.spread_at("random", field, 0.0)) is not None:
                    text += f" (mean of {point.n} {plural('run', point.n)})"
                rows.append({"run": run.name, "n": n, "x": _x_text(0.0, x), "phase": "random baseline (epoch 0)", "value": text,
                             "order": (-math.inf, 0)})
            for rank, phase in enumerate(("train",) if field in LEARNING_ONLY else ("train", "test")):
                for unfinished in (False, True):
                    places = run.positions(phase, field, x, unfinished=unfinished)
                    epochs, values = run.unfinished(phase, field) if unfinished else run.series(phase, field)
                    for place, epoch, value in zip(places, epochs, values):
                        if value != value:
                            continue
                        text = f"{value:.4g}"
                        if (point := run.spread_at(phase, field, epoch)) is not None:  # a group's mean: with its interval
                            text += (f" (95% CI {point.low:.4g} – {point.high:.4g}, {point.n} runs)" if point.n > 1
                                     else " (1 run)")
                        rows.append({"run": run.name, "n": n, "x": _x_text(place, x), "value": text,
                                     "phase": f"{phase}, no game ended (score so far)" if unfinished else phase,
                                     "order": (place if place == place else math.inf, rank + 1)})
        rows.sort(key=lambda r: (r["n"], r["order"]))
        total = len(rows)
        if total > TABLE_ROWS:  # evenly spread, first and last included
            rows = [rows[i] for i in sorted({round(k * (total - 1) / (TABLE_ROWS - 1)) for k in range(TABLE_ROWS)})]
        tables.append({"field": field, "rows": rows, "total": total})
    return tables


def build_context(runs: list, fields: list, figure, narrow_layout=None, x: str = "epoch", notes=None) -> dict:
    """The context of templates/plot.html.j2; ``narrow_layout`` is the one-column layout of the
    figure's traces (used below :data:`NARROW_WIDTH`; default: the figure's own); ``x`` the x axis
    the figure was drawn against."""
    from plotly.io.json import to_json_plotly

    summaries = []
    for run in runs:
        best = _best_test(run)
        randoms = [r for r in run.rows if r["phase"] == "random"]
        label = None
        if best is not None:  # a group's best test phase is a mean: of how many runs
            point = run.spread_at("test", "average_reward", _number(best["epoch"]))
            label = _best_label(best) if point is None else f"epoch {best['epoch']}, mean of {point.n} {plural('run', point.n)}"
        summaries.append({
            # the file's name, its path in the cell's title: a long path would take a narrow window's width
            "name": run.name, "path": run.path, "file": Path(run.path).name, "rows": len(run.rows),
            # a group's files: the runs it is the mean of
            "members": [Path(member.path).name for member in run.members] if run.is_group else None,
            "epochs": len({r["epoch"] for r in run.rows if r["phase"] != "random"}),
            "best": None if best is None else {"score": _number(best["average_reward"]), "label": label,
                                               "few": _number(best.get("nr_games")) < FEW_GAMES},
            "baseline": run.baseline("average_reward") if "average_reward" in run.columns else None,
            "no_random": not randoms,
        })
    title = "training statistics · " + ", ".join(run.label for run in runs)
    unfinished = any(run.unfinished(phase, field)[0] for run in runs for phase in ("train", "test") for field in fields)
    # every resume, for the notes: the charts mark them; the CSV's signs say how it is known
    resumes = [{"name": run.name, "when": resume.when, "signs": resume.signs}
               for run in runs for resume in run.resumes()]
    # a group's runs' resumes: not marked on its charts (the group's line is their mean), but said
    resumes += [{"name": f"{member.name} (in group {run.name}; not marked on its charts)", "when": resume.when,
                 "signs": resume.signs}
                for run in runs for member in run.members for resume in member.resumes()]
    return {"title": title, "runs": summaries, "fields": fields, "figure_json": script_json(figure),
            "resumes": resumes,
            # the page takes the template from the figure's layout: the same in both, and 6 kB
            "narrow_layout_json": script_json(to_json_plotly(
                {k: v for k, v in (narrow_layout or figure.layout).to_plotly_json().items() if k != "template"})),
            "narrow_width": NARROW_WIDTH, "several": len(runs) > 1,
            # by steps the runs' epochs are not compared; by minutes the page points to --x steps itself
            "epoch_lengths": epoch_lengths(runs) if x == "epoch" else [],
            "unfinished": unfinished, "x": x, "against": X_AXES[x]["against"],
            "groups": any(run.is_group for run in runs), "group_notes": group_notes(runs) if notes is None else notes,
            "data_tables": data_tables(runs, fields, x)}


def render_page(runs: list, fields: list, x: str = "epoch", notes=None) -> tuple[str, object]:
    """The page and its figure; ``notes``: :func:`group_notes` of ``runs`` if already made."""
    from dqnviz.report.render import render

    figure, narrow_layout = build_figures(runs, fields, x=x)
    return render("plot.html.j2", **build_context(runs, fields, figure, narrow_layout, x=x,
                                                  notes=notes)), figure


def write_png(figure, path) -> tuple[Path | None, str]:
    """Write the figure as a static PNG: plotly's ``write_image`` (kaleido), else headless Chromium.

    Returns:
        ``(path, how)`` on success, ``(None, why not)`` when no static renderer is available.
    """
    from dqnviz.outputs import atomic_write

    path = Path(path)
    width, height = 1200, int(figure.layout.height or 800)
    try:
        atomic_write(path, lambda tmp: figure.write_image(tmp, format="png", width=width, height=height))
        return path, "plotly (kaleido)"
    except Exception as error:  # kaleido missing or broken
        kaleido_error = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    try:
        data = _chromium_png(figure, width, height)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return None, (f"no static image renderer is available (plotly: {kaleido_error[:120]}; "
                      f"headless Chromium: {reason[:120]}); install one with `pip install kaleido` "
                      "or install playwright and Chromium, then run again with --png")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path, "headless Chromium, Plotly.toImage"


def _chromium_png(figure, width: int, height: int) -> bytes:
    """Render with Plotly.toImage in headless Chromium via playwright (no network)."""
    try:
        return _render_in_chromium(figure, width, height)
    except KeyboardInterrupt:
        # Ctrl-C at a terminal reaches playwright's driver too (it is in our process group): it
        # dies, and asyncio would report the lost connection's future at exit, after "interrupted".
        import logging

        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        raise


def _render_in_chromium(figure, width: int, height: int) -> bytes:
    """Plotly.toImage's PNG of ``figure`` in a headless Chromium that playwright starts.

    Playwright's driver and Chromium run with their temporary folder (TMPDIR) inside ours, which
    is removed whatever happens: a Ctrl-C at a terminal stops the driver too, which then leaves
    its browser profile (``playwright_chromiumdev_profile-XXXXXX``) and kills Chromium before
    Chromium can remove the folder it made for its singleton socket (``org.chromium.Chromium.XXXXXX``);
    both would otherwise stay in /tmp.
    """
    import base64
    import shutil
    import tempfile

    from playwright.sync_api import sync_playwright

    from dqnviz.report.render import plotly_js

    executable = next((c for c in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                                   shutil.which("chromium-browser"), shutil.which("google-chrome"))
                       if c and os.path.exists(c)), None)
    page_html = ("<html><head><meta charset='utf-8'><script>" + plotly_js() + "</script></head><body>"
                 "<div id='plot'></div></body></html>")
    with tempfile.TemporaryDirectory(prefix="dqnviz-chromium-") as folder:
        page_path = os.path.join(folder, "page.html")
        Path(page_path).write_text(page_html, encoding="utf-8")
        browser_tmp = os.path.join(folder, "tmp")  # a short path: Chromium's socket name must fit in 108 bytes
        os.mkdir(browser_tmp)
        before = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = browser_tmp  # the driver, started now, takes it (Python's tempfile has its own)
        try:
            playwright = sync_playwright().start()
        finally:
            if before is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = before
        try:
            options = {"headless": True, "args": ["--no-sandbox", "--disable-gpu"],
                       "env": {**os.environ, "TMPDIR": browser_tmp}}
            if executable:
                options["executable_path"] = executable
            browser = playwright.chromium.launch(**options)
            try:
                page = browser.new_page()
                page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "data:", "blob:")) else r.abort())
                page.goto("file://" + page_path, wait_until="load")
                uri = page.evaluate(
                    """([spec, w, h]) => { const fig = JSON.parse(spec);
                        return Plotly.newPlot('plot', fig.data, fig.layout, {staticPlot: true})
                          .then(gd => Plotly.toImage(gd, {format: 'png', width: w, height: h})); }""",
                    [figure.to_json(), width, height],
                )
            finally:
                browser.close()
        finally:
            playwright.stop()
    return base64.b64decode(uri.split(",", 1)[1])
