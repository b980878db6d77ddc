# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One site's certificate, kept valid in the running HAProxy (the certbot_site module's logic).

Read: the certificate file HAProxy loads (``<certs>/<name>.pem``: key, certificate, chain), what
HAProxy serves from it (its store), the site's back-off record. Compare: a new order when the
names differ, the certificate is due (``_acme``) or a renewal is forced; otherwise only a load
when HAProxy serves another serial than the file's. Apply: certbot orders (``_certbot``), the
file is replaced atomically (root:99 0640, as HAProxy reads it on reload), HAProxy takes it
through its runtime API (``_haproxy_certs``), and a TLS handshake for every name must then show
the new serial. A failed order leaves the certificate in place, served, and a back-off record
that stops the next attempts for a growing delay. A new name for the account key (``account_key``)
first deactivates certbot's account with the CA and registers a new one with a new key; the
certificates in place stay served, and later orders use the new account.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ansible_collections.rotor.vps.plugins.module_utils._acme import (
    Certificate,
    acme_directory_url,
    after_failure,
    order_reason,
    waiting,
)
from ansible_collections.rotor.vps.plugins.module_utils._atomic_file import atomic_write, read_text
from ansible_collections.rotor.vps.plugins.module_utils._audit import append_audit, read_textfile, write_textfile
from ansible_collections.rotor.vps.plugins.module_utils._certbot import (
    ACCOUNT_KEYS_FILE,
    CONFIG_DIR,
    DNS_HOOK,
    LOGS_DIR,
    WEBROOT,
    WORK_DIR,
    account_args,
    account_unknown,
    accounts_dir,
    bad_nonce,
    cert_name,
    certonly_args,
    problem,
)
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_certs import CertStores, StoredCert, served_serial
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_routes import RouteMap, route_changes
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import HaproxyError
from ansible_collections.rotor.vps.plugins.module_utils._host_lock import HostLock, LockTimeout
from ansible_collections.rotor.vps.plugins.module_utils._module_run import StepError
from ansible_collections.rotor.vps.plugins.module_utils._waiter import WaitTimeout, Waiter

HAPROXY_GID = 99  # HAProxy's group in its image: it reads certificates on reload
HTTPS_MAP = "maps/https.map"  # names whose plain HTTP HAProxy redirects to HTTPS ("<name> <certificate>")
CA_BUNDLE = "/etc/rotor/acme-ca.pem"  # inside the certbot container
CERT_METRICS = {
    "rotor_certificate_not_after_timestamp_seconds": ("gauge", "When the certificate served for the site expires."),
    "rotor_certificate_not_before_timestamp_seconds": ("gauge", "When the certificate served for the site was issued."),
    "rotor_certificate_last_renewal_timestamp_seconds": ("gauge", "When the site's certificate was last issued here."),
    "rotor_certificate_failed_orders": ("gauge", "Orders for the site's certificate that failed since the last success."),
}


class SiteError(StepError):
    """An order, a delivery or a check failed; the message names the domain and what the CA said."""


@dataclass(frozen=True)
class SitePaths:
    """Where a site's files are, on the host and as HAProxy and certbot see them."""

    name: str
    cert_dir: str  # the HAProxy certificate directory on the host
    cert_mount: str  # the same directory in the HAProxy container
    certbot_dir: str  # certbot's config, work and logs directories live below
    webroot: str
    state_dir: str

    @property
    def cert_file(self) -> str:
        return os.path.join(self.cert_dir, "%s.pem" % self.name)

    @property
    def store(self) -> str:
        """The certificate's name in HAProxy: the path HAProxy loads it from."""
        return "%s/%s.pem" % (self.cert_mount.rstrip("/"), self.name)

    @property
    def crt_list(self) -> str:
        return self.cert_mount.rstrip("/")

    @property
    def backoff_file(self) -> str:
        return os.path.join(self.state_dir, "%s.json" % self.name)

    def certbot(self, part: str) -> str:
        return os.path.join(self.certbot_dir, part)


