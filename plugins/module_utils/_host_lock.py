# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An exclusive lock held by one process on this host, waited for with a deadline."""

from __future__ import annotations

import errno
import fcntl
import os
import time

from ansible_collections.rotor.vps.plugins.module_utils._waiter import Waiter, WaitTimeout


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

        def try_lock() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                return False

        try:
            Waiter(initial=0.05, cap=0.5).until(try_lock, bool, what=self.what, timeout=self.timeout)
        except WaitTimeout:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockTimeout(
                "%s is locked by another run (pid %s, lock file %s); waited %d s (lock_timeout)"
                % (self.what, holder, self.path, self.timeout)
            ) from None
        except OSError:
            os.close(fd)
            raise
        self.waited = round(time.monotonic() - start, 3)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass  # the PID only names the holder to a waiter: a full disk must not stop the run here
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = -1
