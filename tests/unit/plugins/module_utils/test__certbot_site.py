from __future__ import annotations

import datetime
import json
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.rotor.vps.plugins.module_utils._certbot_site import CertbotSite, Site, site_paths
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_certs import StoredCert

DOMAINS = ("a.example.com", "b.example.com")


def pem(days_left: float, lifetime: float = 90, serial: int = 0x1234, names=DOMAINS) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days_left)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(serial).not_valid_before(end - datetime.timedelta(days=lifetime)).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM)).decode()


class Stores:
    runtime = None  # HAProxy's runtime API, which the fake map below does not need

    def __init__(self, served=None):
        self.served = served

    def show(self, name):
        return self.served


def site(tmp_path, served=None, **options) -> CertbotSite:
    paths = site_paths(list(options.pop("domains", DOMAINS)), cert_dir=str(tmp_path / "certs"),
                       cert_mount="/usr/local/etc/haproxy/certs", certbot_dir=str(tmp_path / "certbot"),
                       webroot=str(tmp_path / "webroot"), state_dir=str(tmp_path / "state"))
    return CertbotSite(Site(domains=DOMAINS, **options), paths, Stores(served))


def put(tmp_path, text: str) -> None:
    (tmp_path / "certs").mkdir(exist_ok=True)
    (tmp_path / "certs" / "a.example.com.pem").write_text(text)


def test_names_and_places():
    s = site(__import__("pathlib").Path("/x"))
    assert s.paths.store == "/usr/local/etc/haproxy/certs/a.example.com.pem"
    assert s.paths.crt_list == "/usr/local/etc/haproxy/certs"
    assert s.paths.cert_file == "/x/certs/a.example.com.pem"


def test_no_certificate_is_ordered(tmp_path):
    plan = site(tmp_path).plan()
    assert plan.changes and plan.reason == "no certificate yet"
    assert plan.actions() == ["order a new certificate: no certificate yet",
                              "load it into HAProxy and check that every name serves it"]


def test_a_valid_certificate_served_as_is_changes_nothing(tmp_path):
    put(tmp_path, pem(days_left=60))
    plan = site(tmp_path, served=StoredCert("n", "Used", 0x1234, frozenset(DOMAINS))).plan()
    assert not plan.changes and plan.actions() == []


def test_a_file_haproxy_does_not_serve_is_loaded_without_an_order(tmp_path):
    put(tmp_path, pem(days_left=60))
    plan = site(tmp_path, served=StoredCert("n", "Used", 0x99, frozenset(DOMAINS))).plan()
    assert plan.changes and not plan.reason
    assert plan.actions() == ["load the certificate file into HAProxy: HAProxy serves serial 99, the file holds 1234"]
    assert "no certificate of this name" in site(tmp_path).plan().load


def test_due_and_forced(tmp_path):
    put(tmp_path, pem(days_left=29))
    assert site(tmp_path).plan().reason.startswith("it is due (29.0 days left")
    put(tmp_path, pem(days_left=31))
    assert site(tmp_path, served=StoredCert("n", "Used", 0x1234, frozenset())).plan().reason == ""
    assert site(tmp_path, force=True).plan().reason == "forced renewal"
    assert site(tmp_path, renew_days=40).plan().reason.startswith("it is due")


def test_a_failed_order_holds_the_next_one_back_unless_forced(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "a.example.com.json").write_text(json.dumps({"failures": 2, "next_attempt": time.time() + 500}))
    plan = site(tmp_path).plan()
    assert not plan.changes and 490 < plan.backoff <= 500
    assert plan.actions()[0].startswith("wait ")
    forced = site(tmp_path, force=True).plan()
    assert forced.changes and forced.backoff == 0


def test_absent_removes_what_exists(tmp_path):
    put(tmp_path, pem(days_left=60))
    plan = site(tmp_path, served=StoredCert("n", "Used", 0x1234, frozenset()), state="absent").plan()
    assert plan.changes
    assert plan.actions() == ["stop serving /usr/local/etc/haproxy/certs/a.example.com.pem (HAProxy's crt-list and store)",
                              "remove %s" % (tmp_path / "certs" / "a.example.com.pem")]
    assert not site(tmp_path / "none", state="absent").plan().changes


