"""One rule, two paths: haproxy_rotate's own check and site.yml's up-front check of rotation_services.

Every case goes through both: the module's argument spec and rules (what the module refuses before it
touches the host), and the rotation role's input rules on the same service written as the role takes
it (what the check play of site.yml refuses before any role runs). They must refuse exactly the same
inputs, with the same message.
"""

from __future__ import annotations

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.rotor.vps.plugins.module_utils._role_input import rotation_input_errors
from ansible_collections.rotor.vps.plugins.module_utils._web_service import ROLE_NAMES, service_errors
from ansible_collections.rotor.vps.plugins.modules.haproxy_rotate import ARGUMENT_SPEC

BASE = {"service": "web", "backend": "web", "image": "rotor-lab/demo-web:1", "routes": ["web.lab.test"]}
ROLE = {"rotation_interval": "*-*-* 00/6:00:00", "rotation_jitter": "10m", "rotation_run_timeout": 1800}

# (option, value, a words the message must contain; None: both paths accept the value)
CASES = [
    ("service", "Web", "must start with a lowercase letter"),
    ("service", "w" * 32, "at most 31 characters"),
    ("service", "web-2", None),
    ("backend", "web:1", "must start with a letter or digit, contain only letters, digits, '_', '.' and '-'"),
    ("backend", "x" * 65, "at most 64 characters"),
    ("backend", "web.v2_a-b", None),
    ("image", "", "required unless state is absent"),
    ("image", "  ", "required unless state is absent"),
    ("pull", "maybe", "is of type"),
    ("pull", False, None),
    ("replicas", 0, "must be a whole number of at least 1"),
    ("replicas", -2, "must be a whole number of at least 1"),
    ("replicas", "two", "is of type"),
    ("replicas", "3", None),
    ("replicas", 3, None),
    ("max_age", "soon", "positive whole number with an optional s, m, h or d suffix"),
    ("max_age", "0s", "positive whole number"),
    ("max_age", "6h", None),
    ("port", 0, "must be a whole number from 1 to 65535"),
    ("port", 70000, "must be a whole number from 1 to 65535"),
    ("port", 8081, None),
    ("health_path", "healthz", "must start with / and contain no spaces, quotes, backslashes"),
    ("health_path", "/a b", "must start with /"),
    ("health_path", '/a"b', "must start with /"),
    ("health_path", "/a\\b", "must start with /"),
    ("health_path", "/ready?full=1", None),
    ("health_path", "/a#b", "must start with /"),
    ("health_path", "/$(id)", "must start with /"),
    ("image", "rotor-lab/demo-web:1 --privileged", "must be a Docker image reference"),
    ("image", "Demo:1", "must be a Docker image reference"),
    ("image", "registry.example.com:5000/team/app:1.2", None),
    ("env", {"TOKEN": "a\x00b"}, "must not contain a NUL character (the value is not shown)"),
    ("cap_add", ["NET_ADMIN;id"], "must be a capability name"),
    ("cap_drop", ["ALL", "all capabilities"], "must be a capability name"),
    ("user", "root;id", "must be a user name or uid"),
    ("user", "app:app", None),
    ("labels", {"team name": "web"}, "label name 'team name' must start with a letter or digit"),
    ("labels", {"team": "web\nops"}, "must be one line of printable characters"),
    ("env", {"1BAD": "x"}, "is not a valid environment variable name"),
    ("env", {"LOG_LEVEL": "info"}, None),
    ("networks", [], "at least one network is required"),
    ("networks", ["app net"], "must start with a letter or digit"),
    ("networks", ["app", "data"], None),
    ("tmpfs", [{"path": "/tmp", "size": "10X"}], "must be a positive whole number with an optional k, m or g suffix"),
    ("tmpfs", [{"path": "tmp", "size": "8m"}], "must be an absolute path"),
    ("tmpfs", [{"path": "/t", "size": "8m", "mode": "rwx"}], "must be an octal mode"),
    ("tmpfs", [{"path": "/t", "size": "8m", "uid": -1}], "must be a whole number of at least 0"),
    ("tmpfs", [{"path": "/t", "size": "8m"}, {"path": "/t", "size": "8m"}], "names must be unique"),
    ("tmpfs", [{"path": "/t"}], "missing required arguments: size"),
    ("tmpfs", [{"path": "/t", "size": "8m", "uid": 1000, "mode": "0700"}], None),
    ("memory", "128b", "below Docker's minimum memory limit of 6m"),
    ("memory", "5m", "below Docker's minimum"),
    ("memory", "lots", "positive whole number with an optional b, k, m or g suffix"),
    ("memory", "128mb", "positive whole number"),
    ("memory", "6m", None),
    ("memory", "6291456b", None),
    ("memory", "1G", None),
    ("cpus", 0, "must be a number greater than 0"),
    ("cpus", -1, "must be a number greater than 0"),
    ("cpus", 0.5, None),
    ("pids_limit", 0, "must be a whole number of at least 1"),
    ("pids_limit", 64, None),
    ("read_only", "sometimes", "is of type"),
    ("cap_drop", ["ALL"], None),
    ("cap_add", ["NET_BIND_SERVICE"], None),
    ("user", "1000:1000", None),
    ("labels", {"team": "web"}, None),
    ("routes", ["Web.lab.test"], "must be a lowercase host name"),
    ("routes", ["web.lab.test:80"], "must be a lowercase host name"),
    ("routes", [], None),
    ("check_interval", "0", "must be longer than zero"),
    ("check_interval", "0ms", "must be longer than zero"),
    ("check_interval", "2 s", "must be an HAProxy time"),
    ("check_interval", "500ms", None),
    ("check_fast_interval", "0", "must be longer than zero"),
    ("check_fast_interval", "fast", "must be an HAProxy time"),
    ("check_fast_interval", "100ms", None),
    ("check_rise", 0, "must be a whole number of at least 1"),
    ("check_fall", 0, "must be a whole number of at least 1"),
    ("check_fall", 3, None),
    ("healthy_timeout", 0, "must be a whole number of at least 1"),
    ("up_timeout", 0, "must be a whole number of at least 1"),
    ("drain_timeout", -1, "must be a whole number of at least 0"),
    ("drain_timeout", 0, None),
    ("stop_timeout", 0, "must be a whole number of at least 1"),
    ("lock_timeout", 0, "must be a whole number of at least 1"),
]


