"""``dqnviz train ROM``: train a Nature DQN, a snapshot per epoch, statistics per phase."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from dqnviz.snapshot_checks import check_resumable, interrupted_sitting
from dqnviz.statistics import CSV_COLUMNS, is_digits, malformed_row_message, read_statistics  # train --resume reads the run's CSV once, and decides from its rows

HELP = "train a DQN on a game (a ROM path, or a name like breakout)"
DESCRIPTION = """\
Train a DeepMind-Nature-style DQN. Epoch 0 plays randomly to fill the replay memory; every
later epoch trains, writes snapshots/<run>_<epoch>.keras, then tests with ε = 0.05
(--test-epsilon). One CSV row per phase goes to reports/<run>.csv (simple_dqn's columns).

examples:
  dqnviz train pong
  dqnviz train roms/breakout.bin --double --dueling
  dqnviz train breakout --num-envs 16 --replay-size 200000
  dqnviz train --resume snapshots/pong_24.keras --epochs 30 --name pong-more
  dqnviz train pong --num-envs 16 --minutes 60

A new run never overwrites an earlier one: if reports/pong.csv exists, the run is named pong-2.
A resumed run goes on beside its snapshot and appends to its own CSV; where that would write into
another run's files, it continues as a new run (name-2).
Ctrl-C (or SIGTERM) saves snapshots/<run>_<epoch>_interrupted.keras once the current step is done;
--resume continues from it. --minutes ends a run at a wall-clock budget instead, its last epoch
saved and tested as any other (a budget spent before any epoch was trained exits with status 1).
"""


def add_arguments(parser) -> None:
    from dqnviz.config import add_config_arguments
    from dqnviz.validation import positive_number

    parser.add_argument("rom", nargs="?", metavar="ROM", help="a ROM file (.bin) or the name of a game ale-py ships (see `dqnviz games`)")
    parser.add_argument("--resume", metavar="SNAPSHOT", help="continue a run from its snapshot: epochs and steps continue, the CSV is appended")
    parser.add_argument("--name", help="run name for files (default: the game's name, or name-2, name-3 … if taken)")
    parser.add_argument("--snapshot-dir", metavar="DIR", help="where snapshots go (default: snapshots; with --resume, the snapshot's folder)")
    parser.add_argument("--report-dir", metavar="DIR", help="where the statistics CSV goes (default: reports; with --resume, "
                                             "wherever the run's CSV is: reports/, the snapshot's folder, or reports/ beside it)")
    parser.add_argument("--minutes", type=positive_number, metavar="M",
                        help="stop at a wall-clock budget of M minutes, counted from the command's start. The phase "
                             "under way stops at its next step, and no new epoch begins; the epoch it cut still saves "
                             "its snapshot and plays its whole test phase. Default: none (--epochs decides)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only a line per phase")
    parser.add_argument("--profile", action="store_true",
                        help="after each train phase, a line on where the loop waited per iteration (act, emulate, "
                             "sample, learn, replay), as benchmarks/throughput.py --profile overlapped measures it; "
                             "costs a clock read per part. With --device-replay under JAX it also says for how "
                             "many shapes the fused update was compiled (one, all run)")
    group = parser.add_argument_group("hyper-parameters (defaults: the Nature paper)")
    add_config_arguments(group)


def _has_snapshots(name: str, snapshot_dir: Path) -> bool:
    """Whether ``snapshot_dir`` holds a snapshot of run ``name``, or the optimizer state beside them.
    Names are compared case-folded: on a case-insensitive disk (macOS's, Windows') run ``Pong``
    would write over ``pong_3.keras``."""
    if (snapshot_dir / f"{name}.optimizer.npz").exists():
        return True
    try:
        names = [entry.name.casefold() for entry in os.scandir(snapshot_dir)]
    except OSError:
        return False
    stem = f"{name}_".casefold()
    return any(entry.startswith(stem) and entry.endswith(".keras") for entry in names)


def _taken(name: str, snapshot_dir: Path, report_dir: Path) -> bool:
    return (report_dir / f"{name}.csv").exists() or _has_snapshots(name, snapshot_dir)


def free_run_name(base: str, snapshot_dir: Path, report_dir: Path) -> str:
    """``base`` if no file of that run exists, else the first free ``base-2``, ``base-3``, …"""
    if not _taken(base, snapshot_dir, report_dir):
        return base
    number = 2
    while _taken(f"{base}-{number}", snapshot_dir, report_dir):
        number += 1
    return f"{base}-{number}"


def statistics_match(rows: list[dict] | None, meta: dict) -> bool:
    """Whether the ``rows`` of a statistics CSV (None: unreadable) are those of the run that saved
    a snapshot with ``meta``: they hold the row of the snapshot's last whole phase (the train phase
    of its epoch, with the same count of train steps, or epoch 0's random phase). Snapshots older
    than that count pass."""
    if "train_steps_done" not in meta:
        return True
    if rows is None:
        return False
    sitting = interrupted_sitting(meta)
    epoch = int(meta["epoch"]) - (1 if sitting else 0)
    # an older _interrupted snapshot (``true``) does not say how far its epoch had trained
    known = sitting is None or "steps_done" in sitting
    train_steps = int(meta["train_steps_done"]) - int((sitting or {}).get("steps_done", 0))
    wanted = ("0", "random") if epoch == 0 else (str(epoch), "train")
    return any((row.get("epoch"), row.get("phase")) == wanted
               and (epoch == 0 or not known or row.get("total_train_steps") == str(train_steps)) for row in rows)


def changed_options(stored, config) -> list[str]:
    """The options of a resumed run that differ from those its snapshot stores, as
    ``"--batch-size 32 → 64"`` (``--epochs`` aside: a resume always moves the last epoch on)."""
    import dataclasses

    changes = []
    for f in dataclasses.fields(config):
        before, now = getattr(stored, f.name), getattr(config, f.name)
        if f.name != "epochs" and before != now:
            changes.append(f"--{f.name.replace('_', '-')} {before:g} → {now:g}" if isinstance(now, float)
                           and not isinstance(now, bool) else f"--{f.name.replace('_', '-')} {before} → {now}")
    return changes


def mismatch_reason(path: Path, rows: list[dict] | None) -> str:
    """Why the CSV at ``path``, with ``rows`` (None: unreadable), is not that of the run that saved
    a snapshot with ``meta`` (:func:`statistics_match` said so), in words: a file that cannot be
    read, or is not a statistics CSV at all, or has no rows, is damaged, not another run's."""
    if rows is None:
        return f"{path} cannot be read as a statistics CSV"
    columns = getattr(rows, "columns", None)
    if columns is not None and not columns:
        return f"{path} is empty, not a statistics CSV"
    if columns is not None and columns != CSV_COLUMNS:
        return f"{path} is not a dqnviz statistics CSV (its first line is not the header)"
    if not rows:
        return f"{path} holds no rows"
    return f"{path} holds another run's statistics"


def _malformed_row_message(path: Path) -> str | None:
    """:func:`malformed_row_message` for the file at ``path`` (None if it cannot be read: that is
    said where it is read)."""
    try:
        return malformed_row_message(path, path.read_bytes())
    except OSError:
        return None


def last_epoch(rows: list[dict] | None) -> int | None:
    """The highest epoch a statistics CSV's ``rows`` record as played (None if none, or unreadable).
    A ``refill`` row does not count: it is written when a sitting starts an epoch, which a sitting
    stopped or failed later has not trained (its resume must go on as the same run)."""
    epochs = [int(row["epoch"]) for row in rows or ()
              if is_digits(str(row.get("epoch", ""))) and row.get("phase") != "refill"]
    return max(epochs, default=None)


class StatisticsReader:
    """``read(path)`` → :func:`read_statistics`, each file read once however often it is asked
    for: ``train --resume`` looks at the run's CSV to find its folder and then to decide whether
    to branch off, from the same rows."""

    def __init__(self, read=read_statistics):
        self._read, self._rows = read, {}

    def __call__(self, csv_path: Path) -> list[dict] | None:
        key = Path(csv_path).resolve()
        if key not in self._rows:
            self._rows[key] = self._read(csv_path)
        return self._rows[key]


def resumed_report_dir(run_name: str, meta: dict, snapshot_folder: Path, read=read_statistics) -> Path:
    """Where a resumed run's CSV is: reports/, the snapshot's folder, or the ``reports`` folder
    beside it (snapshots/ and reports/ as siblings), the first that holds this run's CSV; else
    reports/. Each CSV is read with ``read`` (a :class:`StatisticsReader`, to read it only once).

    A snapshot stopped in epoch 1's train phase matches any CSV with an epoch-0 row (it has no
    trained epoch to check): for it the snapshot's own folders come first, so that another run
    of that name in the working directory's reports/ is not taken for its run."""
    here = Path("reports")
    folders = [here, snapshot_folder, snapshot_folder.parent / "reports"]
    sitting = interrupted_sitting(meta)
    if int(meta.get("epoch", 0)) - (1 if sitting else 0) <= 0:
        folders = [folders[1], folders[2], here]
    for folder in folders:
        path = folder / f"{run_name}.csv"
        if path.exists() and statistics_match(read(path), meta):
            return folder
    return here


def check_run_name(name: str) -> None:
    from dqnviz.errors import UserError

    if not name:
        raise UserError("--name must not be empty")
    if not re.fullmatch(r"[\w.-]+", name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    if name.startswith("."):  # reports/.x.csv would be hidden, and '.' or '..' a folder
        raise UserError(f"--name {name!r}: must not start with '.'")
    if len(name) > 100:  # the files' suffixes (_<epoch>_interrupted.keras) must still fit a file name
        raise UserError(f"--name is {len(name)} characters long: give at most 100")
    if name.split(".")[0].upper() in WINDOWS_DEVICE_NAMES:  # reports/con.csv cannot exist on Windows
        raise UserError(f"--name {name!r} is a device name on Windows: choose another")


# names Windows keeps for devices, whatever the extension: a run's files there could not be made
WINDOWS_DEVICE_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"{port}{n}" for port in ("COM", "LPT") for n in range(10))}


