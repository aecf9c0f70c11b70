"""One run per output folder: an exclusive lock held while a run writes there.

The lock is ``FOLDER/.lock``, locked with ``fcntl.flock``: the kernel releases it when the holding process ends,
however it ends (kill -9 included), so a stale lock never blocks a new run. Processes forked while it is held
(data-loading workers) close their copy at once, so a worker outliving a killed run does not keep the lock. The
file names its holder (host, process id, start time) so that a refused run can say who holds the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from motionformer.engine import RunError

LOCK_NAME = ".lock"
_HELD: set[int] = set()  # descriptors of the locks this process holds


def _close_held_in_child() -> None:
    for handle in _HELD:
        with contextlib.suppress(OSError):
            os.close(handle)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class FolderLockedError(RunError):
    """Another live process holds the output folder."""


class RunLock:
    """``with RunLock(folder):`` holds ``folder`` for this process; a second holder gets ``FolderLockedError``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._file: int | None = None

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.read(handle, 4096))
            os.close(handle)
            raise FolderLockedError(f"{self.folder} is in use by another run ({holder}); wait for it to end, or "
                                    "choose another output_dir") from None
        record = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(handle, 0)
        os.write(handle, (json.dumps(record) + "\n").encode())
        self._file = handle
        _HELD.add(handle)

    def release(self) -> None:
        if self._file is not None:
            _HELD.discard(self._file)
            os.close(self._file)  # closing releases the flock; the file stays (removing it would race)
            self._file = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()


def _describe(raw: bytes) -> str:
    try:
        record = json.loads(raw.decode())
        return f"process {record['pid']} on {record['host']}, started {record['started']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet written its name"
