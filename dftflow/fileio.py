"""Atomic file writes, in one place: a reader sees the old file or the new one, never half of one.

The data go to a temporary file in the target's directory (same file system), which is renamed over
the target only when complete (``os.replace``, atomic on POSIX); on any error the temporary file
is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
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