def run(args) -> int:
    from dqnviz.atari import resolve_rom, rom_for_game
    from dqnviz.config import config_from_arguments, stored_config
    from dqnviz.errors import UserError
    from dqnviz.progress import say

    started = time.perf_counter()  # --minutes counts from here: loading, building and compiling too

    if args.name is not None:  # before anything is loaded or written ('' too: it is no name)
        check_run_name(args.name)
    resume, notice, changes = None, None, []
    # A new run (a fresh one, a resume given --name, or one branched off) claims its name by
    # creating its CSV; auto_base: the name it was found free from, when the user gave none (a run
    # that loses the name to another started at the same moment takes the next free one).
    new_run, auto_base = True, None
    if args.resume:
        from dqnviz.snapshot import load_snapshot

        resume = load_snapshot(args.resume)
        meta = resume.meta
        check_resumable(meta, args.resume)
        # A resumed run goes on where it was: beside its snapshot, appending to its own CSV.
        snapshot_folder = Path(args.resume).parent
        snapshot_dir = Path(args.snapshot_dir) if args.snapshot_dir else snapshot_folder
        rom = resolve_rom(args.rom) if args.rom else rom_for_game(meta["game"], meta.get("rom_md5"))
        if rom.name != meta["game"]:
            raise UserError(f"{args.resume} was trained on {meta['game']}, not {rom.name}")
        from dqnviz.resume import network_options

        # The stored options, with those that shaped the network read from its weights (older
        # snapshots may not store them), overridden by the flags given. A flag that would change a
        # weight's shape (--dueling, --history) is refused by the Trainer (check_same_network, with
        # the game's action count), in one line, before it writes a file or refills the replay
        # memory: the resumed weights could not be loaded into the new network.
        stored, reread = stored_config(meta)
        stored = stored.replace(**network_options(resume))
        config = config_from_arguments(args, stored)
        if "config" in meta:  # said once the run starts: what its rows from here on were trained with
            changes = changed_options(stored, config)
        if reread and args.rmsprop_epsilon is None:
            say(f"{Path(args.resume).name}: {reread}")
        run_name = args.name or meta.get("run") or meta["game"]
        next_epoch = int(meta["epoch"]) + (0 if interrupted_sitting(meta) else 1)
        if config.epochs < next_epoch:  # checked before the replay memory is refilled for nothing
            if args.epochs is None:  # the run's own --epochs, not one given now
                raise UserError(f"the run has trained all its epochs: {Path(args.resume).name} continues at epoch "
                                f"{next_epoch}, past its --epochs {config.epochs}; give --epochs to go on "
                                f"(--epochs {next_epoch + 9} trains epochs {next_epoch}–{next_epoch + 9})")
            raise UserError(f"--epochs {config.epochs} would train nothing: --epochs is the run's last epoch, "
                            f"and {Path(args.resume).name} continues at epoch {next_epoch} "
                            f"(--epochs {next_epoch + 9} trains epochs {next_epoch}–{next_epoch + 9})")
        read = StatisticsReader()  # the run's CSV is read once, for all that is decided from it
        report_dir = (Path(args.report_dir) if args.report_dir
                      else resumed_report_dir(run_name, meta, snapshot_folder, read))
        if args.name:  # a new run that starts from the snapshot's weights
            check_run_name(args.name)
            if _taken(args.name, snapshot_dir, report_dir):
                raise UserError(f"run {args.name!r} already has files in {snapshot_dir}/ or {report_dir}/; "
                                f"--name gives the resumed run a new name: choose one not taken")
        else:
            # Never append to, or write beside, another run's results: branch off instead.
            statistics = report_dir / f"{run_name}.csv"
            exists = statistics.exists()
            rows = read(statistics) if exists else None
            if getattr(rows, "columns", None) == CSV_COLUMNS and (message := _malformed_row_message(statistics)):
                # this run's CSV, with a row no run wrote: said before a branch-off is decided from it
                raise UserError(message)
            reason = None
            if exists and not statistics_match(rows, meta):
                reason = mismatch_reason(statistics, rows)
            elif snapshot_dir.resolve() != snapshot_folder.resolve() and _has_snapshots(run_name, snapshot_dir):
                reason = f"{snapshot_dir}/ holds snapshots of another {run_name} run"
            elif (snapshot_dir / f"{run_name}_{next_epoch}.keras").exists():  # resuming from an older epoch
                reason = f"{snapshot_dir / f'{run_name}_{next_epoch}.keras'} exists"
            elif exists and (last := last_epoch(rows)) is not None and last >= next_epoch:
                # an older epoch whose later snapshots were deleted (or never shipped): the CSV
                # already holds the epochs this resume would write again
                reason = f"{statistics} already holds epoch {last}'s statistics, past {Path(args.resume).name}"
            if reason:
                auto_base, run_name = run_name, free_run_name(run_name, snapshot_dir, report_dir)
                notice = lambda name, reason=reason: f"{reason}; continuing as a new run, {name}"  # noqa: E731
            else:
                new_run = False  # the same run goes on, appending to its CSV: on the same task
                from dqnviz.resume import check_same_task

                check_same_task(meta, config)
    else:
        if not args.rom:
            raise UserError("give a ROM file or game name (e.g. `dqnviz train pong`), or --resume SNAPSHOT")
        snapshot_dir, report_dir = Path(args.snapshot_dir or "snapshots"), Path(args.report_dir or "reports")
        rom = resolve_rom(args.rom)
        config = config_from_arguments(args)
        base = args.name or rom.name
        check_run_name(base)
        run_name = base if args.name else free_run_name(base, snapshot_dir, report_dir)
        if args.name and _taken(base, snapshot_dir, report_dir):
            raise UserError(f"run {base!r} already has files in {snapshot_dir}/ or {report_dir}/; use --resume or another --name")
        if not args.name:
            auto_base = base
            notice = lambda name: f"files of an earlier {base} run exist; this run is {name}" if name != base else None  # noqa: E731
    config.validate()  # before the notice: a run that does not start has no name to announce
    # The name is claimed atomically (a new run's CSV is created with O_EXCL), and the CSV held
    # locked while the run writes it; its outputs are checked first.
    statistics = _claim_run(run_name, auto_base, new_run, snapshot_dir, report_dir, first_epoch=next_epoch if resume else 1,
                            taken_hint="--name gives the resumed run a new name: choose one not taken" if resume
                            else "use --resume or another --name")
    run_name = statistics.path.stem
    from dqnviz.stopping import stop_requests_accepted

    trainer = None
    try:
        with stop_requests_accepted():  # output that cannot be written stops the run where it can resume
            from dqnviz.trainer import Interrupted, TimeBudget, Trainer, steps_played

            trainer = Trainer(rom, config, run=run_name, snapshot_dir=snapshot_dir, report_dir=report_dir,
                              resume=resume, show_progress=not args.quiet, profile="overlapped" if args.profile else False,
                              statistics=(read(report_dir / f"{run_name}.csv") or []) if resume else None,
                              statistics_csv=statistics,
                              budget=TimeBudget(args.minutes, started) if args.minutes is not None else None)
            # said once the Trainer has accepted the resumed network (check_same_network): a run that
            # is refused is no new run
            if notice and notice(run_name):
                say(notice(run_name))
            if changes:
                say(f"changed from the run's options: {', '.join(changes)}")
            say(f"training {rom.name} as run {run_name}: {config.num_envs} env(s), replay {config.replay_size:,}, "
                  f"snapshots in {snapshot_dir}{os.sep}, statistics in {trainer.csv.path}")
            rounded = [f"--{name.replace('_', '-')} {value:,} plays {steps_played(value, config.num_envs):,}"
                       for name, value in (("random_steps", config.random_steps), ("train_steps", config.train_steps))
                       if value % config.num_envs]
            if rounded:  # each iteration steps every environment once
                say(f"{config.num_envs} environments take {config.num_envs} agent steps at a time: {', '.join(rounded)}")
            try:
                trainer.train()
            except Interrupted as stop:
                if stop.snapshot_path:
                    done = f"saved {stop.snapshot_path}" if stop.saved else "nothing new to save"
                    message = (f"interrupted: {done}; continue with: dqnviz train --resume {stop.snapshot_path}"
                               + (f" ({stop.note})" if stop.note else ""))
                else:
                    message = "interrupted before the first train phase: no snapshot to save"
                from dqnviz.progress import output_gone
                from dqnviz.stopping import exit_status

                say(message)
                if output_gone():  # output that could not be written (`dqnviz train … | head`) stopped the run
                    say(f"dqnviz train: its output could not be written (a closed pipe, a full disk), {message}", file=sys.stderr)

                return exit_status()
            if trainer.budget_stopped and not trainer.test_scores:
                trainer.discard_if_unused()  # a fresh run that wrote no row leaves no file, as if stopped
    except BaseException as error:
        # a run that wrote no row leaves no CSV to take its name, nor validation states; nor does
        # one stopped for good by a second Ctrl-C before it saved a snapshot to resume (a run that
        # failed keeps its rows: a diverged one's NaN row is what its user needs to see)
        from dqnviz.stopping import interrupted_by

        if trainer is not None:
            trainer.discard_if_unresumable() if interrupted_by(error) else trainer.discard_if_unused()
        else:
            statistics.discard_if_unused()
        raise
    finally:
        statistics.close()
    say(finished_line(trainer))
    # a budget spent before any epoch was trained made nothing: `train … && dqnviz nvis …` stops here
    return 1 if trainer.budget_stopped and not trainer.test_scores else 0


