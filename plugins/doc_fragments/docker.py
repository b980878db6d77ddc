# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of modules that talk to the Docker engine on the managed host."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - The Docker engine's API endpoint on the managed host.
    type: str
    default: unix:///var/run/docker.sock
requirements:
  - The Docker SDK for Python on the managed host (Debian package C(python3-docker), installed by the
    P(rotor.vps.docker_host#role) role).
"""
