#!/usr/bin/python
# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbouncer_user
short_description: Keep one user's SCRAM verifier line in PgBouncer's userlist, under the tenants' lock
version_added: 0.1.0
description:
  - Adds, replaces or removes the line of one user in PgBouncer's C(userlist.txt), such as the admin console
    user of the P(rotor.vps.pgbouncer#role) role. Every other line stays byte for byte.
  - Holds the same lock as M(rotor.vps.pgbouncer_tenant) (C(<config>.lock)) while it reads and writes, so a
    converge and a tenant change at the same moment never lose each other's lines.
  - The file is replaced atomically keeping its mode and owner; a missing file is created 0640, root-owned,
    in the group of its directory (the one PgBouncer reads it as).
  - Only SCRAM-SHA-256 verifiers are written, never a password.
  - Does not reload PgBouncer; notify the role's handler when it reports a change.
author: rotor.vps maintainers (@rotor-vps)
attributes:
  check_mode:
    support: full
    description: Reads the file and reports whether the line would change.
  diff_mode:
    support: full
    description: Shows the user's line before and after, with the verifier masked.
options:
  user:
    description: The user whose line this is.
    type: str
    required: true
  verifier:
    description:
      - The user's SCRAM-SHA-256 verifier, as PostgreSQL stores it (the P(rotor.vps.scram_verifier#filter) filter
        makes one). Required with O(state=present).
    type: str
  state:
    description: V(present) writes the line; V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  userlist:
    description: PgBouncer's userlist file.
    type: path
    default: /etc/rotor/pgbouncer/userlist.txt
  config:
    description: The database list file of M(rotor.vps.pgbouncer_tenant); its lock guards both files.
    type: path
    default: /etc/rotor/pgbouncer/databases.ini
  lock_timeout:
    description: Seconds to wait for a tenant change in progress.
    type: int
    default: 60
"""

EXAMPLES = r"""
- name: Admin user's line in userlist.txt
  rotor.vps.pgbouncer_user:
    user: pgbouncer_admin
    verifier: "{{ pgbouncer_admin_password | rotor.vps.scram_verifier(inventory_hostname ~ '/pgbouncer_admin') }}"
  no_log: true
"""

RETURN = r"""
lock_waited:
  description: Seconds spent waiting for the lock.
  returned: success, outside check mode
  type: float
  sample: 0.0
"""

from dataclasses import dataclass
from typing import Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rotor.vps.plugins.module_utils._atomic_file import FileState
from ansible_collections.rotor.vps.plugins.module_utils._host_lock import LockTimeout
from ansible_collections.rotor.vps.plugins.module_utils._module_run import add_diff, plan_and_apply, refuse_bad_input
from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_ini import (
    IniError,
    remove_user,
    set_user,
    userlist_entries,
)
from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_tenant import files_lock, masked_userlist_line
from ansible_collections.rotor.vps.plugins.module_utils._scram import is_verifier

ARGUMENT_SPEC = dict(
    user=dict(type="str", required=True),
    verifier=dict(type="str", no_log=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    userlist=dict(type="path", default="/etc/rotor/pgbouncer/userlist.txt"),
    config=dict(type="path", default="/etc/rotor/pgbouncer/databases.ini"),
    lock_timeout=dict(type="int", default=60),
)


@dataclass
class UserlistPlan:
    """The userlist now, what it becomes, and the user's verifier before."""

    state: FileState
    text: Optional[str]  # None: the file stays as it is (absent user, no file)
    before: Optional[str]

    @property
    def changed(self) -> bool:
        return self.text is not None and self.text != self.state.text


def plan_userlist(params: dict) -> UserlistPlan:
    """Read the userlist and compute it with the user's line as asked."""
    state = FileState.read(params["userlist"])
    before = userlist_entries(state.text or "").get(params["user"])
    if params["state"] == "present":
        text = set_user(state.text or "", params["user"], params["verifier"])
    else:
        text = None if state.text is None else remove_user(state.text, params["user"])
    return UserlistPlan(state, text, before)


def apply_userlist(plan: UserlistPlan) -> None:
    if plan.changed:
        plan.state.write(plan.text)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           required_if=[("state", "present", ("verifier",))])
    p = module.params
    if p["state"] == "present" and not is_verifier(p["verifier"]):
        # Never echoed: it may be a password given by mistake.
        refuse_bad_input(module, ["verifier: must be a SCRAM-SHA-256 verifier "
                                  "('SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>')"])
    result = dict(changed=False)
    try:
        outcome = plan_and_apply(module, lock=lambda: files_lock(p["config"], p["lock_timeout"]),
                                 plan=lambda: plan_userlist(p), apply=apply_userlist)
    except (IniError, ValueError, LockTimeout, OSError) as exc:
        module.fail_json(msg="pgbouncer_user %s: %s; nothing was changed" % (p["user"], exc))
    plan = outcome.plan
    if outcome.lock_waited is not None:
        result["lock_waited"] = outcome.lock_waited
    result["changed"] = plan.changed
    after = (p["verifier"] if p["state"] == "present" else None) if plan.changed else plan.before
    add_diff(module, result, lambda: dict(before_header=p["userlist"], after_header=p["userlist"],
                                          before=masked_userlist_line(p["user"], plan.before),
                                          after=masked_userlist_line(p["user"], after)))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
