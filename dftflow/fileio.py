"""Atomic file writes, in one place: a reader sees the old file or the new one, never half of one.

The data go to a temporary file in the target's directory (same file system), which is renamed over
the target only when complete (``os.replace``, atomic on POSIX); on any error the temporary file
is removed and the target is left as it was. The new file gets the permissions of the file it
replaces, or those of a newly created file (``0o666`` minus the umask), never ``mkstemp``'s 0600.

A set of files that belong together (a run's VASP inputs) is written with :func:`atomic_directory`:
into a temporary directory beside the target, moved into place only when every file is written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps ``path``'s suffix (libraries such as matplotlib infer the format
    from it) and starts with a dot.

    Parameters
    ----------
    path
        The target file; its directory must exist.
    durable
        Also ``fsync`` the file and its directory, so the new content survives a power loss
        (for stores other processes rely on).

    Yields
    ------
    Path
        Where to write the new content (an empty file).
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, _new_file_mode(path))
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(
    path: str | Path, text: str, *, encoding: str = "utf-8", durable: bool = False
) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path
        The target file; its directory must exist.
    text
        The whole new content.
    encoding
        Text encoding.
    durable
        ``fsync`` file and directory (see :func:`atomic_path`).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path


def _new_file_mode(path: Path) -> int:
    """Permission bits for a new version of ``path``: the old file's, else 0o666 minus the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; move its files to ``path`` on success.

    When ``path`` does not exist the temporary directory is renamed to it (atomic); otherwise each
    file is moved over its namesake in ``path`` (each file atomically; files of ``path`` not
    written in the block are left alone). On any error nothing is left behind: the temporary
    directory is removed, and so are the parent directories this call created.

    Parameters
    ----------
    path
        The target directory (created with its missing parents).

    Yields
    ------
    Path
        Where to write the files (flat: sub-directories are not merged into an existing ``path``).
    """
    path = Path(path)
    created: list[Path] = []
    parent = path.absolute().parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    # say which path is wrong before anything is made (not a temporary name)
    if not parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    tmp: Path | None = None
    try:
        for directory in reversed(created):
            directory.mkdir()
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.absolute().parent))
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
        else:
            for item in tmp.iterdir():
                os.replace(item, path / item.name)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for directory in created:  # innermost first
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    else:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
