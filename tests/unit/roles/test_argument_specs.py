"""Each role's meta/argument_specs.yml documents exactly its defaults, with the same values.

ansible-doc renders the specs and role start validates input against them, so a default that is
missing from the spec (or documented with another value) would be a silent lie.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
ROLE_NAMES = sorted(p.parent.parent.name for p in ROLES.glob("*/meta/argument_specs.yml"))


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def test_every_role_has_specs():
    assert ROLE_NAMES, "no role has meta/argument_specs.yml"
    assert sorted(p.name for p in ROLES.iterdir() if p.is_dir()) == ROLE_NAMES


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_specs_match_defaults(role):
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    specs = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    options = specs["main"]["options"]
    assert sorted(options) == sorted(defaults), "documented options and defaults differ"
    for name, value in defaults.items():
        assert name.startswith(role + "_"), "public variable %s lacks the %s_ prefix" % (name, role)
        assert options[name].get("default") == value, "%s: documented default differs from defaults/main.yml" % name


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_entry_point_has_a_task_file(role):
    specs = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    for entry in specs:
        assert (ROLES / role / "tasks" / ("%s.yml" % entry)).exists(), entry


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_option_is_described(role):
    def walk(options, where):
        for name, spec in options.items():
            assert spec.get("description"), "%s.%s has no description" % (where, name)
            if "options" in spec:
                walk(spec["options"], "%s.%s" % (where, name))

    specs = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    for entry, spec in specs.items():
        assert spec.get("short_description"), "%s entry point %s has no short_description" % (role, entry)
        walk(spec.get("options") or {}, "%s/%s" % (role, entry))


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_entry_points_take_the_public_variables_they_document(role):
    """An entry point other than main documents each option as main does (same type and default)."""
    specs = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    main = specs["main"]["options"]
    for entry, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            if name in main:
                assert {k: option.get(k) for k in ("type", "default")} == {
                    k: main[name].get(k) for k in ("type", "default")}, "%s/%s.%s" % (role, entry, name)
