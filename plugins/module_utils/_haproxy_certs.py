# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificates in the running HAProxy, changed through its runtime API without a reload.

HAProxy keeps one certificate store per file it loaded, named by the path it read (inside its
container): ``crt /usr/local/etc/haproxy/certs/`` loads ``.../certs/<file>`` for every file of the
directory, which then acts as a crt-list of that name (the path without the trailing ``/``).

- A renewed certificate replaces its store in one transaction: ``set ssl cert <name> <<`` with the
  key, the certificate and its chain as the payload, then ``commit ssl cert <name>``; HAProxy
  swaps it in for new handshakes, and established connections keep theirs.
- A new certificate needs a store first and a place in the crt-list afterwards:
  ``new ssl cert``, ``set``, ``commit``, then ``add ssl crt-list <dir> <name>``.
- Runtime changes live in memory only: the file is written first (the caller's job), so that a
  reload or restart loads the same certificate.
- HAProxy holds one certificate transaction at a time for the whole process and answers
  "Operations on certificates are currently locked!" while another runs: those are retried.
  Every change here runs under one host-wide lock (``lock``), so a transaction HAProxy still
  holds when the lock is taken was left by an interrupted run: it is aborted before the next
  one, which HAProxy would otherwise refuse ("The ongoing transaction is about ...").
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional

from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import HaproxyError, HaproxyRuntime
from ansible_collections.rotor.vps.plugins.module_utils._waiter import WaitTimeout, Waiter

LOCKED = "currently locked"


@dataclass(frozen=True)
class StoredCert:
    """What ``show ssl cert <name>`` says about one store."""

    name: str
    status: str  # Empty, Unused (not in a crt-list) or Used
    serial: Optional[int]
    names: frozenset

    @classmethod
    def parse(cls, text: str) -> "StoredCert":
        fields = {}
        for line in text.splitlines():
            key, colon, value = line.partition(":")
            if colon and key.strip() not in fields:
                fields[key.strip()] = value.strip()
        serial = fields.get("Serial")
        sans = fields.get("Subject Alternative Name", "")
        return cls(name=fields.get("Filename", "").lstrip("*"), status=fields.get("Status", ""),
                   serial=int(serial, 16) if serial and re.fullmatch(r"[0-9A-Fa-f]+", serial) else None,
                   names=frozenset(part.strip()[4:] for part in sans.split(",") if part.strip().startswith("DNS:")))


def open_transaction(text: str) -> Optional[str]:
    """The store ``show ssl cert`` names as having an uncommitted transaction (``*<name>``), or None."""
    for line in text.splitlines():
        if line.strip().startswith("*"):
            return line.strip()[1:]
    return None


def store_names(text: str) -> list[str]:
    """The store names of ``show ssl cert`` (its ``# filename`` section; a transaction's name starts with ``*``)."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
            and not line.strip().startswith("*")]


def payload(pem: str) -> str:
    """The PEM as a runtime API payload: no empty lines (an empty line ends the payload)."""
    lines = [line for line in pem.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or not any(line.startswith("-----BEGIN") for line in lines):
        raise ValueError("the payload must be PEM: the private key, the certificate and its chain")
    return "\n".join(lines) + "\n"


class CertStores:
    """The certificate stores of one running HAProxy."""

    def __init__(self, runtime: HaproxyRuntime, waiter: Optional[Waiter] = None, lock_timeout: float = 30,
                 lock: Optional[Callable[[], ContextManager]] = None):
        self.runtime = runtime
        self.waiter = waiter or Waiter(initial=0.05, cap=0.5)
        self.lock_timeout = lock_timeout
        self.lock = lock or contextlib.nullcontext  # host-wide: one certificate change at a time
        self.aborted: list[str] = []  # stale transactions aborted by this object

    def names(self) -> list[str]:
        return store_names(self.runtime.execute("show ssl cert"))

    def show(self, name: str) -> Optional[StoredCert]:
        """The store ``name``, or None when HAProxy has none of that name."""
        if name not in self.names():
            return None
        return StoredCert.parse(self.runtime.execute("show ssl cert %s" % name))

    def install(self, name: str, pem: str, crt_list: str) -> str:
        """Put ``pem`` (key, certificate, chain) into the store ``name``, creating it when HAProxy has
        none and adding it to ``crt_list`` when it is not in use there (a store an interrupted run
        left); returns "added" or "renewed". A store this call created is deleted again on failure."""
        body = payload(pem)
        with self.lock():
            self._abort_stale()
            return self._install(name, body, crt_list)

    def _abort_stale(self) -> None:
        """Abort the transaction an interrupted run left open (none of ours runs: we hold the lock)."""
        stale = open_transaction(self.runtime.execute("show ssl cert"))
        if stale:
            self._locked("abort ssl cert %s" % stale, ok=("aborted",))
            self.aborted.append(stale)

    def _install(self, name: str, body: str, crt_list: str) -> str:
        stored = self.show(name)
        if stored is None:
            self._locked("new ssl cert %s" % name, ok=("New empty certificate store",))
        try:
            self._locked("set ssl cert %s <<" % name, body=body, ok=("Transaction created", "Transaction updated"))
            self._locked("commit ssl cert %s" % name, ok=("Success!",))
            if stored is None or stored.status != "Used":
                self._locked("add ssl crt-list %s %s" % (crt_list, name), ok=("Success!",))
        except HaproxyError:
            self._quietly("abort ssl cert %s" % name)
            if stored is None:
                self._quietly("del ssl crt-list %s %s" % (crt_list, name))
                self._quietly("del ssl cert %s" % name)
            raise
        return "renewed" if stored is not None and stored.status == "Used" else "added"

    def remove(self, name: str, crt_list: str) -> bool:
        """Take the store ``name`` out of ``crt_list`` (when it is in use) and delete it; False when HAProxy had none."""
        with self.lock():
            self._abort_stale()
            stored = self.show(name)
            if stored is None:
                return False
            if stored.status == "Used":
                self._locked("del ssl crt-list %s %s" % (crt_list, name), ok=("deleted",))
            self._locked("del ssl cert %s" % name, ok=("deleted",))
            return True

    def _locked(self, command: str, *, ok: tuple, body: Optional[str] = None) -> str:
        """Send ``command`` until HAProxy is not busy with another certificate; its reply must hold one of ``ok``."""
        def attempt() -> str:
            return self.runtime.execute(command, payload=body)

        try:
            reply = self.waiter.until(attempt, lambda answer: LOCKED not in answer,
                                      what="HAProxy's certificate lock for %r" % command.split(" <<")[0],
                                      timeout=self.lock_timeout)
        except WaitTimeout as exc:
            raise HaproxyError("HAProxy kept its certificates locked for %ds: %s" % (self.lock_timeout, exc)) from exc
        if not any(marker in reply for marker in ok):
            raise HaproxyError("HAProxy refused %r: %s" % (command.split(" <<")[0], " ".join(reply.split())[:1000]))
        return reply

    def _quietly(self, command: str) -> None:
        try:
            self.runtime.execute(command)
        except HaproxyError:
            pass


def served_serial(address: str, port: int, server_name: str, timeout: float = 5.0) -> int:
    """The serial of the certificate HAProxy presents at ``address:port`` for the SNI ``server_name``.

    The handshake checks nothing but which certificate comes back: the point is what is served.
    """
    from cryptography import x509  # the modules' host has it (python3-cryptography)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number