def _check_outputs(run_name: str, snapshot_dir: Path, report_dir: Path, first_epoch: int = 1) -> None:
    """Refuse in one line, before any work, a run whose files could not be written: its snapshots
    (named from its first epoch to write, ``first_epoch``), its CSV, and the optimizer state and
    validation states kept beside the snapshots (found now, not when the first epoch ends and one
    of them cannot be written)."""
    from dqnviz.outputs import check_writable
    from dqnviz.trainer import sidecar_path

    check_writable(snapshot_dir / f"{run_name}_{first_epoch}.keras")
    check_writable(report_dir / f"{run_name}.csv")
    for kind in ("optimizer", "validation"):
        check_writable(sidecar_path(snapshot_dir, run_name, kind))


def _claim_run(run_name: str, base: str | None, new: bool, snapshot_dir: Path, report_dir: Path, taken_hint: str,
               first_epoch: int = 1):
    """The run's :class:`~dqnviz.statistics.StatisticsCSV`, opened (``new``: created, atomically) and
    locked, after its outputs are checked. Another run that took the name since it was found free
    (both started at the same moment) makes a run named automatically (``base``: it is ``base`` or
    ``base-N``) take the next free name; a name the user gave is refused in one line, as is a run
    whose CSV another ``dqnviz train`` is writing now."""
    from dqnviz.errors import UserError
    from dqnviz.statistics import RunTaken, StatisticsCSV

    while True:
        _check_outputs(run_name, snapshot_dir, report_dir, first_epoch)
        try:
            return StatisticsCSV(report_dir / f"{run_name}.csv", new=new, lock=True)
        except RunTaken as taken:
            if taken.busy:
                raise UserError(f"run {run_name!r} is being trained by another dqnviz train now ({taken.path} "
                                f"is in use); wait for it to end, or give this one another --name") from None
            if base is None:
                raise UserError(f"run {run_name!r} already has files in {snapshot_dir}/ or {report_dir}/; "
                                f"{taken_hint}") from None
            run_name = free_run_name(base, snapshot_dir, report_dir)


