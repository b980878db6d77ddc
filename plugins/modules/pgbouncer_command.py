#!/usr/bin/python
# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbouncer_command
short_description: Run one command on PgBouncer's admin console and check the settings it shows after
version_added: 0.1.0
description:
  - Runs O(command) (such as C(RELOAD) or C(SHOW POOLS)) on PgBouncer's admin console and returns the rows.
    The P(rotor.vps.pgbouncer#role) role reloads PgBouncer with it.
  - O(wait) retries the connection until PgBouncer answers (a container that just started has no socket yet).
  - O(expect) then polls C(SHOW CONFIG) until each named setting shows the given value, and fails naming what
    PgBouncer shows when it does not within O(expect_wait) seconds. C(RELOAD) answers before PgBouncer has
    read the files, so this is what tells that a new configuration took.
author: rotor.vps maintainers (@rotor-vps)
requirements:
  - psycopg (python3-psycopg) on the host
extends_documentation_fragment:
  - rotor.vps.command
options:
  host:
    description: Directory of PgBouncer's UNIX socket, or its host name.
    type: str
    required: true
  port:
    description: PgBouncer's port.
    type: int
    default: 6432
  user:
    description: A member of PgBouncer's C(admin_users) (or C(stats_users) for C(SHOW) commands).
    type: str
    required: true
  password:
    description: The user's password.
    type: str
  command:
    description: The admin command, such as C(RELOAD) or C(SHOW CONFIG).
    type: str
    required: true
  expect:
    description: Settings C(SHOW CONFIG) must show after the command, by name.
    type: dict
    default: {}
  expect_wait:
    description: Seconds to wait for O(expect).
    type: float
    default: 5
"""

EXAMPLES = r"""
- name: Reload PgBouncer and see the new pool size take
  rotor.vps.pgbouncer_command:
    host: /var/lib/rotor/pgbouncer/run
    user: pgbouncer_admin
    password: "{{ pgbouncer_admin_password }}"
    command: RELOAD
    expect:
      default_pool_size: "20"
    changes: true
"""

RETURN = r"""
rows:
  description: The rows the command returned, each a dict by column name.
  returned: always
  type: list
  elements: dict
  sample: [{"key": "pool_mode", "value": "transaction"}]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_admin import HAS_PSYCOPG, AdminConsole, ConsoleError
from ansible_collections.rotor.vps.plugins.module_utils._waiter import Waiter, WaitTimeout

ARGUMENT_SPEC = dict(
    host=dict(type="str", required=True),
    port=dict(type="int", default=6432),
    user=dict(type="str", required=True),
    password=dict(type="str", no_log=True),
    command=dict(type="str", required=True),
    wait=dict(type="float", default=0),
    expect=dict(type="dict", default={}),
    expect_wait=dict(type="float", default=5),
    changes=dict(type="bool", default=False),
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    if not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg (python3-psycopg)"))
    if module.check_mode and p["changes"]:
        module.exit_json(changed=True, rows=[])
    console = AdminConsole(host=p["host"], port=p["port"], user=p["user"], password=p["password"])
    wanted = {str(key): str(value) for key, value in p["expect"].items()}
    try:
        rows = console.execute(p["command"], wait=p["wait"])
        if wanted:
            Waiter(initial=0.1, cap=0.2).until(
                console.config, lambda shown: all(shown.get(k) == v for k, v in wanted.items()),
                what="settings after %s" % p["command"], timeout=p["expect_wait"])
    except ConsoleError as exc:
        module.fail_json(msg="pgbouncer_command %s: %s" % (p["command"], exc))
    except WaitTimeout as exc:
        wrong = {key: (exc.last or {}).get(key) for key, value in wanted.items() if (exc.last or {}).get(key) != value}
        module.fail_json(msg="After %s PgBouncer shows %s, not %s: the new configuration did not take (see `docker "
                             "logs` of the container)" % (p["command"], wrong, {key: wanted[key] for key in wrong}))
    module.exit_json(changed=p["changes"], rows=[dict(row) for row in rows])


if __name__ == "__main__":
    main()
