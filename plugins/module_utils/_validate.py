# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input rules shared by roles (through the filter plugin) and modules.

Every check returns a list of messages; an empty list means the input is valid. Each message
names the input (``networks_list[2].name``) and the rule it broke, so a failed run tells the
user exactly what to fix before anything on the host is touched.
"""

from __future__ import annotations

import ipaddress
import re

# Docker's own rule for network and volume names.
DOCKER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
DOCKER_NAME_MAX = 64
# tmpfs(5) size: a positive number of bytes with an optional k, m or g suffix.
TMPFS_SIZE_RE = re.compile(r"^([1-9][0-9]*)([kmg]?)$", re.IGNORECASE)
TMPFS_MODE_RE = re.compile(r"^[0-7]{3,4}$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def tmpfs_size_bytes(size: str) -> int:
    """Return the size in bytes of a tmpfs size string such as ``64m``.

    Raises ValueError with the rule when the string is not a valid size.
    """
    match = TMPFS_SIZE_RE.match(str(size).strip())
    if not match:
        raise ValueError(
            "must be a positive whole number with an optional k, m or g suffix (e.g. 64m), got %r" % (size,)
        )
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def docker_name_errors(name: object, where: str) -> list[str]:
    """Check a Docker network or volume name."""
    if not isinstance(name, str) or not name:
        return ["%s: a name is required" % where]
    if len(name) > DOCKER_NAME_MAX:
        return ["%s: %r is longer than %d characters" % (where, name, DOCKER_NAME_MAX)]
    if not DOCKER_NAME_RE.fullmatch(name):
        return [
            "%s: %r must start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
            % (where, name)
        ]
    return []


def duplicate_errors(items: list[dict], key: str, where: str) -> list[str]:
    """Report every value of ``key`` used by more than one item."""
    seen: dict[str, int] = {}
    errors = []
    for index, item in enumerate(items):
        value = item.get(key)
        if value in seen:
            errors.append(
                "%s[%d].%s: %r is already used by %s[%d]; names must be unique"
                % (where, index, key, value, where, seen[value])
            )
        elif isinstance(value, str):
            seen[value] = index
    return errors


def _subnet_errors(net: dict, where: str) -> list[str]:
    errors = []
    subnet = net.get("subnet")
    network = None
    if subnet:
        try:
            network = ipaddress.ip_network(subnet, strict=True)
        except ValueError as exc:
            errors.append("%s.subnet: %r is not a network in CIDR notation (%s)" % (where, subnet, exc))
    for key in ("gateway",):
        value = net.get(key)
        if not value:
            continue
        if network is None:
            errors.append("%s.%s: needs a subnet" % (where, key))
            continue
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            errors.append("%s.%s: %r is not an IP address" % (where, key, value))
            continue
        if address not in network:
            errors.append("%s.%s: %s is outside the subnet %s" % (where, key, value, subnet))
    ip_range = net.get("ip_range")
    if ip_range:
        if network is None:
            errors.append("%s.ip_range: needs a subnet" % where)
        else:
            try:
                if not ipaddress.ip_network(ip_range, strict=True).subnet_of(network):
                    errors.append("%s.ip_range: %s is not inside the subnet %s" % (where, ip_range, subnet))
            except (ValueError, TypeError) as exc:
                errors.append("%s.ip_range: %r is not a network inside %s (%s)" % (where, ip_range, subnet, exc))
    return errors


def network_errors(networks: list[dict], where: str = "networks_list") -> list[str]:
    """Check a list of Docker network definitions (names, subnets, duplicates, overlaps)."""
    errors = []
    for index, net in enumerate(networks):
        item = "%s[%d]" % (where, index)
        errors += docker_name_errors(net.get("name"), item + ".name")
        errors += _subnet_errors(net, item)
    errors += duplicate_errors(networks, "name", where)
    subnets = []
    for index, net in enumerate(networks):
        try:
            subnets.append((index, ipaddress.ip_network(net.get("subnet") or "", strict=True)))
        except ValueError:
            continue
    for pos, (i, a) in enumerate(subnets):
        for j, b in subnets[pos + 1:]:
            if a.version == b.version and a.overlaps(b):
                errors.append(
                    "%s[%d].subnet: %s overlaps %s[%d].subnet %s; subnets must not overlap" % (where, j, b, where, i, a)
                )
    return errors


def tmpfs_volume_errors(volumes: list[dict], where: str = "networks_tmpfs_volumes") -> list[str]:
    """Check a list of tmpfs volume definitions (names, sizes, modes, duplicates)."""
    errors = []
    for index, vol in enumerate(volumes):
        item = "%s[%d]" % (where, index)
        errors += docker_name_errors(vol.get("name"), item + ".name")
        errors += _tmpfs_option_errors(vol, item)
    errors += duplicate_errors(volumes, "name", where)
    return errors


def _tmpfs_option_errors(tmpfs: dict, item: str) -> list[str]:
    """The size and mode rules shared by tmpfs volumes and per-container tmpfs mounts."""
    errors = []
    try:
        tmpfs_size_bytes(tmpfs.get("size", ""))
    except ValueError as exc:
        errors.append("%s.size: %s" % (item, exc))
    mode = tmpfs.get("mode")
    if mode is not None and not TMPFS_MODE_RE.fullmatch(str(mode)):
        errors.append("%s.mode: %r must be an octal mode string such as '1777' or '0750'" % (item, mode))
    return errors


def tmpfs_mount_options(volume: dict) -> str:
    """Render the mount options of a tmpfs volume, e.g. ``size=64m,mode=1777,noexec,nosuid,nodev``."""
    options = ["size=%s" % str(volume["size"]).lower()]
    if volume.get("mode") is not None:
        options.append("mode=%s" % volume["mode"])
    for key in ("uid", "gid"):
        if volume.get(key) is not None:
            options.append("%s=%d" % (key, int(volume[key])))
    for flag in ("noexec", "nosuid", "nodev"):
        if volume.get(flag, True):
            options.append(flag)
    return ",".join(options)


# Durations such as 90s, 30m, 6h, 1d (or a bare number of seconds).
DURATION_RE = re.compile(r"^([1-9][0-9]*)\s*(s|m|h|d)?$")
_DURATION_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# A service name becomes part of container, server, unit and file names: keep it plain.
SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# RFC 1123 host name (what a route matches in the Host header), lowercase.
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def duration_seconds(value: object) -> int:
    """Return the number of seconds in a duration such as ``90s``, ``30m``, ``6h`` or ``1d``.

    A bare positive integer is a number of seconds. Raises ValueError with the rule otherwise.
    """
    match = DURATION_RE.match(str(value).strip().lower()) if not isinstance(value, bool) else None
    if not match:
        raise ValueError("must be a positive whole number with an optional s, m, h or d suffix (e.g. 30m), got %r" % (value,))
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def service_name_errors(name: object, where: str) -> list[str]:
    """Check a service name (a lowercase letter, then lowercase letters, digits and '-'; at most 31)."""
    if not isinstance(name, str) or not SERVICE_NAME_RE.fullmatch(name):
        return [
            "%s: %r must start with a lowercase letter and contain only lowercase letters, digits and '-' "
            "(at most 31 characters)" % (where, name)
        ]
    return []


def hostname_errors(name: object, where: str) -> list[str]:
    """Check a host name used as a route (lowercase RFC 1123 name, no port)."""
    if not isinstance(name, str) or not HOSTNAME_RE.fullmatch(name):
        return ["%s: %r must be a lowercase host name such as app.example.com (no port, no scheme)" % (where, name)]
    return []


def tmpfs_mount_errors(mounts: list[dict], where: str = "tmpfs") -> list[str]:
    """Check per-container tmpfs mounts: an absolute path, a valid size and mode, unique paths."""
    errors = []
    for index, mount in enumerate(mounts):
        item = "%s[%d]" % (where, index)
        path = mount.get("path")
        if not isinstance(path, str) or not path.startswith("/") or path == "/" or any(c in path for c in ",: \n"):
            errors.append("%s.path: %r must be an absolute path other than / without ',', ':' or spaces" % (item, path))
        errors += _tmpfs_option_errors(mount, item)
    return errors + duplicate_errors(mounts, "path", where)
