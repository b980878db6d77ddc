# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An exclusive lock held by one process on this host, waited for with a deadline."""

from __future__ import annotations

import errno
import fcntl
import os
import time


class LockTimeout(Exception):
    """Another process held the lock for longer than we were willing to wait."""


class HostLock:
    """``with HostLock(path, timeout):`` - flock(2) on ``path``; released when the process ends.

    The holder writes its PID into the file so that a waiter can say who it waited for.
    """

    def __init__(self, path: str, timeout: float, what: str):
        self.path = path
        self.timeout = timeout
        self.what = what
        self._fd = -1
        self.waited = 0.0

    def __enter__(self) -> "HostLock":
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        start = time.monotonic()
        delay = 0.05
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() - start >= self.timeout:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise LockTimeout(
                    "%s is locked by another run (pid %s, lock file %s); waited %d s (lock_timeout)"
                    % (self.what, holder, self.path, self.timeout)
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        self.waited = round(time.monotonic() - start, 3)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = -1
