"""Crash-safe file writing: a file is either its old self or completely written, never half."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Call ``write(temp)`` on a temporary file in ``path``'s folder, fsync it and rename it over ``path``.

    The file gets the permissions a plain ``open`` would give (the umask's); on any error the temporary file
    is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    umask = os.umask(0)  # mkstemp makes the file private (0600); give it the permissions a plain open would
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    try:
        write(temp)
        with open(temp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