@dataclass(frozen=True)
class Site:
    """The module's options, as the site's rules need them."""

    domains: tuple
    state: str = "present"
    email: Optional[str] = None
    acme_directory: str = "letsencrypt"
    ca_bundle: Optional[str] = None
    key_type: str = "ecdsa"
    renew_days: Optional[int] = None
    challenge: str = "http-01"
    dns_hook: Optional[str] = None
    force: bool = False
    image: str = "certbot/certbot:v4.0.0"
    binary: Optional[str] = None
    network: str = "bridge"
    verify_address: str = "127.0.0.1"
    verify_port: int = 443
    timeout: int = 300
    audit_log: str = "/var/log/rotor/certificates.jsonl"
    metrics_dir: str = ""
    actor: str = ""
    account_key: str = ""  # the name of the account key in use; a new one rolls it ("": keep the account)

    def as_options(self) -> dict:
        return {"domains": list(self.domains), "email": self.email, "key_type": self.key_type,
                "challenge": self.challenge}


@dataclass
class SitePlan:
    """What a run does for the site; ``actions`` is what check mode reports."""

    reason: str = ""  # why a new certificate is ordered ("" when none is)
    load: str = ""  # why the file's certificate goes into HAProxy without a new order
    remove: list = field(default_factory=list)
    backoff: float = 0.0  # seconds before an order may be tried again
    current: Optional[Certificate] = None
    served: Optional[StoredCert] = None
    redirect: dict = field(default_factory=dict)  # names to redirect to HTTPS once the certificate is served
    unredirect: set = field(default_factory=set)  # names no longer redirected
    account: str = ""  # why the account key is rolled ("" when it is kept)

    @property
    def changes(self) -> bool:
        return bool((self.reason and not self.backoff) or self.load or self.remove or self.redirect or self.unredirect
                    or self.account)

    def actions(self) -> list[str]:
        out = []
        if self.account:
            out.append("roll the ACME account key: deactivate the account at the CA and register a new one (%s)"
                       % self.account)
        if self.reason and self.backoff:
            out.append("wait %d s more before ordering again (a failed order backs off): %s"
                       % (self.backoff, self.reason))
        elif self.reason:
            out.append("order a new certificate: %s" % self.reason)
            out.append("load it into HAProxy and check that every name serves it")
        if self.load:
            out.append("load the certificate file into HAProxy: %s" % self.load)
        if self.unredirect:
            out.append("stop redirecting plain HTTP to HTTPS for %s (%s)" % (", ".join(sorted(self.unredirect)), HTTPS_MAP))
        out += self.remove
        if self.redirect:
            out.append("redirect plain HTTP to HTTPS for %s (%s)" % (", ".join(sorted(self.redirect)), HTTPS_MAP))
        return out


