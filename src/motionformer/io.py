"""Crash-safe file writing (a file is either its old self or completely written, never half), and reading of
weight files whose errors name the file."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# Writers report a full disk in their own words (torch.save: "unexpected pos ..."); with less free space than
# this when a write fails, the failure is reported as a full disk.
FULL_DISK_BYTES = 64 * 2**20


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
    except BaseException as error:
        full = isinstance(error, Exception) and _disk_is_full(path.parent)
        Path(temp).unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
        raise


def _disk_is_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < FULL_DISK_BYTES
    except OSError:
        return False


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str, unsafe_hint: str = "") -> Iterator[Path]:
    """Read ``path`` inside this block: a missing file, a folder, a truncated or foreign file, or an unsafe
    pickle becomes one error naming the file and ``what`` it should be (e.g. "a released .pyth checkpoint");
    ``unsafe_hint`` follows the refusal of an unsafe pickle."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected {what}")
    if not path.exists():
        raise FileNotFoundError(f"not found: {path} (expected {what})")
    try:
        yield path
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: refused: unpickling it would run code or build objects other than tensors and "
                         f"containers ({str(error).splitlines()[0]}); expected {what}{unsafe_hint}") from error
    except (ValueError, FileNotFoundError):
        raise
    except Exception as error:  # each reader fails in its own words: torch, safetensors, zip, json
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: cannot be read as {what} (truncated or another kind of file?): "
                         f"{type(error).__name__}: {reason}") from error
