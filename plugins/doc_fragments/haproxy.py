# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of modules that change the running HAProxy of the P(rotor.vps.haproxy#role) role."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  haproxy_socket:
    description:
      - HAProxy's runtime API socket on the managed host (a stats socket with C(level admin)).
    type: path
    default: /var/lib/rotor/haproxy/run/admin.sock
  haproxy_config_dir:
    description:
      - HAProxy's configuration directory on the managed host; backend files are in its C(conf.d/),
        the host map is C(maps/hosts.map).
    type: path
    default: /etc/rotor/haproxy
  haproxy_config_mount:
    description:
      - Where O(haproxy_config_dir) is mounted inside the HAProxy container; the runtime API names map
        files by this path.
    type: path
    default: /usr/local/etc/haproxy
  lock_dir:
    description:
      - Directory of the host locks that keep two changes of one backend (or of the host map) apart.
    type: path
    default: /run/lock/rotor
  lock_timeout:
    description:
      - Seconds to wait for another run that holds the backend's lock before failing.
    type: int
    default: 300
"""
