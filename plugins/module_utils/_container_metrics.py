# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How full every running container's tmpfs mounts are, and its state, as Prometheus textfile metrics.

Docker gives containers tmpfs mounts (``--tmpfs``, the networks role's tmpfs volumes, ``/dev/shm``)
that neither node-exporter (the host's filesystems) nor cAdvisor (the writable layer) measures.
This reads each running container's mount table (``/proc/<pid>/mountinfo``) and measures every
tmpfs in it through ``/proc/<pid>/root``, the container's own view of its files: nothing runs
inside the container. Run on the VPS by a systemd timer (``rotor-container-metrics``, the
observability role's), it writes ``rotor_tmpfs_size_bytes`` and ``rotor_tmpfs_used_bytes`` per
container and mount point, and per container what cAdvisor does not export: Docker's restart count
and whether its health check says unhealthy.
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
STATE_METRICS = {
    "rotor_container_restart_count": ("gauge", "Times Docker restarted the running container (its restart policy)."),
    "rotor_container_unhealthy": ("gauge", "1 when the running container's health check says unhealthy, else 0."),
}
COLLECTOR_METRICS = {
    "rotor_tmpfs_collector_last_run_timestamp_seconds": ("gauge", "When the tmpfs collector last ran."),
    "rotor_tmpfs_collector_containers": ("gauge", "Running containers the tmpfs collector measured."),
}
# Docker's own tmpfs mounts that hold no data: the device directory and the masks over /proc and /sys.
NOT_DATA = ("/dev",)
NOT_DATA_UNDER = ("/proc/", "/sys/")


@dataclass(frozen=True)
class Container:
    name: str
    pid: int
    restart_count: int = 0
    health: str = ""  # Docker's health status: "", "starting", "healthy" or "unhealthy"
    # Mount points where Docker gave the container a tmpfs of its own; None measures every tmpfs.
    tmpfs_points: Optional[frozenset] = None


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


def collect(containers: Iterable[Container], read: Optional[Callable[[str], str]] = None,
            statvfs: Callable = os.statvfs) -> list[TmpfsUsage]:
    """Every tmpfs of every container; a container that stops meanwhile is left out."""
    def read_file(path: str) -> str:
        with open(path, encoding="utf-8") as handle:
            return handle.read()

    read = read or read_file
    usages = []
    for container in containers:
        try:
            mounts = [m for m in tmpfs_mounts(read("/proc/%d/mountinfo" % container.pid))
                      if container.tmpfs_points is None or m in container.tmpfs_points]
            for mount in mounts:
                size, used = measure(container.pid, mount, statvfs)
                usages.append(TmpfsUsage(container.name, mount, size, used))
        except (FileNotFoundError, ProcessLookupError):
            continue  # it stopped between the listing and now
    return usages


def samples(usages: list[TmpfsUsage], containers: Iterable[Container] = ()) -> list[tuple[dict, dict]]:
    """One (labels, values) sample per container and mount point, and one per container for its state."""
    return ([({"container": u.container, "mount": u.mount},
              {"rotor_tmpfs_size_bytes": float(u.size), "rotor_tmpfs_used_bytes": float(u.used)}) for u in usages]
            + [({"container": c.name}, {"rotor_container_restart_count": float(c.restart_count),
                                        "rotor_container_unhealthy": 1.0 if c.health == "unhealthy" else 0.0})
               for c in containers])


def container_of(attrs: dict) -> Optional[Container]:
    """The Container of one ``docker inspect`` result, or None when it has no process (it stopped)."""
    state = attrs.get("State") or {}
    if not state.get("Pid"):
        return None
    return Container(name=attrs.get("Name", "").lstrip("/"), pid=int(state["Pid"]),
                     restart_count=int(attrs.get("RestartCount") or 0),
                     health=(state.get("Health") or {}).get("Status", ""), tmpfs_points=tmpfs_points(attrs))


def tmpfs_points(attrs: dict) -> frozenset:
    """Where Docker may have given a container a tmpfs of its own: --tmpfs, tmpfs mounts and volumes (the
    networks role's tmpfs volumes), /dev/shm. A host's tmpfs seen through a bind mount (a node-exporter's
    /host/run) is the host's business, not the container's."""
    points = set((attrs.get("HostConfig") or {}).get("Tmpfs") or {})
    points.update(m.get("Destination", "") for m in attrs.get("Mounts") or [] if m.get("Type") in ("tmpfs", "volume"))
    points.add("/dev/shm")
    return frozenset(p for p in points if p)


def running_containers(docker_host: str) -> list[Container]:
    """Every running container of the engine."""
    import docker  # pylint: disable=import-outside-toplevel  # python3-docker, on the VPS

    # The engine's own API version: an older python3-docker's default can be below a newer engine's minimum.
    client = docker.DockerClient(base_url=docker_host, version="auto", timeout=30)
    try:
        found = (container_of(c.attrs) for c in client.containers.list())
        return [c for c in found if c is not None]
    finally:
        client.close()


def write(path: str, usages: list[TmpfsUsage], containers: list[Container], now: Optional[float] = None) -> None:
    """The whole textfile, replaced atomically: a stopped container's samples go with it."""
    collector = ({}, {"rotor_tmpfs_collector_last_run_timestamp_seconds": round(now or time.time(), 3),
                      "rotor_tmpfs_collector_containers": float(len(containers))})
    write_textfile_samples(path, dict(TMPFS_METRICS, **STATE_METRICS, **COLLECTOR_METRICS),
                           samples(usages, containers) + [collector])


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description="Write the tmpfs usage and state of every running container as "
                                                 "Prometheus textfile metrics.")
    parser.add_argument("--output", default="/var/lib/rotor/metrics/containers.prom", help="the textfile to write")
    parser.add_argument("--docker-host", default="unix:///var/run/docker.sock", help="the Docker engine's API")
    args = parser.parse_args(argv)
    containers = running_containers(args.docker_host)
    write(args.output, collect(containers), containers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
