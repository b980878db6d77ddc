from __future__ import annotations

import os

from ansible_collections.rotor.vps.plugins.module_utils._container_metrics import (
    Container, TmpfsUsage, collect, container_of, tmpfs_mounts, write)

# /proc/<pid>/mountinfo of a rotated web container in the lab (tmpfs /tmp and /scratch), with a
# tmpfs volume whose mount point has a space added.
MOUNTINFO = """\
319 318 0:129 / / ro,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X
546 319 0:130 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
575 548 0:133 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
639 546 0:134 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
640 319 0:135 / /tmp rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=16384k,uid=1000
641 319 0:136 / /scratch rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=16384k,mode=755,uid=1000
642 319 0:140 / /var/web\\040cache rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=8192k
355 545 0:137 / /proc/acpi ro,relatime - tmpfs tmpfs ro
356 545 0:130 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
419 548 0:138 / /sys/firmware ro,relatime - tmpfs tmpfs ro
"""


class Stat:
    def __init__(self, blocks, free):
        self.f_blocks, self.f_bfree, self.f_frsize = blocks, free, 4096


def test_the_tmpfs_mounts_that_hold_data():
    assert tmpfs_mounts(MOUNTINFO) == ["/dev/shm", "/tmp", "/scratch", "/var/web cache"]


def test_each_container_and_mount_measured_in_its_own_view_and_a_stopped_one_left_out():
    seen = []

    def statvfs(path):
        seen.append(path)
        return Stat(4096, 4000) if path.endswith("/tmp") else Stat(4096, 4096)

    def read(path):
        if path == "/proc/22/mountinfo":
            raise FileNotFoundError(path)
        return MOUNTINFO

    usages = collect([Container("web-a", 11), Container("web-gone", 22)], read=read, statvfs=statvfs)
    assert [u.mount for u in usages] == ["/dev/shm", "/tmp", "/scratch", "/var/web cache"]
    assert usages[1] == TmpfsUsage("web-a", "/tmp", 16 * 1024 * 1024, 96 * 4096)
    assert seen[1] == "/proc/11/root/tmp"


def test_the_textfile_has_a_sample_per_mount_and_the_collectors_own(tmp_path):
    path = str(tmp_path / "tmpfs.prom")
    containers = [Container("web-a", 11, 0, "healthy"), Container("db", 12, 3, "unhealthy")]
    write(path, [TmpfsUsage("web-a", "/tmp", 16777216, 393216), TmpfsUsage("db", "/run/x", 1024, 0)], containers,
          now=1700000000)
    text = open(path, encoding="utf-8").read()
    assert 'rotor_tmpfs_used_bytes{container="web-a",mount="/tmp"} 393216\n' in text
    assert 'rotor_tmpfs_size_bytes{container="db",mount="/run/x"} 1024\n' in text
    assert "rotor_tmpfs_collector_last_run_timestamp_seconds{} 1700000000\n" in text
    assert "rotor_tmpfs_collector_containers{} 2\n" in text
    assert 'rotor_container_restart_count{container="db"} 3\n' in text
    assert 'rotor_container_unhealthy{container="db"} 1\n' in text
    assert 'rotor_container_unhealthy{container="web-a"} 0\n' in text
    assert text.count("# TYPE ") == 6 and oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_with_nothing_running_only_the_collectors_own_samples_are_written(tmp_path):
    path = str(tmp_path / "tmpfs.prom")
    write(path, [], [], now=1700000000)
    samples = [line for line in open(path, encoding="utf-8").read().splitlines() if not line.startswith("#")]
    assert samples == ["rotor_tmpfs_collector_last_run_timestamp_seconds{} 1700000000",
                       "rotor_tmpfs_collector_containers{} 0"]


def test_a_container_from_docker_inspect():
    running = {"Name": "/web-a", "RestartCount": 2, "State": {"Pid": 41, "Health": {"Status": "unhealthy"}},
               "HostConfig": {"Tmpfs": {"/tmp": "size=16m"}},
               "Mounts": [{"Type": "volume", "Destination": "/var/web cache"}, {"Type": "bind", "Destination": "/host"},
                          {"Type": "tmpfs", "Destination": "/run/x"}]}
    points = frozenset({"/tmp", "/var/web cache", "/run/x", "/dev/shm"})
    assert container_of(running) == Container("web-a", 41, 2, "unhealthy", points)
    assert container_of({"Name": "/plain", "State": {"Pid": 7}}) == Container("plain", 7, 0, "", frozenset({"/dev/shm"}))
    assert container_of({"Name": "/gone", "State": {"Pid": 0}}) is None


def test_only_the_containers_own_tmpfs_mounts_are_measured():
    # A node-exporter sees the host's tmpfs mounts under its bind mount of / : they are not its own.
    mountinfo = MOUNTINFO + "700 319 0:30 / /host/run rw,nosuid - tmpfs tmpfs rw,size=1000k\n"

    def statvfs(_path):
        return Stat(4096, 4096)

    own = Container("exporter", 5, tmpfs_points=frozenset({"/tmp", "/dev/shm"}))
    assert [u.mount for u in collect([own], read=lambda _p: mountinfo, statvfs=statvfs)] == ["/dev/shm", "/tmp"]