def finished_line(trainer) -> str:
    """The run's last line: where it stopped, and the epoch whose test phase scored best."""
    from dqnviz.progress import join_words, plural

    scores = trainer.test_scores
    if not scores and trainer.budget_stopped:
        kept = "the run is as its snapshot left it" if trainer.start_epoch else "no file is left"
        return f"finished: {trainer.budget} was spent before any epoch was trained: {kept}"
    if not scores:
        return f"finished: the run had already reached epoch {trainer.config.epochs}"
    top = max(score["average"] for score in scores.values())
    tied = sorted(epoch for epoch, score in scores.items() if score["average"] == top)
    best = tied[-1]  # of epochs tied, the latest: the most trained
    first, last = min(scores), max(scores)
    span = f"epoch {last}" if first == last else f"epochs {first}–{last}"
    games = f"{scores[best]['episodes']} {plural('game', scores[best]['episodes'])}"
    if len(tied) == 1:
        named = f"epoch {best}, average {top:.1f} over {games} ({trainer.snapshot_path(best)})"
    else:
        named = f"epochs {join_words([str(epoch) for epoch in tied])} tied, average {top:.1f} (epoch {best}: {games}, {trainer.snapshot_path(best)})"
    return (f"finished {span}; best test phase: {named}. "
            f"To rank epochs on the same 30 games: dqnviz test {trainer.snapshot_dir}/{trainer.run}_*.keras")
