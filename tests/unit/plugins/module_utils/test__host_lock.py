"""The host lock really excludes a second holder, and says who held it when waiting runs out."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._host_lock import HostLock, LockTimeout


def test_second_holder_waits_then_times_out(tmp_path):
    path = str(tmp_path / "locks" / "haproxy-web.lock")
    script = (
        "import fcntl, os, time\n"
        "os.makedirs(os.path.dirname(%r), exist_ok=True)\n"
        "fd = os.open(%r, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, b'4242')\n"
        "print('held', flush=True)\n"
        "time.sleep(3)\n" % (path, path)
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    start = time.monotonic()
    with pytest.raises(LockTimeout, match=r"backend web is locked by another run \(pid 4242"):
        with HostLock(path, 0.5, "backend web"):
            pass
    assert 0.4 < time.monotonic() - start < 2
    holder.wait(timeout=10)
    with HostLock(path, 2, "backend web") as lock:
        assert open(path).read() == str(os.getpid())
        assert lock.waited < 1


def test_a_full_disk_does_not_stop_the_lock(tmp_path, monkeypatch):
    """The holder's PID is only for a waiter's message: when it cannot be written, the lock is held all the same."""
    from ansible_collections.rotor.vps.plugins.module_utils import _host_lock

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_host_lock.os, "pwrite", full)
    path = str(tmp_path / "full.lock")
    with HostLock(path, 1, "the test's files") as lock:
        assert lock.waited == 0
        with pytest.raises(LockTimeout):
            with HostLock(path, 0.2, "the test's files"):
                pass
