#!/usr/bin/python
# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: certbot_site
short_description: Keep one site's ACME certificate valid in the running HAProxy, with no downtime
version_added: 0.1.0
description:
  - Orders a certificate for O(domains) (the first names it) from an ACME CA with certbot, writes it for
    HAProxy and loads it into the running HAProxy through its runtime API, then checks that a TLS handshake
    for every name on O(verify_address) presents the new serial. Nothing is stopped or reloaded (a hitless reload
    only as the fallback when the runtime API refuses the certificate).
  - A new order only when the certificate in place does not cover exactly O(domains), or is due, by default
    once a third of its lifetime remains (a 90-day certificate at 30 days left, a 6-day one at 2), or
    O(renew_days) before it expires. Otherwise nothing happens, except loading the file into HAProxy when
    HAProxy serves another serial than the file holds.
  - HTTP-01 (default) puts the challenge into O(webroot), for the CA to read under
    C(/.well-known/acme-challenge/) on port 80, where HAProxy sends that path of every site to the webroot service
    of the P(rotor.vps.certbot#role) role (busybox httpd serving O(webroot) read-only); nothing is stopped. dns-01
    runs O(dns_hook) to publish and remove the TXT record, and is the only way to a wildcard certificate.
  - The certificate file (C(<haproxy_config_dir>/certs/<name>.pem), with the key, the certificate and its chain) is replaced
    atomically, root:99 0640, like the default certificate, so a reload of HAProxy loads the same one. A new
    certificate gets its own store and a place in the certificate directory's list (C(new ssl cert),
    C(set ssl cert), C(commit ssl cert), C(add ssl crt-list)); a renewed one replaces its store in one
    transaction.
  - When an order fails (the CA cannot be reached, a challenge fails, a rate limit), the current certificate
    stays served, the error names the domains and what the CA said, and the next order waits (5 minutes,
    doubling up to a day, recorded in O(state_dir)), so that a timer cannot run into the CA's limits.
  - One audit line per order, delivery or removal, in the same audit log as rotation; the certificate's
    validity as textfile metrics in O(metrics_dir).
author: rotor.vps maintainers (@rotor-vps)
extends_documentation_fragment:
  - rotor.vps.docker
attributes:
  check_mode:
    support: full
    description: Reads the certificate file, HAProxy's store and the back-off record; orders nothing.
  diff_mode:
    support: full
    description: The names, serial and expiry before, and the names after; never a key.
