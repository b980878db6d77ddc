# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crash-safe file replacement: a reader sees the old file or the new one, never a mix."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Iterator, Optional

# A file a module creates: readable by root and by the group of its directory (the service's).
NEW_FILE_MODE = 0o640


@contextmanager
def atomic_output(path: str, *, mode: int = 0o600, uid: Optional[int] = None, gid: Optional[int] = None,
                  suffix: str = ".tmp") -> Iterator[IO[bytes]]:
    """A binary file that replaces ``path`` only when the block ends without an error: a temp file in the
    same directory (named ``.<name>.<random><suffix>``), fsync, rename, fsync of the directory.

    The mode (and owner, when given) are set on the temp file before anything is written, so a secret is
    never readable with looser permissions, not even for a moment.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if uid is not None or gid is not None:
                os.fchown(handle.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write(path: str, data: str, *, mode: int = 0o644, uid: Optional[int] = None,
                 gid: Optional[int] = None) -> None:
    """Replace ``path`` with the text ``data`` (UTF-8), through ``atomic_output``."""
    with atomic_output(path, mode=mode, uid=uid, gid=gid) as handle:
        handle.write(data.encode("utf-8"))


def read_text(path: str) -> Optional[str]:
    """The file's text, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


@dataclass
class FileState:
    """A file's text and its mode and owner, to rewrite or restore it exactly (text None: it did not exist).

    Rewriting through it keeps whatever mode and owner the role gave the file; a file that did not
    exist is created ``NEW_FILE_MODE``, root-owned, in its directory's group.
    """

    path: str
    text: Optional[str]
    mode: int = NEW_FILE_MODE
    uid: int = 0
    gid: int = 0

    @classmethod
    def read(cls, path: str) -> "FileState":
        text = read_text(path)
        if text is None:
            try:
                group = os.stat(os.path.dirname(path)).st_gid
            except FileNotFoundError:
                group = 0  # no directory yet (check mode before the role made it): writing would fail
            return cls(path, None, NEW_FILE_MODE, 0, group)
        info = os.stat(path)
        return cls(path, text, info.st_mode & 0o7777, info.st_uid, info.st_gid)

    def write(self, text: str) -> None:
        atomic_write(self.path, text, mode=self.mode, uid=self.uid, gid=self.gid)

    def restore(self) -> None:
        if self.text is None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        else:
            self.write(self.text)
