# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How full every running container's tmpfs mounts are, as Prometheus textfile metrics.

Docker gives containers tmpfs mounts (``--tmpfs``, the networks role's tmpfs volumes, ``/dev/shm``)
that neither node-exporter (the host's filesystems) nor cAdvisor (the writable layer) measures.
This reads each running container's mount table (``/proc/<pid>/mountinfo``) and measures every
tmpfs in it through ``/proc/<pid>/root``, the container's own view of its files: nothing runs
inside the container. Run on the VPS by a systemd timer (``rotor-tmpfs-metrics``), it writes
``rotor_tmpfs_size_bytes`` and ``rotor_tmpfs_used_bytes`` per container and mount point.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from ansible_collections.rotor.vps.plugins.module_utils._audit import write_textfile_samples

TMPFS_METRICS = {
    "rotor_tmpfs_size_bytes": ("gauge", "Size of a tmpfs mount of a running container."),
    "rotor_tmpfs_used_bytes": ("gauge", "Bytes in use on a tmpfs mount of a running container."),
}
COLLECTOR_METRICS = {
    "rotor_tmpfs_collector_last_run_timestamp_seconds": ("gauge", "When the tmpfs collector last ran."),
    "rotor_tmpfs_collector_containers": ("gauge", "Running containers the tmpfs collector measured."),
}
# Docker's own tmpfs mounts that hold no data: the device directory and the masks over /proc and /sys.
NOT_DATA = ("/dev",)
NOT_DATA_UNDER = ("/proc/", "/sys/")


@dataclass(frozen=True)
class TmpfsUsage:
    container: str
    mount: str
    size: int
    used: int


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (``\\040``)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def tmpfs_mounts(mountinfo: str) -> list[str]:
    """The mount points of whole tmpfs filesystems holding data, in the order of a mountinfo text."""
    mounts = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if not after or after[0] != "tmpfs" or root != "/":
            continue  # another filesystem, or one file of a tmpfs bound elsewhere (Docker's /proc masks)
        if point in NOT_DATA or point.startswith(NOT_DATA_UNDER):
            continue
        mounts.append(point)
    return mounts


def measure(pid: int, mount: str, statvfs: Callable = os.statvfs) -> tuple[int, int]:
    """(size, used) in bytes of ``mount`` as the process ``pid`` sees it."""
    st = statvfs("/proc/%d/root%s" % (pid, mount))
    return st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize


def collect(containers: Iterable[tuple[str, int]], read: Optional[Callable[[str], str]] = None,
            statvfs: Callable = os.statvfs) -> list[TmpfsUsage]:
    """Every tmpfs of every (name, pid) container; a container that stops meanwhile is left out."""
    def read_file(path: str) -> str:
        with open(path, encoding="utf-8") as handle:
            return handle.read()

    read = read or read_file
    usages = []
    for name, pid in containers:
        try:
            mounts = tmpfs_mounts(read("/proc/%d/mountinfo" % pid))
            for mount in mounts:
                size, used = measure(pid, mount, statvfs)
                usages.append(TmpfsUsage(name, mount, size, used))
        except (FileNotFoundError, ProcessLookupError):
            continue  # it stopped between the listing and now
    return usages


def samples(usages: list[TmpfsUsage]) -> list[tuple[dict, dict]]:
    """One (labels, values) sample per container and mount point."""
    return [({"container": u.container, "mount": u.mount},
             {"rotor_tmpfs_size_bytes": float(u.size), "rotor_tmpfs_used_bytes": float(u.used)}) for u in usages]


def running_containers(docker_host: str) -> list[tuple[str, int]]:
    """(name, pid) of every running container of the engine."""
    import docker  # pylint: disable=import-outside-toplevel  # python3-docker, on the VPS

    client = docker.DockerClient(base_url=docker_host, timeout=30)
    try:
        return [(c.name, int(c.attrs["State"]["Pid"])) for c in client.containers.list()
                if c.attrs.get("State", {}).get("Pid")]
    finally:
        client.close()


def write(path: str, usages: list[TmpfsUsage], containers: int, now: Optional[float] = None) -> None:
    """The whole textfile, replaced atomically: a stopped container's samples go with it."""
    collector = ({}, {"rotor_tmpfs_collector_last_run_timestamp_seconds": round(now or time.time(), 3),
                      "rotor_tmpfs_collector_containers": float(containers)})
    write_textfile_samples(path, dict(TMPFS_METRICS, **COLLECTOR_METRICS), samples(usages) + [collector])


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description="Write the tmpfs usage of every running container as Prometheus "
                                                 "textfile metrics.")
    parser.add_argument("--output", default="/var/lib/rotor/metrics/tmpfs.prom", help="the textfile to write")
    parser.add_argument("--docker-host", default="unix:///var/run/docker.sock", help="the Docker engine's API")
    args = parser.parse_args(argv)
    containers = running_containers(args.docker_host)
    write(args.output, collect(containers), len(containers))
    return 0