options:
  domains:
    description:
      - The names of the certificate; the first names it (its file and certbot's lineage; C(*.) as C(_.)).
      - Lowercase DNS names with at least one dot; a wildcard C(*.example.com) needs O(challenge=dns-01).
    type: list
    elements: str
    required: true
  state:
    description: V(present) keeps the certificate valid and served; V(absent) stops serving it and removes its files.
    type: str
    choices: [present, absent]
    default: present
  email:
    description:
      - The account's address; the CA writes to it about expiry and its terms. No address when not set.
      - Given to the CA when certbot registers its account there (its first order with that CA); a changed
        address does not reach an existing account.
    type: str
  acme_directory:
    description:
      - The CA, V(letsencrypt) (production), V(letsencrypt-staging), or the https:// URL of any ACME directory.
    type: str
    default: letsencrypt
  account_key:
    description:
      - A name for the ACME account key in use with this CA (a date or a number). When it differs from the one
        recorded on the host (C(rotor-account-keys.json) in certbot's configuration directory), the key is rolled
        before anything is ordered - certbot's account is deactivated at the CA (refused from then on; a copy of its
        files stays in C(accounts-retired/)) and a new account with a new key is registered, which later orders use.
        The certificates in place stay served. Unset or empty keeps the account as it is.
      - 1 to 64 letters, digits, C(.), C(_) and C(-).
    type: str
    version_added: 0.1.0
  ca_bundle:
    description: A CA bundle (on the host) that certbot trusts the ACME server with, for a private CA.
    type: path
  key_type:
    description: The certificate's key (ECDSA P-256, or RSA 2048).
    type: str
    choices: [ecdsa, rsa]
    default: ecdsa
  renew_days:
    description: Renew this many days before expiry instead of when a third of the lifetime remains.
    type: int
  challenge:
    description: How the CA checks that the names are ours.
    type: str
    choices: [http-01, dns-01]
    default: http-01
  dns_hook:
    description:
      - With O(challenge=dns-01), an executable file on the host that certbot runs with C(add) to publish the TXT
        record C(_acme-challenge.$CERTBOT_DOMAIN) with the value C($CERTBOT_VALIDATION) (alongside other values,
        since a wildcard and its apex need two at once), and with C(del) to remove them.
      - certbot runs it where certbot runs, in its container by default (the file alone mounted read-only, the
        image's C(sh) and C(python3), the container's O(network), no other file or variable of the host), or on
        the host with O(certbot_binary).
    type: path
  force:
    description: Order a new certificate now, due or not (not held back by a back-off).
    type: bool
    default: false
  image:
    description: The certbot image certbot runs from, one container per order.
    type: str
    default: certbot/certbot:v4.0.0
  certbot_binary:
    description: A certbot on the host to run instead of the image.
    type: path
  network:
    description: The Docker network of certbot's container (it reaches the CA from there).
    type: str
    default: bridge
  timeout:
    description: Seconds one certbot run may take.
    type: int
    default: 300
  certbot_dir:
    description: certbot's own directories (C(config), C(work), C(logs)) on the host; root only.
    type: path
    default: /etc/rotor/certbot
  webroot:
    description: The directory certbot puts HTTP-01 challenges in, served under C(/.well-known/acme-challenge/).
    type: path
    default: /var/lib/rotor/acme/webroot
  state_dir:
    description: Where each site's back-off record is kept after a failed order.
    type: path
    default: /var/lib/rotor/certbot/state
  verify_address:
    description: Where the TLS handshakes that check the served serial go (HAProxy's HTTPS port on the host).
    type: str
    default: 127.0.0.1
  verify_port:
    description: The port of those handshakes.
    type: int
    default: 443
  haproxy_socket:
    description: HAProxy's runtime socket (admin level) on the host.
    type: path
    default: /var/lib/rotor/haproxy/run/admin.sock
  haproxy_master_socket:
    description:
      - HAProxy's master CLI socket, for the fallback - when the runtime API refuses the certificate, one hitless
        reload loads the file written before (then checked like any delivery).
    type: path
    default: /var/lib/rotor/haproxy/run/master.sock
  haproxy_config_dir:
    description: HAProxy's configuration directory on the host; certificates go to its C(certs/).
    type: path
    default: /etc/rotor/haproxy
  haproxy_config_mount:
    description: The same directory inside HAProxy's container (the certificates' names in HAProxy).
    type: path
    default: /usr/local/etc/haproxy
  https_redirect:
    description:
      - Once the certificate is served, list its names in HAProxy's C(maps/https.map) (the file and the running HAProxy),
        so that plain HTTP for them redirects to HTTPS (except ACME challenges); O(state=absent) removes them first.
      - Off leaves the map alone (for an HAProxy whose configuration does not read it).
    type: bool
    default: true
  metrics_dir:
    description: Where the certificate's textfile metrics go (node-exporter reads them); nothing when empty.
    type: path
    default: /var/lib/rotor/metrics
  audit_log:
    description: The audit log (JSON lines) shared with rotation.
    type: path
    default: /var/log/rotor/rotation.jsonl
  actor:
    description: Who changes the certificate, for the audit log; the user and host running the module by default.
    type: str
  lock_dir:
    description: Where runs for the same certificate take turns.
    type: path
    default: /run/lock/rotor
"""

EXAMPLES = r"""
- name: One certificate for two names, from Let's Encrypt
  rotor.vps.certbot_site:
    domains: [www.example.com, example.com]
    email: admin@example.com

- name: A wildcard certificate through a DNS hook, renewed 20 days before expiry
  rotor.vps.certbot_site:
    domains: ["*.example.com", example.com]
    challenge: dns-01
    dns_hook: /usr/local/lib/rotor/publish-txt
    renew_days: 20

- name: Stop serving a certificate
  rotor.vps.certbot_site:
    domains: [old.example.com]
    state: absent
"""

RETURN = r"""
actions:
  description: What the run does (in check mode, what it would do).
  returned: always
  type: list
  elements: str
  sample: ["order a new certificate: no certificate yet", "load it into HAProxy and check that every name serves it"]
certificate:
  description: The certificate's name (its file and certbot lineage).
  returned: always
  type: str
  sample: www.example.com
serial:
  description: The serial (hex) of the certificate served afterwards.
  returned: when a certificate is served
  type: str
  sample: 4A1B2C
not_after:
  description: When that certificate expires (epoch seconds).
  returned: when a certificate is served
  type: int
due_at:
  description: When it is due for renewal (epoch seconds).
  returned: when a certificate is served
  type: int
backoff:
  description: Seconds before the next order may be tried, after failed ones.
  returned: when an order is held back
  type: int
step:
  description:
    - The step that failed - C(order) (nothing changed), C(deliver) (the new certificate was not served, so file and
      HAProxy were put back as the message says), C(redirect) (the certificate is served, the HTTPS map not changed)
      or C(remove).
  returned: failure
  type: str
  sample: order
"""

import importlib.util
import os
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rotor.vps.plugins.module_utils._acme import site_errors
from ansible_collections.rotor.vps.plugins.module_utils._audit import default_actor
from ansible_collections.rotor.vps.plugins.module_utils._certbot_site import (
    HTTPS_MAP,
    CertbotSite,
    Site,
    SiteError,
    site_paths,
)
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_certs import CertStores
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_routes import RouteMap
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import (
    HaproxyError,
    HaproxyRuntime,
    master_reload,
)
from ansible_collections.rotor.vps.plugins.module_utils._host_lock import HostLock, LockTimeout
from ansible_collections.rotor.vps.plugins.module_utils._module_run import add_diff, plan_and_apply, refuse_bad_input
from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    address_errors,
    docker_name_errors,
    host_path_errors,
)
from ansible_collections.rotor.vps.plugins.module_utils._validate_container import (
    image_errors,
)
from ansible_collections.rotor.vps.plugins.module_utils._web_service import host_errors

from ansible_collections.rotor.vps.plugins.module_utils._docker_engine import DockerEngine, EngineError

HAS_DOCKER = importlib.util.find_spec("docker") is not None
HAS_CRYPTOGRAPHY = importlib.util.find_spec("cryptography") is not None

ARGUMENT_SPEC = dict(
    domains=dict(type="list", elements="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    email=dict(type="str"),
    acme_directory=dict(type="str", default="letsencrypt"),
    account_key=dict(type="str", no_log=False),
    ca_bundle=dict(type="path"),
    key_type=dict(type="str", choices=["ecdsa", "rsa"], default="ecdsa"),
    renew_days=dict(type="int"),
    challenge=dict(type="str", choices=["http-01", "dns-01"], default="http-01"),
    dns_hook=dict(type="path"),
    force=dict(type="bool", default=False),
    image=dict(type="str", default="certbot/certbot:v4.0.0"),
    certbot_binary=dict(type="path"),
    network=dict(type="str", default="bridge"),
    timeout=dict(type="int", default=300),
    certbot_dir=dict(type="path", default="/etc/rotor/certbot"),
    webroot=dict(type="path", default="/var/lib/rotor/acme/webroot"),
    state_dir=dict(type="path", default="/var/lib/rotor/certbot/state"),
    verify_address=dict(type="str", default="127.0.0.1"),
    verify_port=dict(type="int", default=443),
    haproxy_socket=dict(type="path", default="/var/lib/rotor/haproxy/run/admin.sock"),
    haproxy_master_socket=dict(type="path", default="/var/lib/rotor/haproxy/run/master.sock"),
    haproxy_config_dir=dict(type="path", default="/etc/rotor/haproxy"),
    haproxy_config_mount=dict(type="path", default="/usr/local/etc/haproxy"),
    https_redirect=dict(type="bool", default=True),
    metrics_dir=dict(type="path", default="/var/lib/rotor/metrics"),
    audit_log=dict(type="path", default="/var/log/rotor/rotation.jsonl"),
    actor=dict(type="str"),
    lock_dir=dict(type="path", default="/run/lock/rotor"),
    docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
)


def input_errors(p: dict) -> list[str]:
    errors = site_errors(p) + host_errors(p)
    for name in ("timeout", "verify_port"):
        if p[name] < 1:
            errors.append("%s: %r must be at least 1" % (name, p[name]))
    for name in ("certbot_dir", "webroot", "state_dir"):
        errors += host_path_errors(p[name], name)
    # Mounted into certbot's container, run by certbot's hooks through a shell: plain paths only.
    for name in ("ca_bundle", "dns_hook", "certbot_binary"):
        if p[name]:
            problems = host_path_errors(p[name], name)
            if not problems and not os.path.isfile(p[name]):
                problems = ["%s: %r is not a file on the host" % (name, p[name])]
            errors += problems
    errors += image_errors(p["image"], "image") + docker_name_errors(p["network"], "network")
    return errors + address_errors(p["verify_address"], "verify_address")


def build(module: AnsibleModule) -> CertbotSite:
    p = module.params
    site = Site(domains=tuple(p["domains"]), state=p["state"], email=p["email"], acme_directory=p["acme_directory"],
                ca_bundle=p["ca_bundle"], key_type=p["key_type"], renew_days=p["renew_days"],
                challenge=p["challenge"], dns_hook=p["dns_hook"], force=p["force"], image=p["image"],
                binary=p["certbot_binary"], network=p["network"], verify_address=p["verify_address"],
                verify_port=p["verify_port"], timeout=p["timeout"], audit_log=p["audit_log"],
                metrics_dir=p["metrics_dir"] or "", actor=p["actor"] or default_actor(), account_key=p["account_key"] or "")
    paths = site_paths(p["domains"], cert_dir=os.path.join(p["haproxy_config_dir"], "certs"),
                       cert_mount=os.path.join(p["haproxy_config_mount"], "certs"), certbot_dir=p["certbot_dir"],
                       webroot=p["webroot"], state_dir=p["state_dir"])
    docker = None if p["certbot_binary"] or module.check_mode else DockerEngine(p["docker_host"])
    redirects = RouteMap(p["haproxy_config_dir"], p["haproxy_config_mount"], p["lock_dir"], 60,
                         file=HTTPS_MAP) if p["https_redirect"] else None
    certificates_lock = os.path.join(p["lock_dir"], "haproxy-certificates.lock")
    stores = CertStores(HaproxyRuntime(p["haproxy_socket"]),
                        lock=lambda: HostLock(certificates_lock, 120, "HAProxy's certificate transactions"))

    def reload(done, what: str) -> None:
        master_reload(p["haproxy_master_socket"], done, what)

    return CertbotSite(site, paths, stores, docker, lock_dir=p["lock_dir"], redirects=redirects, reload=reload)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           required_if=[("challenge", "dns-01", ("dns_hook",))])
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography (python3-cryptography)"))
    if not HAS_DOCKER and not module.params["certbot_binary"]:
        module.fail_json(msg=missing_required_lib("docker (python3-docker), or certbot_binary"))
    refuse_bad_input(module, input_errors(module.params))
    try:
        site = build(module)
    except EngineError as exc:
        module.fail_json(msg="certbot_site: %s; nothing was changed" % exc)
    what = "certbot_site %s" % site.paths.name
    result = dict(changed=False, actions=[], certificate=site.paths.name)
    lock = os.path.join(module.params["lock_dir"], "certbot-%s.lock" % site.paths.name)
    try:
        site.stores.runtime.check_socket()
        outcome = plan_and_apply(module, lock=lambda: HostLock(lock, 60, "certificate %s" % site.paths.name),
                                 plan=site.plan, apply=site.apply)
    except SiteError as exc:
        module.fail_json(msg="%s: %s" % (what, exc), step=exc.step, changed=exc.step != "order")
    except (HaproxyError, EngineError, LockTimeout, OSError, ValueError) as exc:
        module.fail_json(msg="%s: %s; nothing was changed" % (what, exc))
    plan = outcome.plan
    result.update(changed=plan.changes, actions=plan.actions())
    if plan.backoff and plan.reason:
        result["backoff"] = plan.backoff
        module.warn("%s: %s" % (what, plan.actions()[0]))
    served = site.current() if not module.check_mode else plan.current
    if served is not None and module.params["state"] == "present":
        result.update(serial="%X" % served.serial, not_after=int(served.not_after),
                      due_at=int(served.due_at(module.params["renew_days"])))
    add_diff(module, result, lambda: _diff(plan, module.params))
    module.exit_json(**result)


def _diff(plan, p: dict) -> dict:
    """The names, serial and expiry in place, and what the run leaves; never a key."""
    current = plan.current
    before = "(no certificate)\n" if current is None else "names: %s\nserial: %X\nnot_after: %s\n" % (
        ", ".join(sorted(current.names)), current.serial,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(current.not_after)))
    if p["state"] == "absent":
        after = "(no certificate)\n"
    elif plan.reason and not plan.backoff:
        after = "names: %s\n(a new certificate)\n" % ", ".join(sorted(p["domains"]))
    else:
        after = before
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