def module_path(options: dict) -> list:
    """What haproxy_rotate refuses: AnsibleModule's argument spec, then the module's rules."""
    result = ArgumentSpecValidator(ARGUMENT_SPEC).validate(dict(options))
    if result.error_messages:
        return ["options: %s" % message for message in result.error_messages]
    return service_errors(result.validated_parameters)


def role_path(options: dict) -> list:
    """What site.yml's check play refuses: the same service in rotation_services."""
    service = {ROLE_NAMES.get(key, key): value for key, value in options.items()}
    errors = rotation_input_errors(dict(ROLE, rotation_services=[service]))
    renamed = {value: key for key, value in ROLE_NAMES.items()}
    messages = []
    for message in errors:
        message = message.replace("rotation_services[0].", "").replace("rotation_services[0]: ", "options: ")
        head, _colon, rest = message.partition(":")
        first = head.split("[")[0].split(".")[0]
        messages.append(head.replace(first, renamed.get(first, first), 1) + ":" + rest
                        if first in renamed else message)
        for role_name, module_name in renamed.items():
            messages[-1] = messages[-1].replace("'%s'" % role_name, "'%s'" % module_name)
    return messages


@pytest.mark.parametrize("option,value,words", CASES, ids=["%s=%r" % (c[0], c[1]) for c in CASES])
def test_both_paths_refuse_exactly_the_same_inputs(option, value, words):
    options = dict(BASE, **{option: value})
    by_module, by_role = module_path(options), role_path(options)
    assert by_module == by_role
    if words is None:
        assert by_module == []
    else:
        assert len(by_module) == 1 or option == "tmpfs", by_module
        assert words in by_module[0], by_module
        # Named by the option (argument-spec errors name it inside the message).
        assert by_module[0].startswith((option + ":", option + "[", option + ".", "options: ")), by_module
        assert option in by_module[0] or option == "service", by_module


def test_the_base_service_is_valid_on_both_paths():
    assert module_path(BASE) == [] and role_path(BASE) == []


def test_absent_needs_no_image_on_both_paths():
    options = {"service": "old", "backend": "old", "state": "absent"}
    assert module_path(options) == [] and role_path(options) == []


def test_every_option_of_a_service_has_a_case():
    """A new option of haproxy_rotate gets its cases here, or this fails."""
    from ansible_collections.rotor.vps.plugins.module_utils._web_service import SERVICE_SPEC

    covered = {case[0] for case in CASES}
    assert set(SERVICE_SPEC) - {"state"} <= covered, sorted(set(SERVICE_SPEC) - {"state"} - covered)


def test_service_errors_list_every_problem_at_once():
    """The module's own check (haproxy_rotate's input_errors before) reports each broken option, named."""
    params = ArgumentSpecValidator(ARGUMENT_SPEC).validate(
        dict(BASE, replicas=0, port=0, memory="128b", check_interval="0")).validated_parameters
    errors = service_errors(params)
    assert [e.split(":")[0] for e in errors] == ["replicas", "port", "memory", "check_interval"], errors


def test_documented_defaults_are_the_modules():
    """The rotation role documents each service option's default; the module's spec is where it lives."""
    from pathlib import Path

    import yaml

    from ansible_collections.rotor.vps.plugins.module_utils._web_service import DEFAULT_HEALTH_PATH, SERVICE_SPEC

    roles = Path(__file__).resolve().parents[4] / "roles"
    specs = yaml.safe_load((roles / "rotation" / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = specs["main"]["options"]["rotation_services"]["options"]
    documented = {name: spec["default"] for name, spec in options.items() if "default" in spec}
    for name, value in documented.items():
        module_name = {"hosts": "routes"}.get(name, name)
        if module_name in SERVICE_SPEC and module_name != "routes":
            assert SERVICE_SPEC[module_name].get("default") == value, name
    assert {"replicas", "port", "health_path"} <= set(documented)
    haproxy = yaml.safe_load((roles / "haproxy" / "vars" / "main.yml").read_text())["__haproxy_backend_defaults"]
    assert haproxy["health_path"] == DEFAULT_HEALTH_PATH
