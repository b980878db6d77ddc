#!/usr/bin/python
# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: container_signal
short_description: Send a signal to a container's main process and keep its restart policy
version_added: 0.1.0
description:
  - Sends O(signal) to the main process of the running container O(name), such as C(SIGHUP) to make a
    service read its files again. The roles reload Prometheus, Alertmanager, the blackbox exporter,
    PgBouncer and the Docker API broker with it.
  - C(docker kill --signal) is not used on purpose. Docker marks a container it was asked to signal as
    stopped by hand, whatever the signal, and from then on brings it back neither after a crash nor at
    boot (restart policies C(always) and C(unless-stopped) alike). When the engine runs on this host
    (a C(unix://) O(docker_host)), the signal goes to the process itself through a pidfd, once the process
    is checked to be the container's main process (its cgroup, PID 1 of its namespace, the PID Docker
    still reports), and the restart policy stays whole. A remote engine, or a process that cannot be
    checked, gets Docker's kill, with a warning that says why.
author: rotor.vps maintainers (@rotor-vps)
extends_documentation_fragment:
  - rotor.vps.docker
options:
  name:
    description: The container's name.
    type: str
    required: true
  signal:
    description: The signal's name, with or without C(SIG) (C(SIGHUP), C(USR2)).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Prometheus reads its files again
  rotor.vps.container_signal:
    name: rotor-prometheus
    signal: SIGHUP
"""

RETURN = r"""
sent_by:
  description: How the signal went; C(kill) (this host's kill(2)), C(api) (Docker's kill endpoint), or C("")
    in check mode.
  returned: always
  type: str
  sample: kill
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rotor.vps.plugins.module_utils._docker_engine import (
    DockerEngine,
    EngineError,
    signal_number,
    signal_warning,
)
from ansible_collections.rotor.vps.plugins.module_utils._validate import docker_name_errors
from ansible_collections.rotor.vps.plugins.module_utils._validate_container import docker_host_errors

try:
    import docker  # noqa: F401  pylint: disable=unused-import

    HAS_DOCKER = True
except ImportError:
    HAS_DOCKER = False

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    signal=dict(type="str", required=True),
    docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    errors = docker_name_errors(p["name"], "name") + docker_host_errors(p["docker_host"], "docker_host")
    try:
        signal_number(p["signal"])
    except EngineError as exc:
        errors.append("signal: %s" % exc)
    if errors:
        module.fail_json(msg="; ".join(errors))
    if not HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker (python3-docker)"))
    if module.check_mode:
        module.exit_json(changed=True, sent_by="")
    try:
        engine = DockerEngine(p["docker_host"])
        try:
            why = engine.signal(p["name"], p["signal"])
        finally:
            engine.close()
    except EngineError as exc:
        module.fail_json(msg=str(exc))
    if why:
        module.warn(signal_warning(p["signal"], p["name"], why))
    module.exit_json(changed=True, sent_by="api" if why else "kill")


if __name__ == "__main__":
    main()
