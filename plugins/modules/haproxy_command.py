#!/usr/bin/python
# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_command
short_description: Send one command to HAProxy's runtime API or master CLI and check the answer
version_added: 0.1.0
description:
  - Sends O(command) to the HAProxy UNIX socket O(socket) (the runtime API at admin level, or the master
    CLI of a master-worker HAProxy) and returns the answer. The P(rotor.vps.haproxy#role) role reloads
    HAProxy and waits for a started container with it.
  - O(wait) retries the connection until HAProxy answers; O(expect) fails the task, with HAProxy's answer,
    when the answer does not match.
author: rotor.vps maintainers (@rotor-vps)
extends_documentation_fragment:
  - rotor.vps.command
options:
  socket:
    description: Path of the UNIX socket.
    type: path
    required: true
  command:
    description: The command, one line, such as C(show info) or (on the master CLI) C(reload).
    type: str
    required: true
  timeout:
    description: Seconds to wait for the answer on one connection.
    type: float
    default: 30
  expect:
    description: A regular expression (multi-line) the answer must match.
    type: str
"""

EXAMPLES = r"""
- name: Reload HAProxy through the master CLI
  rotor.vps.haproxy_command:
    socket: /var/lib/rotor/haproxy/run/master.sock
    command: reload
    expect: "^Success=1"
    wait: 30
    changes: true
"""

RETURN = r"""
answer:
  description: HAProxy's answer (empty in check mode for a command that changes HAProxy).
  returned: always
  type: str
  sample: "Success=1\n--\n"
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import HaproxyError, HaproxyRuntime

ARGUMENT_SPEC = dict(
    socket=dict(type="path", required=True),
    command=dict(type="str", required=True),
    wait=dict(type="float", default=0),
    timeout=dict(type="float", default=30),
    expect=dict(type="str"),
    changes=dict(type="bool", default=False),
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    try:
        pattern = re.compile(p["expect"], re.MULTILINE) if p["expect"] else None
    except re.error as exc:
        module.fail_json(msg="expect: %r is not a regular expression: %s" % (p["expect"], exc))
    if module.check_mode and p["changes"]:
        module.exit_json(changed=True, answer="")
    try:
        answer = HaproxyRuntime(p["socket"], timeout=p["timeout"]).answer(p["command"], wait=p["wait"])
    except HaproxyError as exc:
        module.fail_json(msg="Could not send %r to HAProxy at %s: %s" % (p["command"], p["socket"], exc))
    if pattern and not pattern.search(answer):
        module.fail_json(msg="HAProxy's answer to %r at %s does not match %r: %s"
                             % (p["command"], p["socket"], p["expect"], answer.strip()), answer=answer)
    module.exit_json(changed=p["changes"], answer=answer)


if __name__ == "__main__":
    main()