class RecordingStores(Stores):
    def __init__(self, served=None):
        super().__init__(served)
        self.installed, self.removed = [], []

    def install(self, name, pem, crt_list):
        self.installed.append(pem)
        return "renewed"

    def remove(self, name, crt_list):
        self.removed.append(name)
        return True


def test_a_delivery_that_is_not_served_puts_file_and_haproxy_back_and_backs_off(tmp_path, monkeypatch):
    import pytest

    from ansible_collections.rotor.vps.plugins.module_utils import _certbot_site
    from ansible_collections.rotor.vps.plugins.module_utils._certbot_site import SiteError

    old, new = pem(days_left=10), pem(days_left=90, serial=0x5678)
    put(tmp_path, old)
    stores = RecordingStores(served=StoredCert("n", "Used", 0x1234, frozenset(DOMAINS)))
    s = site(tmp_path, audit_log=str(tmp_path / "audit.jsonl"))
    s.stores = stores
    monkeypatch.setattr(_certbot_site, "atomic_write", lambda path, data, **kw: open(path, "w").write(data))

    def refuse(serial):
        raise SiteError("a TLS handshake with a.example.com did not present the new serial 5678", step="verify")

    monkeypatch.setattr(s, "_verify", refuse)
    with pytest.raises(SiteError, match="the previous certificate file is back; HAProxy serves the previous "
                                        "certificate again"):
        s._deliver(new, "it is due")  # pylint: disable=protected-access
    assert (tmp_path / "certs" / "a.example.com.pem").read_text() == old
    assert stores.installed == [new, old]
    assert json.loads((tmp_path / "state" / "a.example.com.json").read_text())["failures"] == 1


def test_absent_with_nothing_left_does_nothing(tmp_path):
    s = site(tmp_path, state="absent", audit_log=str(tmp_path / "audit.jsonl"))
    plan = s.plan()
    assert not plan.changes and s.apply(plan) == {}
    assert not (tmp_path / "audit.jsonl").exists()


class Redirects:
    """The HTTPS map: its file's lines, and what was applied."""

    def __init__(self, lines=None, live=None):
        self.lines = dict(lines or {})
        self.live_lines = dict(self.lines if live is None else live)
        self.applied = []

    def read(self):
        return dict(self.lines)

    def live(self, runtime):
        return dict(self.live_lines)

    def apply(self, runtime, updates, removals):
        self.applied.append((dict(updates), set(removals)))


def redirecting(tmp_path, lines=None, live=None, **options) -> CertbotSite:
    s = site(tmp_path, **options)
    s.redirects = Redirects(lines, live)
    return s


def test_names_are_redirected_once_their_certificate_is_served(tmp_path):
    plan = redirecting(tmp_path).plan()
    assert plan.redirect == {"a.example.com": "a.example.com", "b.example.com": "a.example.com"}
    assert plan.actions()[-1] == "redirect plain HTTP to HTTPS for a.example.com, b.example.com (maps/https.map)"
    put(tmp_path, pem(days_left=60))
    served = StoredCert("n", "Used", 0x1234, frozenset(DOMAINS))
    done = redirecting(tmp_path, {"a.example.com": "a.example.com", "b.example.com": "a.example.com"}, served=served)
    assert not done.plan().changes
    missing = redirecting(tmp_path, {"a.example.com": "a.example.com"}, served=served).plan()
    assert missing.changes and missing.redirect == {"b.example.com": "a.example.com"} and not missing.reason


def test_a_name_dropped_is_no_longer_redirected_and_others_lines_stay(tmp_path):
    put(tmp_path, pem(days_left=60, names=DOMAINS + ("c.example.com",)))
    plan = redirecting(tmp_path, {"a.example.com": "a.example.com", "c.example.com": "a.example.com",
                                  "other.example": "other.example"}).plan()
    assert plan.reason.startswith("the names differ") and plan.unredirect == {"c.example.com"}
    assert plan.redirect == {"b.example.com": "a.example.com"}


def test_a_name_the_certificate_does_not_cover_yet_is_not_redirected_while_orders_back_off(tmp_path):
    put(tmp_path, pem(days_left=60, names=("a.example.com",)))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "a.example.com.json").write_text(json.dumps({"failures": 1, "next_attempt": time.time() + 300}))
    plan = redirecting(tmp_path, {"a.example.com": "a.example.com"}).plan()
    assert plan.backoff and plan.redirect == {} and plan.unredirect == set()


