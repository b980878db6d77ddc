from __future__ import annotations

import copy
from collections.abc import Mapping

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    duration_seconds,
    hostname_errors,
    network_errors,
    plain,
    plain_input,
    service_name_errors,
    tmpfs_mount_errors,
    tmpfs_mount_options,
    tmpfs_size_bytes,
    tmpfs_volume_errors,
)


@pytest.mark.parametrize(
    "size,expected",
    [("1", 1), ("64m", 64 * 1024**2), ("64M", 64 * 1024**2), ("512k", 512 * 1024), ("2g", 2 * 1024**3), (" 8m ", 8 * 1024**2)],
)
def test_tmpfs_size_bytes(size, expected):
    assert tmpfs_size_bytes(size) == expected


@pytest.mark.parametrize("size", ["10X", "0", "0m", "-1m", "m", "", "1.5m", "64mb", "64 m", None, "1e3"])
def test_tmpfs_size_bytes_rejects(size):
    with pytest.raises(ValueError, match="positive whole number with an optional k, m or g suffix"):
        tmpfs_size_bytes(size)


@pytest.mark.parametrize(
    "networks,expected",
    [
        ([{"name": "edge"}, {"name": "data", "internal": True}], []),
        ([{"name": "a.b_c-1", "subnet": "10.1.0.0/24", "gateway": "10.1.0.1", "ip_range": "10.1.0.128/25"}], []),
        ([{"name": "v6", "subnet": "fd00:1::/64"}, {"name": "v4", "subnet": "fd00:2::/64"}], []),
        ([{"name": ""}], ["networks_list[0].name: a name is required"]),
        ([{}], ["networks_list[0].name: a name is required"]),
        ([{"name": "-edge"}], ["networks_list[0].name: '-edge' must start with a letter or digit"]),
        ([{"name": "edge net"}], ["networks_list[0].name: 'edge net' must start with a letter or digit"]),
        ([{"name": "x" * 65}], ["networks_list[0].name: '%s' is longer than 64 characters" % ("x" * 65)]),
        (
            [{"name": "edge"}, {"name": "edge"}],
            ["networks_list[1].name: 'edge' is already used by networks_list[0]; names must be unique"],
        ),
        ([{"name": "a", "subnet": "10.1.0.1/24"}], ["networks_list[0].subnet: '10.1.0.1/24' is not a network in CIDR notation"]),
        ([{"name": "a", "subnet": "bogus"}], ["networks_list[0].subnet: 'bogus' is not a network in CIDR notation"]),
        ([{"name": "a", "gateway": "10.0.0.1"}], ["networks_list[0].gateway: needs a subnet"]),
        ([{"name": "a", "subnet": "10.1.0.0/24", "gateway": "10.2.0.1"}], ["networks_list[0].gateway: 10.2.0.1 is outside the subnet 10.1.0.0/24"]),
        ([{"name": "a", "subnet": "10.1.0.0/24", "gateway": "x"}], ["networks_list[0].gateway: 'x' is not an IP address"]),
        ([{"name": "a", "subnet": "10.1.0.0/24", "ip_range": "10.2.0.0/25"}], ["networks_list[0].ip_range: 10.2.0.0/25 is not inside the subnet 10.1.0.0/24"]),
        (
            [{"name": "a", "subnet": "10.1.0.0/16"}, {"name": "b", "subnet": "10.1.2.0/24"}],
            ["networks_list[1].subnet: 10.1.2.0/24 overlaps networks_list[0].subnet 10.1.0.0/16; subnets must not overlap"],
        ),
    ],
)
def test_network_errors(networks, expected):
    errors = network_errors(networks)
    assert len(errors) == len(expected), errors
    for error, prefix in zip(errors, expected):
        assert error.startswith(prefix), (error, prefix)


def test_network_errors_names_the_input_it_was_given():
    assert network_errors([{"name": "bad name"}], where="lab_networks")[0].startswith("lab_networks[0].name:")


@pytest.mark.parametrize(
    "volumes,expected",
    [
        ([{"name": "tmp", "size": "64m"}, {"name": "cache", "size": "1g", "mode": "0750"}], []),
        ([{"name": "tmp", "size": "10X"}], ["networks_tmpfs_volumes[0].size: must be a positive whole number"]),
        ([{"name": "tmp"}], ["networks_tmpfs_volumes[0].size: must be a positive whole number"]),
        ([{"name": "tmp", "size": "8m", "mode": "rwx"}], ["networks_tmpfs_volumes[0].mode: 'rwx' must be an octal mode string"]),
        ([{"name": "tmp", "size": "8m", "mode": "0800"}], ["networks_tmpfs_volumes[0].mode: '0800' must be an octal mode string"]),
        (
            [{"name": "tmp", "size": "8m"}, {"name": "tmp", "size": "16m"}],
            ["networks_tmpfs_volumes[1].name: 'tmp' is already used by networks_tmpfs_volumes[0]"],
        ),
        ([{"name": "a/b", "size": "8m"}], ["networks_tmpfs_volumes[0].name: 'a/b' must start with a letter or digit"]),
    ],
)
def test_tmpfs_volume_errors(volumes, expected):
    errors = tmpfs_volume_errors(volumes)
    assert len(errors) == len(expected), errors
    for error, prefix in zip(errors, expected):
        assert error.startswith(prefix), (error, prefix)