class CertbotSite:
    """Reads, plans and applies one site's certificate; only ``apply`` changes anything."""

    def __init__(self, site: Site, paths: SitePaths, stores: CertStores, docker=None, waiter: Optional[Waiter] = None,
                 lock_dir: str = "/run/lock/rotor", redirects: Optional[RouteMap] = None,
                 reload: Optional[Callable[[Callable[[], bool], str], None]] = None):
        self.site = site
        self.redirects = redirects  # HAProxy's HTTPS map; None leaves redirects alone
        self.reload = reload  # a hitless reload of HAProxy (``master_reload``), the fallback of the runtime API
        self.lock_dir = lock_dir
        self.paths = paths
        self.stores = stores
        self.docker = docker
        self.waiter = waiter or Waiter(initial=0.1, cap=1.0)

    # Read -----------------------------------------------------------------------------------

    def current(self) -> Optional[Certificate]:
        text = read_text(self.paths.cert_file)
        if not text:
            return None
        try:
            return Certificate.from_pem(text.encode())
        except ValueError:
            return None  # not a certificate HAProxy could serve: ordered again

    def account_keys(self) -> dict:
        """The name of the account key in use with each CA (directory URL -> name), as recorded on the host."""
        try:
            keys = json.loads(read_text(self.paths.certbot("config/%s" % ACCOUNT_KEYS_FILE)) or "{}")
        except ValueError:
            return {}
        return keys if isinstance(keys, dict) else {}

    def account_reason(self) -> str:
        """Why the account key is rolled: ``account_key`` names another key than the one in use ("" to keep it)."""
        wanted = self.site.account_key
        if not wanted or self.site.state != "present":
            return ""
        current = self.account_keys().get(acme_directory_url(self.site.acme_directory))
        if current == wanted:
            return ""
        return "account_key %s, was %s" % (wanted, current or "not set")

    def backoff_record(self) -> dict:
        try:
            return json.loads(read_text(self.paths.backoff_file) or "{}")
        except ValueError:
            return {}

    # Compare and plan -----------------------------------------------------------------------

    def plan(self) -> SitePlan:
        s, p = self.site, self.paths
        plan = SitePlan(current=self.current(), served=self.stores.show(p.store))
        if s.state == "absent":
            if plan.served is not None:
                plan.remove.append("stop serving %s (HAProxy's crt-list and store)" % p.store)
            for path in self._files():
                plan.remove.append("remove %s" % path)
            self._plan_redirects(plan, names=())
            return plan
        plan.account = self.account_reason()
        now = time.time()
        if s.force:
            plan.reason = "forced renewal"
        else:
            plan.reason = order_reason(plan.current, list(s.domains), now, s.renew_days, key_type=s.key_type)
        if plan.reason and not s.force:
            plan.backoff = round(waiting(self.backoff_record(), now))
        if not plan.reason:
            served = plan.served
            if served is None:
                plan.load = "HAProxy serves no certificate of this name"
            elif served.status != "Used":
                plan.load = "HAProxy holds it but does not serve it (%s)" % (served.status or "status unknown")
            elif served.serial != plan.current.serial:
                plan.load = "HAProxy serves %s, the file holds %X" % (
                    "serial %X" % served.serial if served.serial is not None else "an unreadable serial",
                    plan.current.serial)
        # Redirected once a certificate serves them: the one this run orders, or the current one's names.
        if plan.reason and not plan.backoff:
            self._plan_redirects(plan, names=s.domains)
        else:
            covered = plan.current.names if plan.current is not None else frozenset()
            self._plan_redirects(plan, names=[name for name in s.domains if name in covered])
        return plan

    def _plan_redirects(self, plan: SitePlan, names) -> None:
        """The HTTPS map's lines of this certificate: exactly ``names``, in the file and in the running HAProxy
        (a change that reached only the file, before a failure, is made again)."""
        if self.redirects is None:
            return
        written = self.redirects.read()
        try:
            live = self.redirects.live(self.stores.runtime)
        except HaproxyError:
            live = written  # HAProxy does not know the map: the redirect step says so
        agreed = {host: target for host, target in written.items() if live.get(host) == target}
        plan.redirect, unused = route_changes(agreed, self.paths.name, list(names) or None)
        plan.unredirect = {host for source in (written, live) for host, target in source.items()
                           if target == self.paths.name and host not in names}

    def _files(self) -> list:
        """The site's files on the host that exist (for absent)."""
        p = self.paths
        paths = [p.cert_file, p.backoff_file] + [p.certbot("config/%s/%s" % (part, p.name)) for part in ("live", "archive")]
        paths.append(p.certbot("config/renewal/%s.conf" % p.name))
        if self.site.metrics_dir:
            paths.append(self._metrics_path())
        return [path for path in paths if os.path.lexists(path)]

    # Apply ----------------------------------------------------------------------------------

    def apply(self, plan: SitePlan) -> dict:
        """Carry out the plan; returns what was delivered (``serial``, ``not_after``, ``how``)."""
        if self.site.state == "absent":
            self._redirect(plan)
            return self._remove(plan)
        delivered = {}
        if plan.account:
            self._roll_account(plan.account)
        if plan.reason and not plan.backoff:
            pem = self._order(plan.reason)
            delivered = self._deliver(pem, plan.reason)
        elif plan.load:
            delivered = self._deliver(read_text(self.paths.cert_file) or "", plan.load, write=False)
        self._redirect(plan)
        return delivered

    def _redirect(self, plan: SitePlan) -> None:
        """HAProxy's HTTPS map, file and running HAProxy; redirects come only after a delivery that held."""
        if self.redirects is None or not (plan.redirect or plan.unredirect):
            return
        try:
            self.redirects.apply(self.stores.runtime, plan.redirect, plan.unredirect)
        except (HaproxyError, LockTimeout, OSError) as exc:
            served = "the certificate is served, but " if self.site.state == "present" else ""
            raise SiteError("%sHAProxy's %s could not be changed (%s); an HAProxy whose configuration does not read "
                            "that map needs https_redirect: false" % (served, HTTPS_MAP, exc), step="redirect") from exc

    def _order(self, reason: str) -> str:
        """Run certbot (once more after a rejected nonce); the new key and chain as one PEM."""
        s, p = self.site, self.paths
        for directory in (p.certbot("config"), p.certbot("work"), p.certbot("logs"), p.state_dir):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        os.makedirs(p.webroot, mode=0o755, exist_ok=True)
        started = time.time()
        # certbot locks its directories, which every site shares: one certbot at a time on the host.
        with HostLock(os.path.join(self.lock_dir, "certbot.lock"), s.timeout + 60, "certbot's directories"):
            code, output = self._certbot()
            if code != 0 and account_unknown(output):
                self._set_account_aside()
                code, output = self._certbot()
            if code != 0 and bad_nonce(output):
                code, output = self._certbot()
        if code != 0:
            what = problem(output)
            record = self._failed("order", reason, what)
            raise SiteError("certbot could not get a certificate for %s from %s: %s; the current certificate stays "
                            "served, the next order waits %d s (%s)"
                            % (", ".join(s.domains), s.acme_directory, what, record["next_attempt"] - time.time(),
                               p.backoff_file), step="order")
        live = p.certbot("config/live/%s" % p.name)
        key, chain = read_text(os.path.join(live, "privkey.pem")), read_text(os.path.join(live, "fullchain.pem"))
        if not key or not chain:
            raise SiteError("certbot succeeded but %s holds no privkey.pem and fullchain.pem" % live, step="order")
        self._audit("order", "ok", reason=reason, seconds=round(time.time() - started, 1))
        return key.rstrip("\n") + "\n" + chain

    def _failed(self, step: str, reason: str, what: str) -> dict:
        """Record a failed order or delivery: the back-off record, an audit line, the metric."""
        record = after_failure(self.backoff_record(), time.time(), what)
        os.makedirs(self.paths.state_dir, mode=0o700, exist_ok=True)
        atomic_write(self.paths.backoff_file, json.dumps(record, sort_keys=True), mode=0o600)
        self._audit(step, "failed", reason=reason, error=what, failures=record["failures"])
        self._metrics(failures=record["failures"])
        return record

    def _set_account_aside(self) -> None:
        """Move the account the CA forgot to ``accounts-forgotten/`` (kept, never used again)."""
        url = acme_directory_url(self.site.acme_directory)
        current = accounts_dir(url, self.paths.certbot("config"))
        if os.path.isdir(current):
            aside = "%s.%d" % (current.replace("/accounts/", "/accounts-forgotten/", 1), time.time())
            os.makedirs(os.path.dirname(aside), mode=0o700, exist_ok=True)
            os.rename(current, aside)
            self._audit("account", "ok", reason="the CA no longer knows the account", kept=aside)

    def _roll_account(self, reason: str) -> None:
        """Deactivate certbot's account with the CA (a copy of its files kept in ``accounts-retired/``) and
        register a new one with a new key; then record the key's name. Nothing else changes."""
        s, p = self.site, self.paths
        url = acme_directory_url(s.acme_directory)
        for directory in (p.certbot("config"), p.certbot("work"), p.certbot("logs")):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        current = accounts_dir(url, p.certbot("config"))
        with HostLock(os.path.join(self.lock_dir, "certbot.lock"), s.timeout + 60, "certbot's directories"):
            kept = ""
            if os.path.isdir(current) and os.listdir(current):
                kept = "%s.%d" % (current.replace("/accounts/", "/accounts-retired/", 1), time.time())
                os.makedirs(os.path.dirname(kept), mode=0o700, exist_ok=True)
                shutil.copytree(current, kept, symlinks=True)
                code, output = self._certbot("unregister")
                if code != 0 and bad_nonce(output):
                    code, output = self._certbot("unregister")
                if code != 0 and not account_unknown(output):
                    shutil.rmtree(kept, ignore_errors=True)
                    raise SiteError("certbot could not deactivate the ACME account at %s: %s; nothing changed, the "
                                    "account stays in use" % (url, problem(output)), step="account")
                if code != 0 and os.path.isdir(current):  # the CA no longer knew it: certbot left its files
                    shutil.rmtree(current)
                self._audit("account", "ok", reason=reason, step="deactivated", kept=kept)
            code, output = self._certbot("register")
            if code != 0 and bad_nonce(output):
                code, output = self._certbot("register")
        if code != 0:
            raise SiteError("certbot could not register a new ACME account at %s: %s; %s, the next run registers again"
                            % (url, problem(output), "the previous one is deactivated (its files in %s)" % kept if kept
                               else "no account is in use"), step="account")
        keys = dict(self.account_keys(), **{url: s.account_key})
        atomic_write(p.certbot("config/%s" % ACCOUNT_KEYS_FILE), json.dumps(keys, indent=2, sort_keys=True) + "\n",
                     mode=0o600)
        self._audit("account", "ok", reason=reason, step="registered", account_key=s.account_key)

    def _certbot(self, command: str = "certonly") -> tuple:
        """Run certbot's ``certonly`` for the site, or an account ``command`` (register, unregister)."""
        s, p = self.site, self.paths
        options = s.as_options()
        url = acme_directory_url(s.acme_directory)

        def arguments(**dirs) -> list:
            if command == "certonly":
                return certonly_args(options, directory_url=url, **dirs)
            dirs.pop("webroot", None)
            dirs.pop("dns_hook", None)
            return account_args(command, directory_url=url, email=s.email, **dirs)

        if s.binary:
            env = dict(os.environ, REQUESTS_CA_BUNDLE=s.ca_bundle) if s.ca_bundle else None
            argv = [s.binary] + arguments(webroot=p.webroot, dns_hook=s.dns_hook or DNS_HOOK,
                                          config_dir=p.certbot("config"), work_dir=p.certbot("work"),
                                          logs_dir=p.certbot("logs"))
            try:
                done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=s.timeout, check=False)
            except subprocess.TimeoutExpired:
                return 1, "certbot did not finish within %d s" % s.timeout
            return done.returncode, done.stdout + done.stderr
        mounts = {p.certbot("config"): CONFIG_DIR, p.certbot("work"): WORK_DIR, p.certbot("logs"): LOGS_DIR,
                  p.webroot: WEBROOT}
        read_only = {}
        if s.challenge == "dns-01" and command == "certonly":
            read_only[s.dns_hook] = DNS_HOOK
        environment = {}
        if s.ca_bundle:
            read_only[s.ca_bundle] = CA_BUNDLE
            environment["REQUESTS_CA_BUNDLE"] = CA_BUNDLE
        return self.docker.run_once(s.image, arguments(), mounts=mounts,
                                    read_only_mounts=read_only, environment=environment, network=s.network,
                                    timeout=s.timeout, name="rotor-certbot-%s" % p.name.replace("_.", "wildcard."))

    def _deliver(self, pem: str, reason: str, write: bool = True) -> dict:
        """Write the file (when new), put it into HAProxy, and check every name serves its serial.

        On failure the previous file goes back, and so does what HAProxy served (the previous
        certificate, or none), so that file and HAProxy agree; the site backs off like after a
        failed order, since the next run would order again.
        """
        p = self.paths
        try:
            certificate = Certificate.from_pem(pem.encode())
        except ValueError as exc:
            raise SiteError("the new certificate of %s cannot be read: %s" % (p.name, exc), step="deliver") from exc
        previous = read_text(p.cert_file)
        served_before = self.stores.show(p.store)
        if write:
            os.makedirs(p.cert_dir, mode=0o750, exist_ok=True)
            atomic_write(p.cert_file, pem, mode=0o640, uid=0, gid=HAPROXY_GID)
        reloaded = False
        try:
            try:
                how = self.stores.install(p.store, pem, p.crt_list)
            except HaproxyError as exc:
                if self.reload is None:
                    raise
                # The file is in place: a reload loads it, as it would after a restart.
                self._reload_for(certificate.serial, "the runtime API refused it: %s" % exc)
                how, reloaded = "reloaded", True
            self._verify(certificate.serial)
        except (SiteError, HaproxyError, LockTimeout, WaitTimeout, OSError) as exc:
            undone = self._undo_delivery(previous if write else None, served_before, write, reloaded)
            if write:
                self._failed("deliver", reason, str(exc))
            raise SiteError("HAProxy did not serve the new certificate of %s: %s; %s"
                            % (", ".join(self.site.domains), exc, undone), step="deliver") from exc
        if os.path.exists(p.backoff_file):
            os.unlink(p.backoff_file)
        for stale in getattr(self.stores, "aborted", []):
            self._audit("abort", "ok", reason="HAProxy held a transaction an interrupted run left", store=stale)
        self._audit("deliver", "ok", reason=reason, serial="%X" % certificate.serial, how=how,
                    not_after=int(certificate.not_after))
        self._metrics(certificate=certificate, renewed=write)
        return {"serial": "%X" % certificate.serial, "not_after": int(certificate.not_after), "how": how}

    def _undo_delivery(self, previous: Optional[str], served_before: Optional[StoredCert], wrote: bool,
                       reloaded: bool = False) -> str:
        """Put back the previous file and what HAProxy served; says what was undone."""
        p, undone = self.paths, []
        try:
            if wrote and previous:
                atomic_write(p.cert_file, previous, mode=0o640, uid=0, gid=HAPROXY_GID)
                undone.append("the previous certificate file is back")
            elif wrote and os.path.exists(p.cert_file):
                os.unlink(p.cert_file)
                undone.append("the new certificate file was removed")
            if reloaded and wrote:
                self.reload(lambda: True, "HAProxy reloaded with the previous files")
                undone.append("HAProxy reloaded with them")
            elif served_before is None:
                if self.stores.remove(p.store, p.crt_list):
                    undone.append("HAProxy no longer holds it")
            elif previous:
                self.stores.install(p.store, previous, p.crt_list)
                undone.append("HAProxy serves the previous certificate again")
        except (HaproxyError, LockTimeout, WaitTimeout, OSError, ValueError) as exc:
            undone.append("putting HAProxy back failed too (%s): check it with 'show ssl cert %s'" % (exc, p.store))
        return "; ".join(undone) or "nothing was written"

    def _reload_for(self, serial: int, why: str) -> None:
        """The fallback: one hitless reload, done when the new worker serves ``serial`` from the file."""
        def served() -> bool:
            stored = self.stores.show(self.paths.store)
            return stored is not None and stored.serial == serial

        try:
            self.reload(served, "HAProxy serving serial %X from %s after a reload" % (serial, self.paths.cert_file))
        except (HaproxyError, WaitTimeout) as exc:
            self._audit("reload", "failed", reason=why, error=str(exc))
            raise
        self._audit("reload", "ok", reason=why)

    def _verify(self, serial: int) -> None:
        """A TLS handshake on the verify address for each name must present ``serial``."""
        for domain in self.site.domains:
            server_name = "rotor-check.%s" % domain[2:] if domain.startswith("*.") else domain
            try:
                self.waiter.until(lambda name=server_name: served_serial(self.site.verify_address, self.site.verify_port,
                                                                         name),
                                  lambda got: got == serial,
                                  what="HAProxy presenting serial %X for %s" % (serial, server_name), timeout=10)
            except (WaitTimeout, OSError) as exc:
                raise SiteError("a TLS handshake with %s on %s:%d did not present the new serial %X: %s"
                                % (server_name, self.site.verify_address, self.site.verify_port, serial, exc),
                                step="verify") from exc

    def _remove(self, plan: SitePlan) -> dict:
        if not plan.remove:
            return {}
        p, done = self.paths, []
        try:
            if plan.served is not None:
                self.stores.remove(p.store, p.crt_list)
                done.append("HAProxy no longer serves it")
            for path in self._files():
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            done.append("its files were removed")
        except (HaproxyError, LockTimeout, OSError) as exc:
            raise SiteError("removing certificate %s failed: %s; %s" % (p.name, exc, ", ".join(done) or "nothing was "
                            "changed"), step="remove") from exc
        self._audit("remove", "ok")
        return {}

    # Records --------------------------------------------------------------------------------

    def _audit(self, action: str, result: str, **extra) -> None:
        append_audit(self.site.audit_log, dict({"actor": self.site.actor, "certificate": self.paths.name,
                                                "domains": list(self.site.domains), "action": action,
                                                "result": result}, **extra))

    def _metrics_path(self) -> str:
        return os.path.join(self.site.metrics_dir, "certificate_%s.prom" % self.paths.name)

    def _metrics(self, *, certificate: Optional[Certificate] = None, renewed: bool = False, failures: int = 0) -> None:
        if not self.site.metrics_dir:
            return
        current = certificate or self.current()
        labels = {"certificate": self.paths.name}
        values = {name: value for name, value in read_textfile(self._metrics_path(), labels).items() if name in CERT_METRICS}
        values["rotor_certificate_failed_orders"] = float(failures)
        if current is not None:
            values["rotor_certificate_not_after_timestamp_seconds"] = current.not_after
            values["rotor_certificate_not_before_timestamp_seconds"] = current.not_before
        if renewed:
            values["rotor_certificate_last_renewal_timestamp_seconds"] = round(time.time(), 3)
        write_textfile(self._metrics_path(), CERT_METRICS, labels, values)


def site_paths(domains: list, *, cert_dir: str, cert_mount: str, certbot_dir: str, webroot: str,
               state_dir: str) -> SitePaths:
    return SitePaths(cert_name(domains), cert_dir, cert_mount, certbot_dir, webroot, state_dir)
