"""An optional survey question left blank means the same as the variable not given.

AWX passes a blank optional text question as "" (or null, in some versions) rather than leaving the
variable out. The entry points' variables are rendered here with Ansible's own templating, as the
play would render them, with each optional variable blank and then left out: both must give the same
hosts and the same role input (a blank tenant_hosts must not wipe a tenant's host names, a blank
rotate_hosts must not match no host).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"

INVENTORY = {
    "rotor_tenants": [{"name": "acme", "hosts": ["acme.example.com"], "schemas": ["api"],
                       "authenticator_password": "from-the-vault", "jwt_secret": "j" * 32, "pool_size": 4,
                       "db_pool": 8, "rate_limit": 500, "max_rows": 1000, "purge": True}],
}

# playbook: (answers every run has, optional variables, one answer that must change the rendering)
SURVEYS = {
    "rotate.yml": ({}, ["rotate_services", "rotate_state", "rotate_hosts"], {"rotate_state": "rotated"}),
    "renew_certs.yml": ({}, ["renew_sites", "renew_force", "renew_hosts"], {"renew_force": "true"}),
    "tenant.yml": ({"tenant_name": "acme"},
                   ["tenant_state", "tenant_hosts", "tenant_authenticator_password", "tenant_jwt_secret",
                    "tenant_schemas", "tenant_pool_size", "tenant_db_pool", "tenant_rate_limit", "tenant_max_rows",
                    "tenant_purge", "tenant_vps"],
                   {"tenant_hosts": "www.acme.example.com"}),
}


def rendered(playbook: str, answers: dict) -> dict:
    """The first play's hosts and every task's vars, rendered with ``answers`` as extra vars."""
    play = yaml.safe_load((PLAYBOOKS / playbook).read_text())[0]
    variables = dict(INVENTORY, **answers)
    variables.update({name: trust_as_template(value) if isinstance(value, str) else value
                      for name, value in (play.get("vars") or {}).items()})
    templar = Templar(loader=DataLoader(), variables=variables)

    def render(value):
        if isinstance(value, str):
            return templar.template(trust_as_template(value))
        if isinstance(value, list):
            return [render(item) for item in value]
        if isinstance(value, dict):
            return {key: render(item) for key, item in value.items()}
        return value

    result = {"hosts": render(play["hosts"])}
    for index, task in enumerate(play.get("tasks") or []):
        if task.get("vars"):
            result["task %d vars" % index] = render(task["vars"])
    return result


CASES = [(playbook, name, blank) for playbook, survey in SURVEYS.items() for name in survey[1] for blank in ("", None)]


@pytest.mark.parametrize(("playbook", "name", "blank"), CASES, ids=["%s-%s-%r" % case for case in CASES])
def test_blank_answer_is_no_answer(playbook, name, blank):
    required = SURVEYS[playbook][0]
    assert rendered(playbook, dict(required, **{name: blank})) == rendered(playbook, required)


@pytest.mark.parametrize("playbook", sorted(SURVEYS))
def test_an_answer_is_used(playbook):
    required, answer = SURVEYS[playbook][0], SURVEYS[playbook][2]
    assert rendered(playbook, dict(required, **answer)) != rendered(playbook, required)


def test_tenant_answers_override_the_inventory():
    vars_ = rendered("tenant.yml", {"tenant_name": "acme", "tenant_hosts": "a.example.com, b.example.com",
                                    "tenant_pool_size": "6", "tenant_purge": False})["task 2 vars"]
    tenant = vars_["tenants_list"][0]
    assert tenant["hosts"] == ["a.example.com", "b.example.com"]
    assert tenant["pool_size"] == 6
    assert tenant["purge"] is False
    assert tenant["authenticator_password"] == "from-the-vault"
