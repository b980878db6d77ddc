# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every container the collection runs must be, checked on ``docker inspect``, and the exceptions.

Every container: no capability but those it needs added back, no-new-privileges, a read-only root
(tmpfs for its writable paths), memory, CPU and pids limits, a non-root user, a health check, log
rotation, never privileged. The Docker daemon: live-restore and no-new-privileges by default.

The exceptions are data (EXEMPTIONS), each with its reason; the README lists the same ones (a unit
test keeps the two in step). The lab's tests check every running container against these rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RULES = ("capabilities", "no_new_privileges", "read_only", "memory", "cpus", "pids", "user", "healthcheck",
         "log_rotation", "unprivileged")
# The label every container of the collection carries, naming the role or module that runs it.
MANAGED_BY = "org.rotor.vps.managed-by"
ROOT_USERS = ("", "0", "root")  # the user part of Config.User ("" is the image's default: root unless it says)


@dataclass(frozen=True)
class Exemption:
    """A rule a container may break: ``name`` (a regular expression over the container's name) or
    ``managed_by`` (its MANAGED_BY label) picks the containers."""

    rule: str
    reason: str
    name: str = ""
    managed_by: str = ""

    def covers(self, name: str, labels: dict) -> bool:
        if self.name and not re.fullmatch(self.name, name):
            return False
        return not self.managed_by or labels.get(MANAGED_BY) == self.managed_by


EXEMPTIONS = (
    Exemption("user", "it reads every container's cgroups and Docker's files, which only root may; it runs with no "
                      "capability, no-new-privileges and a read-only root", name="rotor-cadvisor"),
    Exemption("user", "it ships the audit log, which only root may read (container logs come through the Docker API "
                      "broker); it runs with no capability, no-new-privileges and a read-only root", name="rotor-alloy"),
    Exemption("healthcheck", "its image has no shell or HTTP client to run one; Prometheus scrapes it and TargetDown "
                             "fires when it stops answering", name="rotor-alloy"),
    Exemption("healthcheck", "its image has no HTTP client to run one; Grafana's data source checks and TargetDown "
                             "watch it", name="rotor-loki"),
    Exemption("healthcheck", "HAProxy checks every replica (check_interval) and haproxy_rotate checks a new one before "
                             "it serves; a Docker health check would need an HTTP client in the application's image",
              managed_by="rotor.vps.haproxy_rotate"),
    Exemption("healthcheck", "PostgREST's image is a single static binary with no HTTP client; HAProxy checks each "
                             "one's /ready, and postgrest_spawn before it serves", managed_by="rotor.vps.postgrest_spawn"),
)


def _user(config: dict) -> str:
    return str(config.get("User") or "")


def _log_rotated(log_config: dict) -> bool:
    kind, options = log_config.get("Type", ""), log_config.get("Config") or {}
    if kind == "json-file":
        return bool(options.get("max-size"))
    # "local" rotates by default (20m x 5); the journal and syslog are rotated by the host.
    return kind in ("local", "journald", "syslog", "none")


def broken_rules(inspect: dict) -> dict:
    """The rules one container (its ``docker inspect`` object) breaks: rule -> what was found."""
    host, config = inspect.get("HostConfig") or {}, inspect.get("Config") or {}
    found = {}
    dropped = [c.upper() for c in host.get("CapDrop") or []]
    added = sorted(c.upper() for c in host.get("CapAdd") or [])
    if "ALL" not in dropped and "CAP_ALL" not in dropped:
        found["capabilities"] = "not every capability is dropped (CapDrop %s)" % (host.get("CapDrop"),)
    elif added:
        found["capabilities"] = "capabilities added back: %s" % ", ".join(added)
    if not {"no-new-privileges", "no-new-privileges:true"} & set(host.get("SecurityOpt") or []):
        found["no_new_privileges"] = "no no-new-privileges security option"
    if not host.get("ReadonlyRootfs"):
        found["read_only"] = "the root file system is writable"
    if not host.get("Memory"):
        found["memory"] = "no memory limit"
    if not (host.get("NanoCpus") or host.get("CpuQuota")):
        found["cpus"] = "no CPU limit"
    if not host.get("PidsLimit") or host.get("PidsLimit") < 0:
        found["pids"] = "no pids limit"
    if _user(config).split(":", maxsplit=1)[0] in ROOT_USERS:
        found["user"] = "runs as root (User %r)" % _user(config)
    health = (config.get("Healthcheck") or {}).get("Test") or []
    if not health or health[0] == "NONE":
        found["healthcheck"] = "no health check"
    if not _log_rotated(host.get("LogConfig") or {}):
        found["log_rotation"] = "logs are not rotated (%s)" % (host.get("LogConfig"),)
    if host.get("Privileged"):
        found["unprivileged"] = "privileged"
    return found


def container_errors(inspect: dict, exemptions: tuple = EXEMPTIONS) -> list[str]:
    """What is wrong with one container, one message per rule it breaks without an exemption."""
    name = str(inspect.get("Name", "")).lstrip("/")
    labels = (inspect.get("Config") or {}).get("Labels") or {}
    return ["%s: %s" % (name, what) for rule, what in broken_rules(inspect).items()
            if not any(e.rule == rule and e.covers(name, labels) for e in exemptions)]


def daemon_errors(daemon_json: dict) -> list[str]:
    """The Docker daemon's own defaults (its daemon.json): live-restore and no-new-privileges."""
    errors = []
    if daemon_json.get("live-restore") is not True:
        errors.append("daemon.json: live-restore is not true (containers would stop with the daemon)")
    if daemon_json.get("no-new-privileges") is not True:
        errors.append("daemon.json: no-new-privileges is not true (a container started by hand could gain privileges)")
    return errors