def test_a_redirect_that_reached_only_the_file_is_made_again(tmp_path):
    put(tmp_path, pem(days_left=60))
    lines = {"a.example.com": "a.example.com", "b.example.com": "a.example.com"}
    plan = redirecting(tmp_path, lines, live={"a.example.com": "a.example.com"},
                       served=StoredCert("n", "Used", 0x1234, frozenset(DOMAINS))).plan()
    assert plan.redirect == {"b.example.com": "a.example.com"} and not plan.reason


def test_no_redirect_without_a_certificate_while_orders_back_off(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "a.example.com.json").write_text(json.dumps({"failures": 1, "next_attempt": time.time() + 300}))
    plan = redirecting(tmp_path, {"a.example.com": "a.example.com"}).plan()
    assert plan.backoff and plan.redirect == {} and plan.unredirect == {"a.example.com"}


def test_absent_stops_redirecting_before_it_removes(tmp_path):
    s = redirecting(tmp_path, {"a.example.com": "a.example.com", "b.example.com": "a.example.com"}, state="absent",
                    audit_log=str(tmp_path / "audit.jsonl"))
    plan = s.plan()
    assert plan.unredirect == {"a.example.com", "b.example.com"}
    assert plan.actions() == ["stop redirecting plain HTTP to HTTPS for a.example.com, b.example.com (maps/https.map)"]
    s.apply(plan)
    assert s.redirects.applied == [({}, {"a.example.com", "b.example.com"})]


def test_a_delivery_that_fails_redirects_nothing(tmp_path, monkeypatch):
    import pytest

    from ansible_collections.rotor.vps.plugins.module_utils._certbot_site import SiteError

    s = redirecting(tmp_path)
    plan = s.plan()

    def fail(reason):
        raise SiteError("certbot could not get a certificate", step="order")

    monkeypatch.setattr(s, "_order", fail)
    with pytest.raises(SiteError):
        s.apply(plan)
    assert s.redirects.applied == []


def test_an_haproxy_without_the_map_fails_the_redirect_step_naming_the_option(tmp_path):
    import pytest

    from ansible_collections.rotor.vps.plugins.module_utils._certbot_site import SiteError
    from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import HaproxyError

    put(tmp_path, pem(days_left=60))
    s = redirecting(tmp_path, served=StoredCert("n", "Used", 0x1234, frozenset(DOMAINS)))

    def unknown(runtime, updates, removals):
        raise HaproxyError("Unknown map identifier")

    s.redirects.apply = unknown
    with pytest.raises(SiteError, match="the certificate is served, but HAProxy's maps/https.map could not be changed "
                                        r"\(Unknown map identifier\).*https_redirect: false") as failed:
        s.apply(s.plan())
    assert failed.value.step == "redirect"


def test_a_certificate_the_runtime_api_refuses_is_loaded_by_one_reload(tmp_path, monkeypatch):
    from ansible_collections.rotor.vps.plugins.module_utils import _certbot_site
    from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import HaproxyError

    new = pem(days_left=90, serial=0x5678)
    reloads = []

    class Refusing(Stores):
        def install(self, name, pem_text, crt_list):
            raise HaproxyError("HAProxy refused 'set ssl cert': Unknown command")

    s = site(tmp_path, audit_log=str(tmp_path / "audit.jsonl"))
    s.stores = Refusing(served=StoredCert("n", "Used", 0x5678, frozenset(DOMAINS)))
    s.reload = lambda done, what: reloads.append((done(), what))
    monkeypatch.setattr(_certbot_site, "atomic_write", lambda path, data, **kw: open(path, "w").write(data))
    monkeypatch.setattr(s, "_verify", lambda serial: None)
    (tmp_path / "certs").mkdir()
    assert s._deliver(new, "no certificate yet")["how"] == "reloaded"  # pylint: disable=protected-access
    assert reloads and reloads[0][0] is True and "serial 5678" in reloads[0][1]
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a.get("how")) for a in audit] == [("reload", None), ("deliver", "reloaded")]
    assert "Unknown command" in audit[0]["reason"]
