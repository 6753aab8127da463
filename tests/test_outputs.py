"""No command writes its output over what a slip of the keyboard would destroy: one of its own
inputs, a snapshot (or any zip archive: a snapshot under another name), or a training run's
statistics CSV. Each is refused in one line, before any work, and the file is left as it was."""

import shutil

import pytest

from tests.conftest import make_snapshot
from tests.helpers import run_cli


@pytest.fixture
def files(tmp_path):
    """A snapshot, a copy of it named like a report, and a training statistics CSV."""
    snapshot = make_snapshot(tmp_path / "breakout_1.keras", "breakout", 1)
    disguised = tmp_path / "report.html"
    shutil.copy(snapshot, disguised)  # a zip archive, whatever its name
    statistics = tmp_path / "pong.csv"
    statistics.write_text("epoch,phase,steps,nr_games,average_reward,min_game_reward,max_game_reward,"
                          "last_exploration_rate,total_train_steps,replay_memory_count,meanq,meancost,"
                          "weight_updates,total_time,epoch_time,steps_per_second\n"
                          "0,random,500,2,-20.5,-21,-20,1.0,0,500,-0.1,0.0,0,5.0,5.0,100\n"
                          "1,train,500,2,-20.0,-21,-19,0.5,500,1000,0.1,0.01,125,10.0,5.0,100\n")
    second = make_snapshot(tmp_path / "pong_2.keras", "pong", 2, seed=1)
    return {"snapshot": str(snapshot), "second": str(second), "disguised": str(disguised),
            "statistics": str(statistics)}


CASES = [
    # (argv with {names}, what the line says)
    (["nvis", "{snapshot}", "--out", "{snapshot}"], "an HTML report is written there; give a name ending in .html or .htm"),
    (["nvis", "{snapshot}", "--out", "{disguised}"], "is a zip archive (as a snapshot is); writing there would destroy it"),
    (["nvis", "{snapshot}", "--out", "{statistics}"], "give a name ending in .html"),
    (["compare", "{snapshot}", "{second}", "--out", "{disguised}"], "is a zip archive"),
    (["compare", "{snapshot}", "{second}", "--out", "{second}"], "give a name ending in .html"),
    (["plot", "{statistics}", "--out", "{statistics}"], "give a name ending in .html"),
    (["plot", "{statistics}", "--out", "{disguised}"], "is a zip archive"),
    (["test", "{snapshot}", "--csv", "{statistics}"], "is a training run's statistics (dqnviz train's CSV); writing there would destroy it"),
    (["test", "{snapshot}", "--csv", "{disguised}"], "zip archive"),
]


