"""One run per output folder: the lock refuses a second holder and frees itself when its holder dies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from motionformer.engine.lock import FolderLockedError, RunLock


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    expected = re.escape(f"{tmp_path / 'run'} is in use by another run (process {os.getpid()} on ")
    with RunLock(tmp_path / "run"), pytest.raises(FolderLockedError, match=expected):
        RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run"):  # released on exit
        pass


def test_the_lock_of_a_killed_process_is_free(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from motionformer.engine.lock import RunLock
        RunLock({str(tmp_path)!r}).acquire()
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderLockedError, match=f"process {holder.pid} on"):
        RunLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with RunLock(tmp_path):
        pass


def test_a_forked_child_does_not_keep_the_lock_of_a_killed_parent(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys, time
        from motionformer.engine.lock import RunLock
        RunLock({str(tmp_path)!r}).acquire()
        if os.fork() == 0:  # a data-loading worker, say, that outlives its parent for a while
            time.sleep(30)
            os._exit(0)
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with RunLock(tmp_path):  # the child is still alive, and the lock is free
        pass
