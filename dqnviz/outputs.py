"""Writing a command's output files: refuse, before any work, a path that cannot be written or
whose file must not be replaced, and write atomically.

:func:`check_output` refuses in one line what writing a path would wrongly replace (one of the
command's own inputs, a snapshot or any zip archive, a training run's statistics CSV) and then
:func:`check_writable` tries the folder. :func:`atomic_write` writes to a temporary name in the
target folder, flushes it to the disk, and moves the file into place with ``os.replace``, so a
crash (or a power cut) never leaves half a file. Snapshots, reports, videos and CSVs are all
written this way.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from dqnviz.errors import UserError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["atomic_write", "cannot_write", "check_output", "check_writable", "kept_file", "snapshot_like"]


def cannot_write(path, error: OSError) -> UserError:
    """The one-line UserError for an OSError met writing ``path``: ``cannot write PATH: REASON``."""
    return UserError(f"cannot write {path}: {error.strerror or error}")


def _temporary_beside(path: Path, suffix: str) -> tuple[str, list[Path]]:
    """A new empty file in ``path``'s folder, and the folders made for it (deepest first), which
    were missing; an OSError is a one-line UserError."""
    made, folder = [], path.parent
    try:
        while not folder.exists() and folder != folder.parent:
            made.append(folder)
            folder = folder.parent
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=suffix, dir=path.parent)
    except OSError as error:
        _remove_empty(made)
        raise cannot_write(path, error) from None
    os.close(fd)
    return tmp, made


def _remove_empty(folders) -> None:
    """Remove each of ``folders`` (deepest first) that is empty: those made for a file not written."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (something else was written there meanwhile), or gone
            return


# Windows' fsync (_commit) needs a handle open for writing; POSIX's takes any, and a read-only
# one works on files this process could not write.
_WINDOWS = os.name == "nt"


def _to_disk(path) -> None:
    """``fsync`` the file ``path`` (a no-op where the file system cannot)."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0) if _WINDOWS else os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):  # a pipe, a file system without fsync
            raise
    finally:
        os.close(fd)


def check_writable(path) -> Path:
    """Fail now, in one line, if ``path`` cannot be written, rather than after the work that makes
    it. Folders that :func:`atomic_write` would make are not made here: a file is tried in the
    nearest folder that exists, and removed."""
    path = Path(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"cannot write {path}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".dqnviz-", suffix=".probe", dir=folder)
    except OSError as error:
        raise cannot_write(path, error) from None
    os.close(fd)
    os.unlink(probe)
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder; give a file name")
    if path.exists():
        # A file the folder lets us replace may still refuse to be replaced: immutable (chattr +i)
        # or append-only. Opening it to append, and writing nothing, asks without changing it; only
        # EPERM counts (a file merely read-only to us is replaced by the rename all the same).
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        except OSError as error:
            if error.errno == errno.EPERM:
                raise UserError(f"cannot write {path}: operation not permitted (the file is immutable or "
                                "append-only: lsattr shows its flags)") from None
    return path


def snapshot_like(path) -> str | None:
    """``"a snapshot"`` for a ``.keras`` name, ``"a zip archive (as a snapshot is)"`` for an existing
    zip archive (a snapshot under another name, or the ``.npz`` files beside one), else None.

    The check is of the file's format, not :func:`~dqnviz.snapshot.read_meta`: a snapshot with damaged metadata, or
    another Keras model, must not be overwritten either; a missing or unreadable file is None here.
    """
    import zipfile

    path = Path(path)
    if path.suffix.lower() == ".keras":
        return "a snapshot"
    try:
        return "a zip archive (as a snapshot is)" if path.is_file() and zipfile.is_zipfile(path) else None
    except OSError:
        return None  # unreadable: check_writable says whether it can be written


def kept_file(path) -> str | None:
    """What an existing ``path`` holds that a command's output must not replace, in words, or None:
    what :func:`snapshot_like` names, or a training run's statistics (``dqnviz train``'s CSV, whose
    header starts ``epoch,phase,``): what a slip such as ``--out snapshots/pong_24.keras`` or
    ``--csv reports/pong.csv`` would destroy.
    """
    kept = snapshot_like(path)
    if kept:
        return kept
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None  # missing, a folder, or unreadable: check_writable says whether it can be written
    if head.lstrip(b"\xef\xbb\xbf").startswith(b"epoch,phase,"):
        return "a training run's statistics (dqnviz train's CSV)"
    return None


def check_output(path, option: str = "--out", inputs=(), suffixes=None, makes: str = "the report") -> Path:
    """:func:`check_writable`, after refusing in one line what writing ``path`` would wrongly
    replace: one of the command's own ``inputs``, or a file :func:`kept_file` names; and, with
    ``suffixes`` (lower case, with the dot), a name ending in none of them (``--out pong.keras``
    for an HTML report).
    """
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{option} {path}: {makes} is written there; give a name ending in "
                        + " or ".join(suffixes))
    if path.exists():
        for given in inputs:
            try:
                same = os.path.samefile(path, given)
            except OSError:
                same = False
            if same:
                raise UserError(f"{option} {path} is one of this command's inputs; writing there would destroy it")
        kept = kept_file(path)
        if kept:
            raise UserError(f"{option} {path} is {kept}; writing there would destroy it: give another name")
    return check_writable(path)


def atomic_write(path, write, suffix=None):
    """Call ``write(tmp_path)`` then move the file to ``path`` in one step; clean up on failure.

    A file-system error (no such folder, no permission, a full disk) is a one-line UserError
    naming ``path``, and nothing is left behind: not the temporary file, nor the folders made for
    it (a Ctrl-C too).
    """
    path = Path(path)
    tmp, made = _temporary_beside(path, suffix or path.suffix)
    try:
        write(tmp)
        os.chmod(tmp, 0o644 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        _to_disk(tmp)  # the bytes reach the disk before the name does: a power cut leaves the old file
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _remove_empty(made)
        if isinstance(error, OSError):
            raise cannot_write(path, error) from None
        raise
    return path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import, before any thread of dqnviz's exists: reading it sets it to 0 for a moment,
# and a file another thread created in that moment would be world-writable.
_UMASK = _read_umask()


def try_flock(fd: int) -> bool | None:
    """An exclusive ``flock`` on the open file ``fd``, without waiting: True when taken, False when
    another process holds it, None where the system has none (Windows). The system releases it
    when the process ends, however it ends: a killed process's lock never blocks the next."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
