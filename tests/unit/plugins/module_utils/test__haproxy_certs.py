from __future__ import annotations

import datetime
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.rotor.vps.plugins.module_utils._haproxy_certs import (
    CertStores,
    StoredCert,
    open_transaction,
    payload,
    served_serial,
    store_names,
)
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import HaproxyError, HaproxyRuntime
from ansible_collections.rotor.vps.plugins.module_utils._waiter import Waiter

CERTS = "/usr/local/etc/haproxy/certs"
SHOW_LIST = "# filename\n%s/default.pem\n%s/a.pem\n" % (CERTS, CERTS)
# What an interrupted run leaves: a transaction on a.pem that nobody commits.
SHOW_STALE = "# transaction\n*%s/a.pem\n# filename\n%s/default.pem\n%s/a.pem\n" % (CERTS, CERTS, CERTS)
SHOW_ONE = """Filename: /usr/local/etc/haproxy/certs/a.pem
Status: Used
Serial: 0A1B2C
notBefore: Dec  1 10:00:00 2026 GMT
notAfter: Mar  1 10:00:00 2027 GMT
Subject Alternative Name: DNS:a.example.com, DNS:b.example.com
Algorithm: EC256
SHA1 FingerPrint: 0102
Subject: /CN=a.example.com
Issuer: /CN=Pebble Intermediate CA
"""
PEM = "-----BEGIN PRIVATE KEY-----\nK\n-----END PRIVATE KEY-----\n\n-----BEGIN CERTIFICATE-----\nC\n-----END CERTIFICATE-----\n"


class FakeRuntime:
    """Answers like HAProxy's runtime API, from a script of (command prefix, reply)."""

    def __init__(self, replies):
        self.replies, self.sent = list(replies), []

    def execute(self, command, *, payload=None):
        self.sent.append((command, payload))
        for index, (prefix, reply) in enumerate(self.replies):
            if command.startswith(prefix):
                del self.replies[index]
                return reply
        raise AssertionError("unexpected command %r" % command)


def stores(replies):
    runtime = FakeRuntime(replies)
    return runtime, CertStores(runtime, waiter=Waiter(initial=0.001, cap=0.001), lock_timeout=1)


def test_store_names_and_details():
    assert store_names(SHOW_STALE) == store_names(SHOW_LIST) == ["%s/default.pem" % CERTS, "%s/a.pem" % CERTS]
    assert (open_transaction(SHOW_STALE), open_transaction(SHOW_LIST)) == ("%s/a.pem" % CERTS, None)
    cert = StoredCert.parse(SHOW_ONE)
    assert cert == StoredCert("%s/a.pem" % CERTS, "Used", 0x0A1B2C, frozenset({"a.example.com", "b.example.com"}))


def test_payload_drops_empty_lines_and_wants_pem():
    assert payload(PEM) == PEM.replace("\n\n", "\n")
    with pytest.raises(ValueError, match="must be PEM"):
        payload("not a certificate")


def test_a_new_certificate_gets_a_store_and_a_place_in_the_crt_list():
    name = "%s/c.pem" % CERTS
    runtime, certs = stores([("show ssl cert", SHOW_LIST), ("show ssl cert", SHOW_LIST), ("new ssl cert", "New empty certificate store '%s'!" % name),
                             ("set ssl cert", "Transaction created for certificate %s!" % name),
                             ("commit ssl cert", "Committing %s\nSuccess!" % name),
                             ("add ssl crt-list", "Inserting certificate '%s' in crt-list '%s'.\nSuccess!" % (name, CERTS))])
    assert certs.install(name, PEM, CERTS) == "added"
    assert [entry[0] for entry in runtime.sent] == [
        "show ssl cert", "show ssl cert", "new ssl cert %s" % name, "set ssl cert %s <<" % name, "commit ssl cert %s" % name,
        "add ssl crt-list %s %s" % (CERTS, name)]
    assert runtime.sent[3][1] == payload(PEM)


def test_a_renewed_certificate_replaces_its_store_in_one_transaction_and_waits_for_the_lock():
    name = "%s/a.pem" % CERTS
    runtime, certs = stores([("show ssl cert /", SHOW_ONE), ("show ssl cert", SHOW_LIST), ("show ssl cert", SHOW_LIST),
                             ("set ssl cert", "Operations on certificates are currently locked!"),
                             ("set ssl cert", "Transaction updated for certificate %s!" % name),
                             ("commit ssl cert", "Committing %s\nSuccess!" % name)])
    assert certs.install(name, PEM, CERTS) == "renewed"
    assert [entry[0] for entry in runtime.sent] == [
        "show ssl cert", "show ssl cert", "show ssl cert %s" % name, "set ssl cert %s <<" % name, "set ssl cert %s <<" % name,
        "commit ssl cert %s" % name]