@pytest.mark.parametrize(
    "volume,expected",
    [
        ({"size": "64M"}, "size=64m,noexec,nosuid,nodev"),
        ({"size": "8m", "mode": "1777"}, "size=8m,mode=1777,noexec,nosuid,nodev"),
        ({"size": "8m", "uid": 1000, "gid": "1000"}, "size=8m,uid=1000,gid=1000,noexec,nosuid,nodev"),
        ({"size": "8m", "noexec": False}, "size=8m,nosuid,nodev"),
        ({"size": "8m", "noexec": False, "nosuid": False, "nodev": False}, "size=8m"),
    ],
)
def test_tmpfs_mount_options(volume, expected):
    assert tmpfs_mount_options(volume) == expected


@pytest.mark.parametrize("value, seconds", [("90s", 90), ("30m", 1800), ("6h", 21600), ("1d", 86400), (45, 45), ("7", 7)])
def test_duration_seconds(value, seconds):
    assert duration_seconds(value) == seconds


@pytest.mark.parametrize("value", ["0", "0s", "-5m", "1.5h", "soon", "", None, True, "5 weeks", "1w"])
def test_duration_seconds_rejects(value):
    with pytest.raises(ValueError, match="optional s, m, h or d suffix"):
        duration_seconds(value)


@pytest.mark.parametrize("name, ok", [
    ("web", True), ("web-2", True), ("a" * 31, True), ("a" * 32, False), ("Web", False), ("2web", False),
    ("web_2", False), ("web.x", False), ("", False), (None, False), ("we b", False), ("web\n", False),
])
def test_service_name_errors(name, ok):
    assert (service_name_errors(name, "service") == []) is ok


@pytest.mark.parametrize("name, ok", [
    ("web.example.com", True), ("localhost", True), ("a-b.c", True), ("Web.example.com", False),
    ("web.example.com:80", False), ("http://web", False), ("-a.b", False), ("a..b", False), ("", False),
    ("a" * 64 + ".com", False), ("web.example.com\n", False),
])
def test_hostname_errors(name, ok):
    assert (hostname_errors(name, "routes[0]") == []) is ok


def test_tmpfs_mount_errors():
    assert tmpfs_mount_errors([{"path": "/tmp", "size": "16m", "mode": "1777"}]) == []
    errors = tmpfs_mount_errors([
        {"path": "tmp", "size": "16m"}, {"path": "/a,b", "size": "0"}, {"path": "/x", "size": "1m", "mode": "9"},
        {"path": "/x", "size": "1m"},
    ])
    assert errors == [
        "tmpfs[0].path: 'tmp' must be an absolute path other than / without ',', ':' or spaces",
        "tmpfs[1].path: '/a,b' must be an absolute path other than / without ',', ':' or spaces",
        "tmpfs[1].size: must be a positive whole number with an optional k, m or g suffix (e.g. 64m), got '0'",
        "tmpfs[2].mode: '9' must be an octal mode string such as '1777' or '0750'",
        "tmpfs[3].path: '/x' is already used by tmpfs[2]; names must be unique",
    ]


class Lazy(Mapping):
    """A mapping like Ansible's lazy containers: copying it is what must not happen."""

    def __init__(self, data):
        self.data = data

    def __getitem__(self, key):
        return self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)

    def __deepcopy__(self, memo):
        raise AssertionError("a lazy container was deep-copied")


def test_plain_makes_nested_mappings_and_lists_plain():
    value = plain(Lazy({"tenants": (Lazy({"name": "acme", "hosts": ["a.example"]}),), "n": 1}))
    assert value == {"tenants": [{"name": "acme", "hosts": ["a.example"]}], "n": 1}
    assert isinstance(value, dict) and isinstance(value["tenants"], list) and isinstance(value["tenants"][0], dict)
    copy.deepcopy(value)


def test_plain_input_hands_plain_arguments_to_the_filter():
    seen = []
    wrapped = plain_input(lambda settings, role, **options: seen.append((settings, role, options)) or [])
    assert wrapped(Lazy({"x": Lazy({"y": [1]})}), "tenants", hosts=Lazy({"h": 1})) == []
    settings, role, options = seen[0]
    assert isinstance(settings["x"], dict) and role == "tenants" and isinstance(options["hosts"], dict)
    copy.deepcopy(seen)
