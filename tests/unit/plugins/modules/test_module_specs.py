"""The modules' argument specs: secrets hidden, nothing that makes Ansible warn on every run."""

from __future__ import annotations

import importlib

import pytest
from ansible.module_utils.basic import PASSWORD_MATCH

MODULES = ["haproxy_rotate", "pgbouncer_tenant", "postgrest_spawn"]


def _walk(spec: dict, where: str):
    for name, option in spec.items():
        yield "%s%s" % (where, name), name, option
        if "options" in option:
            yield from _walk(option["options"], "%s%s." % (where, name))


@pytest.mark.parametrize("module", MODULES)
def test_every_option_named_like_a_secret_says_whether_it_is_one(module):
    """AnsibleModule warns "Module did not set no_log for ..." for such names unless no_log is set."""
    spec = importlib.import_module("ansible_collections.rotor.vps.plugins.modules.%s" % module).ARGUMENT_SPEC
    unsaid = [path for path, name, option in _walk(spec, "") if PASSWORD_MATCH.search(name) and "no_log" not in option]
    assert unsaid == []


@pytest.mark.parametrize("module", MODULES)
def test_secret_options_are_hidden(module):
    spec = importlib.import_module("ansible_collections.rotor.vps.plugins.modules.%s" % module).ARGUMENT_SPEC
    secrets = {"password", "verifier", "env", "admin_password", "login_password", "authenticator_password",
               "jwt_secret"}
    for path, name, option in _walk(spec, ""):
        if name in secrets:
            assert option.get("no_log") is True, path
