"""Every configuration a service reads is validated before it goes live (the template's validate:)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
# Templates that are not a service's configuration, and why they need no validate:.
NOT_CONFIGURATION = {
    "Create the files of new backends (from then on the haproxy_rotate module's)":
        "created once, empty of servers; haproxy.cfg's check includes conf.d",
    "Write the services file the timers read": "the rotation role's own input, checked by its rules before it is written",
    "Write the sites file the timer reads": "the certbot role's own input, checked by its rules before it is written",
    "Write grafana.ini": "Grafana has no command that checks its files; test_observability_files.py checks the render",
    "Write Grafana's datasources and dashboard provider":
        "Grafana has no command that checks its files; test_observability_files.py checks the render",
}


def _template_tasks():
    for path in sorted(ROLES.glob("*/tasks/*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            if "ansible.builtin.template" in task:
                yield "%s/%s" % (path.parent.parent.name, path.name), task


TASKS = list(_template_tasks())


@pytest.mark.parametrize("where,task", TASKS, ids=[task["name"][:40] for _where, task in TASKS])
def test_every_configuration_is_validated_before_it_goes_live(where, task):
    if task["name"] in NOT_CONFIGURATION:
        return
    assert task["ansible.builtin.template"].get("validate"), "%s: %s has no validate:" % (where, task["name"])


def test_the_exemptions_name_existing_tasks():
    names = {task["name"] for _where, task in TASKS}
    assert set(NOT_CONFIGURATION) <= names