def test_a_refused_commit_is_aborted_and_the_new_store_deleted():
    name = "%s/c.pem" % CERTS
    runtime, certs = stores([("show ssl cert", SHOW_LIST), ("show ssl cert", SHOW_LIST), ("new ssl cert", "New empty certificate store"),
                             ("set ssl cert", "Transaction created"),
                             ("commit ssl cert", "Committing %s\ninconsistencies between private key and certificate "
                                                 "loaded\nFailed!" % name),
                             ("abort ssl cert", "Transaction aborted"), ("del ssl crt-list", "not found"),
                             ("del ssl cert", "Certificate deleted!")])
    with pytest.raises(HaproxyError, match="HAProxy refused 'commit ssl cert .*inconsistencies between private key"):
        certs.install(name, PEM, CERTS)
    assert [" ".join(entry[0].split()[:3]) for entry in runtime.sent][-3:] == [
        "abort ssl cert", "del ssl crt-list", "del ssl cert"]


def test_a_store_left_out_of_the_crt_list_is_added_to_it_and_removed_without_it():
    name = "%s/a.pem" % CERTS
    unused = SHOW_ONE.replace("Status: Used", "Status: Unused")
    runtime, certs = stores([("show ssl cert /", unused), ("show ssl cert", SHOW_LIST), ("show ssl cert", SHOW_LIST), ("set ssl cert", "Transaction updated"),
                             ("commit ssl cert", "Success!"), ("add ssl crt-list", "Success!")])
    assert certs.install(name, PEM, CERTS) == "added"
    assert runtime.sent[-1][0] == "add ssl crt-list %s %s" % (CERTS, name)
    runtime, certs = stores([("show ssl cert /", unused), ("show ssl cert", SHOW_LIST), ("show ssl cert", SHOW_LIST),
                             ("del ssl cert", "Certificate '%s' deleted!" % name)])
    assert certs.remove(name, CERTS)
    assert [entry[0] for entry in runtime.sent][-1] == "del ssl cert %s" % name


def test_a_transaction_an_interrupted_run_left_is_aborted_under_the_lock_first():
    name = "%s/c.pem" % CERTS
    held = []

    class Lock:
        def __enter__(self):
            held.append("in")

        def __exit__(self, *exc):
            held.append("out")

    runtime = FakeRuntime([("show ssl cert", SHOW_STALE), ("abort ssl cert", "Transaction aborted for certificate"),
                           ("show ssl cert", SHOW_LIST), ("new ssl cert", "New empty certificate store"),
                           ("set ssl cert", "Transaction created"), ("commit ssl cert", "Success!"),
                           ("add ssl crt-list", "Success!")])
    certs = CertStores(runtime, waiter=Waiter(initial=0.001, cap=0.001), lock_timeout=1, lock=Lock)
    assert certs.install(name, PEM, CERTS) == "added"
    assert runtime.sent[1][0] == "abort ssl cert %s/a.pem" % CERTS and certs.aborted == ["%s/a.pem" % CERTS]
    assert held == ["in", "out"]


def test_execute_sends_the_payload_and_the_empty_line_that_ends_it(tmp_path):
    path = str(tmp_path / "admin.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    received = []

    def serve():
        conn = server.accept()[0]
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        received.append(b"".join(chunks))
        conn.sendall(b"Transaction created\n\n")
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    runtime = HaproxyRuntime(path, timeout=5)
    assert runtime.execute("set ssl cert /c/a.pem <<", payload="A\nB\n").startswith("Transaction created")
    thread.join(5)
    server.close()
    assert received == [b"set ssl cert /c/a.pem <<\nA\nB\n\n"]
    with pytest.raises(HaproxyError, match="has no empty line"):
        runtime.execute("set ssl cert /c/a.pem <<", payload="A\n\nB\n")
    with pytest.raises(HaproxyError, match="ending in ' <<'"):
        runtime.execute("show ssl cert", payload="A\n")


def test_served_serial_reads_the_certificate_of_the_handshake(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0xBEEF).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = tmp_path / "cert.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pem))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    names = []

    def serve():
        context.sni_callback = lambda _sock, server_name, _ctx: names.append(server_name)
        conn = listener.accept()[0]
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    assert served_serial("127.0.0.1", port, "a.example.com") == 0xBEEF
    thread.join(5)
    listener.close()
    assert names == ["a.example.com"]
