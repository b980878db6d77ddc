# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input rules shared by roles (through the filter plugin) and modules.

Every check returns a list of messages; an empty list means the input is valid. Each message
names the input (``networks_list[2].name``) and the rule it broke, so a failed run tells the
user exactly what to fix before anything on the host is touched.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from typing import Optional

# Docker's own rule for network and volume names.
DOCKER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
DOCKER_NAME_MAX = 64
# tmpfs(5) size: a positive number of bytes with an optional k, m or g suffix.
TMPFS_SIZE_RE = re.compile(r"^([1-9][0-9]*)([kmg]?)$", re.IGNORECASE)
TMPFS_MODE_RE = re.compile(r"^[0-7]{3,4}$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# How much of a value that is too long a message shows.
SHOWN_MAX = 60


def shown(value: object) -> str:
    """``value`` as a message shows it: its repr, cut after SHOWN_MAX characters when longer."""
    if isinstance(value, str) and len(value) > SHOWN_MAX:
        return "%r... (%d characters)" % (value[:SHOWN_MAX], len(value))
    return repr(value)


def plain(value: object) -> object:
    """``value`` with every mapping a dict and every list a list, recursively.

    Filters get Ansible's lazy containers, which carry the whole variable context and copy it on
    every ``deepcopy`` (an ArgumentSpecValidator makes one per call): 100 tenants checked one by one
    took 10 s that way, a few milliseconds once the input is plain.
    """
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def without_secrets(items: list, keys: list) -> list:
    """``items`` (dicts) without the keys that hold secrets, each a key or ``<key>.<key>`` one level
    down (``service.env``): what a loop iterates when its tasks need none of them, since a task's
    results show its loop item at any verbosity above the default."""
    paths = [key.split(".", 1) for key in keys]
    out = []
    for item in items:
        item = dict(item)
        for path in paths:
            if len(path) == 1:
                item.pop(path[0], None)
            elif isinstance(item.get(path[0]), dict):
                item[path[0]] = {k: v for k, v in item[path[0]].items() if k != path[1]}
        out.append(item)
    return out


def plain_input(function):
    """``function`` called with every argument made plain (see ``plain``): for filter plugins."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return function(*(plain(arg) for arg in args), **{key: plain(arg) for key, arg in kwargs.items()})

    return wrapper


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


def _named_items_errors(items: list[dict], where: str, item_errors) -> list[str]:
    """Docker objects by name: each name valid and unique, each item's own rules (``item_errors(item, at)``)."""
    errors = []
    for index, item in enumerate(items):
        at = "%s[%d]" % (where, index)
        errors += docker_name_errors(item.get("name"), at + ".name") + item_errors(item, at)
    return errors + duplicate_errors(items, "name", where)


def network_errors(networks: list[dict], where: str = "networks_list") -> list[str]:
    """Check a list of Docker network definitions (names, subnets, duplicates, overlaps)."""
    errors = _named_items_errors(networks, where, _subnet_errors)
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
    return _named_items_errors(volumes, where, _tmpfs_option_errors)


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
# A service found by container name through Docker's DNS: "<name>:<port>".
SERVICE_ADDRESS_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*:([0-9]{1,5})$")
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


def listed_name_errors(name: object, at: str, seen: set, pattern: re.Pattern, rule: str) -> list[str]:
    """The name of the list item ``at``: it matches ``pattern`` (``rule`` says how) and no earlier item of
    the list (``seen``, which it joins) has it."""
    if not isinstance(name, str) or not pattern.fullmatch(name):
        return ["%s.name: %r must be %s" % (at, name, rule)]
    if name in seen:
        return ["%s.name: %r is listed twice" % (at, name)]
    seen.add(name)
    return []


def tmpfs_mount_errors(mounts: list[dict], where: str = "tmpfs") -> list[str]:
    """Check per-container tmpfs mounts: a plain absolute path, a valid size and mode, unique paths."""
    errors = []
    for index, mount in enumerate(mounts):
        item = "%s[%d]" % (where, index)
        path = mount.get("path")
        if path == "/" or host_path_errors(path, item + ".path"):
            errors.append("%s.path: %s must be an absolute path other than / of letters, digits, '.', '_' and '-' "
                          "(no '.' or '..' components)" % (item, shown(path)))
        errors += _tmpfs_option_errors(mount, item)
        for key in ("uid", "gid"):
            if mount.get(key) is not None:
                errors += whole_number_errors(mount[key], "%s.%s" % (item, key), 0)
    return errors + duplicate_errors(mounts, "path", where)


def is_int(value: object) -> bool:
    """A whole number that is not a boolean (YAML's ``yes`` must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def whole_number_errors(value: object, where: str, minimum: int = 0, maximum: Optional[int] = None,
                        hint: str = "") -> list[str]:
    """Check a whole number from ``minimum`` (to ``maximum``); ``hint`` says what a special value means."""
    if is_int(value) and value >= minimum and (maximum is None or value <= maximum):
        return []
    if maximum is None:
        return ["%s: %r must be a whole number of at least %d%s" % (where, value, minimum, hint)]
    return ["%s: %r must be a whole number from %d to %d%s" % (where, value, minimum, maximum, hint)]


def port_errors(value: object, where: str, *, minimum: int = 1, allow_zero: bool = False) -> list[str]:
    """Check a TCP port (``minimum`` to 65535; 0 too when ``allow_zero``, which turns it off)."""
    if allow_zero and value == 0 and is_int(value):
        return []
    return whole_number_errors(value, where, minimum, 65535, " (0 turns it off)" if allow_zero else "")


# HAProxy's time format: a whole number with an optional unit (milliseconds without one), above 0.
HAPROXY_TIME_RE = re.compile(r"^([0-9]+)(us|ms|s|m|h|d)?$")


def haproxy_time_errors(value: object, where: str) -> list[str]:
    """Check an HAProxy time such as ``5s`` or ``1500ms``; zero is refused (HAProxy reads it as "never")."""
    text = str(value) if is_int(value) else value
    match = HAPROXY_TIME_RE.fullmatch(text) if isinstance(text, str) else None
    if not match:
        return ["%s: %r must be an HAProxy time: a whole number with an optional unit us, ms, s, m, h or d (e.g. 5s)"
                % (where, value)]
    if int(match.group(1)) == 0:
        return ["%s: %r must be longer than zero" % (where, value)]
    return []


# Backend names become HAProxy section names and file names (conf.d/<name>.cfg): keep them plain.
BACKEND_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
BACKEND_NAME_MAX = 64


def backend_name_errors(name: object, where: str) -> list[str]:
    """Check an HAProxy backend name (letters, digits, '_', '.', '-'; no ':'; at most 64 characters)."""
    if not isinstance(name, str) or not name:
        return ["%s: a name is required" % where]
    if len(name) > BACKEND_NAME_MAX or not BACKEND_NAME_RE.fullmatch(name):
        return ["%s: %r must start with a letter or digit, contain only letters, digits, '_', '.' and '-', "
                "and be at most %d characters" % (where, name, BACKEND_NAME_MAX)]
    return []


# A health check path: it goes into HAProxy's configuration and into HTTP requests as it is, so only
# the characters of a URL's path and query (RFC 3986), without '$' (HAProxy expands variables) or quotes.
HEALTH_PATH_RE = re.compile(r"^/[A-Za-z0-9._~%!&()*+,;=:@/?-]*$")
# HAProxy reads configuration lines of at most 2048 characters.
HEALTH_PATH_MAX = 1024


def health_path_errors(path: object, where: str) -> list[str]:
    """Check a health check path (starts with '/'; the characters of a URL's path and query, no '$' or quotes)."""
    if isinstance(path, str) and len(path) > HEALTH_PATH_MAX:
        return ["%s: %s is longer than %d characters" % (where, shown(path), HEALTH_PATH_MAX)]
    if not isinstance(path, str) or not HEALTH_PATH_RE.fullmatch(path):
        return ["%s: %r must start with / and contain no spaces, quotes, backslashes, '$' or '#' (only letters, "
                "digits and -._~%%!&()*+,;=:@/?)" % (where, path)]
    return []


# Docker's memory limit: bytes with an optional b, k, m or g suffix, at least Docker's minimum of 6 MiB.
MEMORY_RE = re.compile(r"^([1-9][0-9]*)([bkmg]?)$", re.IGNORECASE)
MEMORY_MIN = 6 * 1024**2
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def memory_bytes(value: object) -> Optional[int]:
    """A container memory limit such as ``128m`` in bytes; None when it is not one."""
    match = MEMORY_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()] if match else None


def memory_errors(value: object, where: str) -> list[str]:
    """Check a container memory limit such as ``128m`` (Docker refuses less than 6m)."""
    size = memory_bytes(value)
    if size is None:
        return ["%s: %r must be a positive whole number with an optional b, k, m or g suffix (e.g. 128m)"
                % (where, value)]
    if size < MEMORY_MIN:
        return ["%s: %r is below Docker's minimum memory limit of 6m" % (where, value)]
    return []


# A PostgreSQL memory setting: a whole number with kB, MB, GB or TB (case as PostgreSQL writes
# them), or a bare number of 8 kB pages (shared_buffers' own unit).
PG_MEMORY_RE = re.compile(r"^([1-9][0-9]*)(kB|MB|GB|TB)?$")
_PG_MEMORY_UNITS = {None: 8192, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def pg_memory_bytes(value: object) -> Optional[int]:
    """A PostgreSQL memory setting such as ``256MB`` in bytes; None when it is not one."""
    match = PG_MEMORY_RE.fullmatch(str(value).strip()) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    return int(match.group(1)) * _PG_MEMORY_UNITS[match.group(2)] if match else None


def positive_number_errors(value: object, where: str, example: str = "0.5") -> list[str]:
    """Check a number greater than 0, such as a CPU limit."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return ["%s: %r must be a number greater than 0 (e.g. %s)" % (where, value, example)]
    return []


ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def env_errors(env: object, where: str) -> list[str]:
    """Check the names of environment variables, and that no value holds a NUL (values are secrets, never echoed)."""
    if not isinstance(env, dict):
        return ["%s: must be a mapping of variable names to values" % where]
    errors = ["%s: %r is not a valid environment variable name (letters, digits, '_'; not starting with a digit)"
              % (where, key) for key in env if not isinstance(key, str) or not ENV_NAME_RE.fullmatch(key)]
    return errors + [error for key, value in env.items() if isinstance(key, str) and ENV_NAME_RE.fullmatch(key)
                     for error in no_nul_errors(value, "%s.%s" % (where, key))]


def duration_errors(value: object, where: str, *, allow_zero: bool = False) -> list[str]:
    """Check a duration such as ``30m`` (``0`` too when ``allow_zero``)."""
    if allow_zero and str(value).strip() == "0":
        return []
    try:
        duration_seconds(value)
    except ValueError as exc:
        return ["%s: %s" % (where, exc)]
    return []


# What an OnCalendar expression is made of; systemd-analyze calendar has the final word on the host.
CALENDAR_RE = re.compile(r"^[A-Za-z0-9*:/,.~+ -]+$")


def calendar_errors(value: object, where: str) -> list[str]:
    """Check a systemd OnCalendar expression (its characters; the host's systemd checks the rest)."""
    if not isinstance(value, str) or not CALENDAR_RE.fullmatch(value.strip()):
        return ["%s: %r must be a systemd OnCalendar expression such as 'hourly', '*-*-* 00/6:00:00' or '*:0/15'"
                % (where, value)]
    return []


# A path on the host that a module writes, mounts into a container (Docker's bind syntax splits at
# ':' and ','), hands to HAProxy (its commands split at spaces) or to a shell (certbot's hooks):
# absolute, plain path components only, no '.' or '..' (a trailing '/' is fine).
HOST_PATH_RE = re.compile(r"^(/[A-Za-z0-9_.-]+)+/?$")
PATH_MAX = 4096
# A unix socket's path must fit sockaddr_un's 108 bytes, the final NUL included.
SOCKET_PATH_MAX = 107


def host_path_errors(path: object, where: str, *, max_length: int = PATH_MAX, trailing_slash: bool = True) -> list[str]:
    """Check an absolute path on the host: plain components (letters, digits, '.', '_', '-'), no '.' or '..'."""
    if isinstance(path, str) and len(path) > max_length:
        return ["%s: %s is longer than %d characters" % (where, shown(path), max_length)]
    if (not isinstance(path, str) or not HOST_PATH_RE.fullmatch(path)
            or (path.endswith("/") and not trailing_slash)
            or any(part in (".", "..") for part in path.split("/"))):
        return ["%s: %r must be an absolute path of letters, digits, '.', '_' and '-' (no '.' or '..' components)"
                % (where, path)]
    return []


def socket_dir_errors(path: object, where: str) -> list[str]:
    """Check the absolute path of a unix socket directory (no '.' or '..' components)."""
    return host_path_errors(path, where, trailing_slash=False)


# A setting name of an INI-style configuration (pgbouncer.ini, a connection string).
SETTING_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def setting_name_errors(name: object, where: str) -> list[str]:
    """Check a setting name: a lowercase letter, then lowercase letters, digits and '_'."""
    if not isinstance(name, str) or not SETTING_NAME_RE.fullmatch(name):
        return ["%s: setting name %r must be a lowercase letter, then lowercase letters, digits and '_'"
                % (where, name)]
    return []


def one_line_errors(value: object, where: str) -> list[str]:
    """Check a value written into a configuration file: one line, no NUL."""
    if any(char in str(value) for char in "\n\r\x00"):
        return ["%s: must be one line (no line breaks or NUL characters)" % where]
    return []


def text_errors(value: object, where: str, *, max_length: Optional[int] = None, secret: bool = False) -> list[str]:
    """Check free text (an audit actor, a label, a setting's value): one line of printable characters.

    Line breaks, tabs, NUL, other control characters, Unicode line separators and invisible format
    characters (zero-width spaces, bidirectional overrides) are refused. A ``secret`` is never shown.
    """
    text = str(value)
    if not text.isprintable():
        return ["%s: must be one line of printable characters (no line breaks, tabs, NUL, other control characters "
                "or invisible format characters)" % where]
    if max_length is not None and len(text) > max_length:
        return ["%s: %s is longer than %d characters" % (where, "(not shown)" if secret else shown(text), max_length)]
    return []


def no_nul_errors(value: object, where: str) -> list[str]:
    """Check a secret that may hold any character but NUL (C strings end at it); the value is never shown."""
    if isinstance(value, str) and "\x00" in value:
        return ["%s: must not contain a NUL character (the value is not shown)" % where]
    return []


def address_errors(value: object, where: str) -> list[str]:
    """Check a host name (lowercase RFC 1123) or an IP address."""
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
            return []
        except ValueError:
            pass
    if not isinstance(value, str) or not HOSTNAME_RE.fullmatch(value):
        return ["%s: %s must be a lowercase host name such as db.example.com or an IP address" % (where, shown(value))]
    return []


# A PostgreSQL role or database name a connection uses: no quoting needed anywhere it goes.
PG_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def pg_name_errors(name: object, where: str) -> list[str]:
    """Check a PostgreSQL role or database name to connect as or to (letters, digits, '_'; at most 63)."""
    if not isinstance(name, str) or not PG_NAME_RE.fullmatch(name):
        return ["%s: %s must be a PostgreSQL name of letters, digits and '_', not starting with a digit "
                "(at most 63 characters)" % (where, shown(name))]
    return []


def claim_errors(items: list, key, what: str, where: str, owner: str = "item") -> list[str]:
    """Values (names, backends, host names) that more than one of ``items`` claims; ``key(item)`` lists an
    item's values. Each message names the later item, the value and the item that has it."""
    seen: dict = {}
    errors = []
    for index, item in enumerate(items):
        for value in key(item):
            if not isinstance(value, str):
                continue
            if value in seen and seen[value] != index:
                errors.append("%s[%d]: %s %r is already used by %s[%d]; each %s belongs to one %s"
                              % (where, index, what, value, where, seen[value], what, owner))
            else:
                seen.setdefault(value, index)
    return errors