@pytest.mark.parametrize("argv, said", CASES, ids=[" ".join(a[:1] + a[-2:-1]) + f" {i}" for i, (a, _) in enumerate(CASES)])
def test_an_output_that_would_destroy_a_file_is_refused(files, capsys, argv, said):
    before = {name: open(path, "rb").read() for name, path in files.items()}
    assert run_cli([part.format(**files) for part in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and err.count("\n") == 0 and "Traceback" not in err
    assert {name: open(path, "rb").read() for name, path in files.items()} == before


def test_an_html_output_that_is_an_input_of_plot_is_refused(tmp_path, files, capsys):
    """plot draws CSVs: its --out may not be one of them, even under an .html name."""
    page = tmp_path / "runs.html"
    shutil.copy(files["statistics"], page)
    before = page.read_bytes()
    assert run_cli(["plot", str(page), "--out", str(page)]) == 2
    err = capsys.readouterr().err
    assert "is one of this command's inputs" in err or "training run's statistics" in err
    assert page.read_bytes() == before


def test_nvis_report_from_python_refuses_a_snapshot_as_its_path(tmp_path, files):
    import dqnviz
    from dqnviz.errors import UserError

    model = dqnviz.load_snapshot(files["snapshot"]).model
    states = __import__("numpy").zeros((2, 84, 84, 4), "uint8")
    with pytest.raises(UserError, match="ending in .html"):
        dqnviz.nvis_report(model, states, files["snapshot"])
    with pytest.raises(UserError, match="zip archive"):
        dqnviz.nvis_report(model, states, files["disguised"])


def test_a_numpy_archive_given_as_a_snapshot_is_named_as_one(tmp_path, capsys):
    """`--resume snapshots/pong.optimizer.npz` (a zip of .npy files): not called a Keras model."""
    import numpy as np

    archive = tmp_path / "pong.optimizer.npz"
    np.savez(archive, step=np.zeros(1))
    assert run_cli(["test", str(archive)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a numpy archive, not a dqnviz snapshot" in err and "Keras model but" not in err and "\n" not in err


def test_an_immutable_output_is_refused_before_the_work_and_a_read_only_one_replaced(tmp_path, files, capsys,
                                                                                    monkeypatch):
    """An existing output that refuses to be replaced (chattr +i, append-only: EPERM even for root)
    is one line before the work, not a failure after it; one merely read-only to the user is
    replaced by the rename as before (EACCES does not count)."""
    import errno
    import os

    out = tmp_path / "plot.html"
    out.write_text("kept")
    real_open = os.open

    def refusing(error_number):
        def fake_open(path, flags, *args, **kwargs):
            if os.fspath(path) == str(out) and flags & os.O_WRONLY:
                raise OSError(error_number, os.strerror(error_number), str(path))
            return real_open(path, flags, *args, **kwargs)
        return fake_open

    monkeypatch.setattr(os, "open", refusing(errno.EPERM))
    assert run_cli(["plot", files["statistics"], "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"dqnviz plot: error: cannot write {out}: operation not permitted (the file is immutable or "
                   "append-only: lsattr shows its flags)")
    assert out.read_text() == "kept"
    monkeypatch.setattr(os, "open", refusing(errno.EACCES))
    assert run_cli(["plot", files["statistics"], "--out", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_a_file_is_on_the_disk_before_it_takes_its_name(tmp_path, monkeypatch):
    """atomic_write flushes the temporary file to the disk before the rename: after a power cut the
    name holds the old file or the whole new one, never an empty or short one."""
    import os

    from dqnviz.outputs import atomic_write

    events, real_fsync, real_replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.fstat(fd).st_size)) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", os.path.basename(b))) or real_replace(a, b))
    atomic_write(tmp_path / "r.html", lambda tmp: open(tmp, "w").write("x" * 1000))
    assert events == [("fsync", 1000), ("replace", "r.html")]
    assert (tmp_path / "r.html").read_text() == "x" * 1000


def test_a_file_is_flushed_through_a_writable_handle_on_windows(tmp_path, monkeypatch):
    """Windows' fsync refuses a read-only handle (EBADF): there the flush opens the file for
    writing. Windows' rule is played here by an fsync that refuses read-only descriptors."""
    import errno
    import fcntl
    import os

    from dqnviz import outputs

    real_fsync, flushed = os.fsync, []

    def windows_fsync(fd):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        flushed.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", windows_fsync)
    monkeypatch.setattr(outputs, "_WINDOWS", True)
    outputs.atomic_write(tmp_path / "r.html", lambda tmp: open(tmp, "w").write("x"))
    assert flushed and (tmp_path / "r.html").read_text() == "x"
    monkeypatch.setattr(outputs, "_WINDOWS", False)  # the rule is real: a read-only handle fails it
    with pytest.raises(Exception, match="Bad file descriptor"):
        outputs.atomic_write(tmp_path / "s.html", lambda tmp: open(tmp, "w").write("x"))
    assert not (tmp_path / "s.html").exists()


def test_a_write_that_fails_leaves_neither_its_file_nor_the_folders_made_for_it(tmp_path):
    """A Ctrl-C while `record --out new/sub/x.mp4` wrote its video left an empty new/sub/ behind."""
    from dqnviz.outputs import atomic_write

    def interrupted(tmp):
        open(tmp, "w").write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "new" / "sub" / "x.mp4", interrupted)
    assert list(tmp_path.iterdir()) == []

    def meanwhile(tmp):  # another file lands in a folder made for this one: that folder stays
        open(tmp_path / "new" / "other.txt", "w").write("kept")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "new" / "sub" / "x.mp4", meanwhile)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["new", "new/other.txt"]
    atomic_write(tmp_path / "new" / "sub" / "x.mp4", lambda tmp: open(tmp, "w").write("whole"))
    assert (tmp_path / "new" / "sub" / "x.mp4").read_text() == "whole"
