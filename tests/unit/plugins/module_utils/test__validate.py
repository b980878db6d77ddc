from __future__ import annotations

import copy
from collections.abc import Mapping

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    address_errors,
    duration_seconds,
    env_errors,
    health_path_errors,
    host_path_errors,
    hostname_errors,
    network_errors,
    no_nul_errors,
    pg_name_errors,
    plain,
    plain_input,
    service_name_errors,
    shown,
    socket_dir_errors,
    text_errors,
    tmpfs_mount_errors,
    tmpfs_mount_options,
    tmpfs_size_bytes,
    tmpfs_volume_errors,
    without_secrets,
)
from ansible_collections.rotor.vps.plugins.module_utils._validate_container import (
    capability_errors,
    container_user_errors,
    docker_host_errors,
    image_errors,
    label_errors,
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
        "tmpfs[0].path: 'tmp' must be an absolute path other than / of letters, digits, '.', '_' and '-' "
        "(no '.' or '..' components)",
        "tmpfs[1].path: '/a,b' must be an absolute path other than / of letters, digits, '.', '_' and '-' "
        "(no '.' or '..' components)",
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


# The rules of names, paths and free text that reach HAProxy, INI files, SQL, a shell or Docker:
# (check, valid values, refused values, words of the message for the first refused one).
TEXT_RULES = [
    (host_path_errors, ["/var/lib/rotor", "/etc/rotor/haproxy/", "/run/lock/rotor-1.x"],
     ["relative/path", "/var/lib/../etc", "/a/./b", "/a b", "/a;b", "/a:b", "/a,b", "/a\x00b", "/a\nb", "/\u0430",
      "/" + "a" * 5000, "", None], "must be an absolute path of letters, digits"),
    (socket_dir_errors, ["/var/run/postgresql"], ["/var/run/postgresql/", "/var/run/../pg"], "must be an absolute path"),
    (image_errors, ["haproxy:3.0", "rotor-lab/demo-web:1", "registry.example.com:5000/team/app:1.2",
                    "app@sha256:" + "a" * 64, "gcr.io/cadvisor/cadvisor:v0.38.7"],
     ["App:1", "app:1 --privileged", "app;id", "app\n", "/app", "app:" + "1" * 200, "\u0430pp"],
     "must be a Docker image reference"),
    (container_user_errors, ["1000", "1000:1000", "app:app", "www-data"],
     ["1000:1000:1", "root;id", "1000 ", "\uff11000", "a$(id)"], "must be a user name or uid"),
    (docker_host_errors, ["unix:///var/run/docker.sock", "tcp://127.0.0.1:2375", "ssh://root@vps.example.com",
                          "https://[::1]:2376"],
     ["unix://relative.sock", "unix:///var/../docker.sock", "unix:///" + "a" * 200, "tcp://host:2375/x;id",
      "/var/run/docker.sock", "tcp://h\u043est:1"], "must be unix:///<absolute path of the socket>"),
    (address_errors, ["127.0.0.1", "::1", "db.example.com", "rotor-postgres"],
     ["db.example.com;id", "DB", "db example", "\u0430.example"], "must be a lowercase host name"),
    (pg_name_errors, ["postgres", "pgbouncer_admin", "Admin"],
     ['a"b', "a'b", "a;b", "a--", "a$$", "9a", "a" * 64, "\u0430"], "must be a PostgreSQL name"),
    (health_path_errors, ["/healthz", "/api/v1/ready?full=1&x=(y)", "/a;b=c"],
     ["healthz", "/a b", "/a#b", "/$(id)", "/a'b", "/a`b`", "/a|b", "/\u0430", "/a\x00", "/" + "a" * 2000],
     "must start with /"),
    (text_errors, ["user root", "awx job 12", "José's deploy; ok=1"],
     ["a\nb", "a\rb", "a\x00", "a\tb", "a\x1b[2J", "a\u2028b", "a\x85", "a\u200bb", "\u202eab"],
     "must be one line of printable characters"),
]


@pytest.mark.parametrize("check,valid,refused,words", TEXT_RULES, ids=[rule[0].__name__ for rule in TEXT_RULES])
def test_text_rules(check, valid, refused, words):
    for value in valid:
        assert check(value, "opt") == [], value
    for value in refused:
        errors = check(value, "opt")
        assert len(errors) == 1 and errors[0].startswith("opt"), (value, errors)
        assert value is None or len(str(value)) < 100 or len(errors[0]) < 300, "a long value is cut: %s" % errors
    first = check(refused[0], "opt")[0]
    assert words in first or "is longer than" in first, first


def test_capabilities_labels_env_and_secrets():
    assert capability_errors(["ALL", "NET_BIND_SERVICE", "cap_chown"], "cap_add") == []
    assert capability_errors(["ALL", "NET_ADMIN;id", "SYS ADMIN"], "cap_add") == [
        "cap_add[1]: 'NET_ADMIN;id' must be a capability name such as NET_BIND_SERVICE, or ALL",
        "cap_add[2]: 'SYS ADMIN' must be a capability name such as NET_BIND_SERVICE, or ALL"]
    assert label_errors({"org.example.team": "web ops"}, "labels") == []
    assert label_errors({"a b": "x"}, "labels")[0].startswith("labels: label name 'a b' must start with")
    assert label_errors({"org.example/../x": "x"}, "labels")[0].startswith("labels: label name")
    assert label_errors({"team": "a\nb"}, "labels") == [
        "labels.team: must be one line of printable characters (no line breaks, tabs, NUL, other control characters "
        "or invisible format characters)"]
    assert env_errors({"TOKEN": "s3cret\x00x"}, "env") == [
        "env.TOKEN: must not contain a NUL character (the value is not shown)"]
    assert env_errors({"PEM": "line 1\nline 2"}, "env") == []
    assert no_nul_errors("any 'thing' \n at all", "password") == []
    assert "s3cret" not in no_nul_errors("s3cret\x00", "password")[0]
    assert text_errors("a" * 300, "actor", max_length=200) == [
        "actor: %s is longer than 200 characters" % shown("a" * 300)]
    assert "s3cret" not in text_errors("s3cret" * 50, "token", max_length=10, secret=True)[0]


@pytest.mark.parametrize("items, keys, expected", [
    ([{"name": "a", "jwt_secret": "s", "authenticator_password": "p"}], ["jwt_secret", "authenticator_password"],
     [{"name": "a"}]),
    ([{"name": "a", "service": {"env": {"K": "v"}, "image": "i"}}], ["service.env"], [{"name": "a", "service": {"image": "i"}}]),
    # Missing keys and a non-dict parent are left as they are.
    ([{"name": "a"}, {"name": "b", "service": None}], ["jwt_secret", "service.env"], [{"name": "a"}, {"name": "b", "service": None}]),
    ([], ["x"], []),
])
def test_without_secrets(items, keys, expected):
    original = repr(items)
    assert without_secrets(items, keys) == expected
    assert repr(items) == original, "the items themselves are not changed"
