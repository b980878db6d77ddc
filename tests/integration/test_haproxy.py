"""The haproxy role on a real (lab) server: idempotency, validation before going live, hitless
reloads under load, routes and servers changed at runtime, stats, metrics, TLS, rate limit.

All traffic goes to the VPS's 127.0.0.1, to HAProxy's own addresses or comes from containers the
tests start; every load loop is bounded in requests and seconds.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from batch import run_cases

CFG = "/etc/rotor/haproxy/haproxy.cfg"
CONF_D = "/etc/rotor/haproxy/conf.d"
MAP = "/etc/rotor/haproxy/maps/hosts.map"
MAP_IN_CONTAINER = "/usr/local/etc/haproxy/maps/hosts.map"


@pytest.fixture(scope="module")
def web(edge_vps):
    """A demo web container on the app network, the one server of backend "test" (in its file, as
    the haproxy_rotate module writes it), routed from test.lab.test; HAProxy reloaded to read it."""
    address = edge_vps.start_web("test-web-1")
    edge_vps.sh(
        "printf 'backend test from test-settings\\n    server web1 %s:8080 check inter 1s rise 1 fall 3\\n' > %s/test.cfg"
        " && echo 'test.lab.test test' > %s" % (address, CONF_D, MAP)
    )
    assert edge_vps.master("reload").startswith("Success=1")
    for attempt in range(50):
        if _server_up(edge_vps, "test", "web1"):
            break
        edge_vps.sh("sleep 0.2")
    assert _server_up(edge_vps, "test", "web1"), edge_vps.runtime("show stat")
    return address


def _server_up(vps, backend: str, server: str) -> bool:
    for line in vps.runtime("show stat").splitlines():
        fields = line.split(",")
        if fields[:2] == [backend, server]:
            return fields[17] == "UP"
    return False


def test_second_converge_changes_nothing(edge_vps):
    assert edge_vps.first_converge.recap(edge_vps.name)["changed"] > 0
    run = edge_vps.converge()
    assert run.rc == 0, run.output[-3000:]
    assert run.recap(edge_vps.name)["changed"] == 0, run.output[-3000:]


def test_check_mode_on_a_converged_host_reports_nothing(edge_vps):
    run = edge_vps.converge("--check", "--diff")
    assert run.rc == 0, run.output[-3000:]
    assert run.recap(edge_vps.name)["changed"] == 0, run.output[-3000:]


def test_container_runs_as_specified(edge_vps):
    info = json.loads(edge_vps.sh("docker inspect rotor-haproxy").stdout)[0]
    assert info["Config"]["Image"] == "haproxy:3.0"
    assert info["Config"]["User"] == "haproxy"
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    cmd = " ".join(info["Config"]["Cmd"])
    assert cmd.startswith("haproxy -W -db ")
    assert cmd.endswith("-f /usr/local/etc/haproxy/haproxy.cfg -f /usr/local/etc/haproxy/conf.d")
    assert sorted(info["NetworkSettings"]["Networks"]) == ["app", "edge", "observability"]
    ports = info["HostConfig"]["PortBindings"]
    assert ports["80/tcp"][0]["HostPort"] == "80" and ports["443/tcp"][0]["HostPort"] == "443"
    assert ports["8404/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "8404"}]
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/usr/local/etc/haproxy"]["Source"] == "/etc/rotor/haproxy"
    assert mounts["/usr/local/etc/haproxy"]["RW"] is False
    assert mounts["/var/lib/rotor/haproxy/run"]["RW"] is True
    # uid 99 reads the configuration and the certificate, root owns them.
    listing = edge_vps.sh("stat -c '%u %g %a %n' /etc/rotor/haproxy /etc/rotor/haproxy/haproxy.cfg "
                          "/etc/rotor/haproxy/certs/default.pem /var/lib/rotor/haproxy/run").stdout.splitlines()
    assert listing == [
        "0 99 750 /etc/rotor/haproxy",
        "0 99 640 /etc/rotor/haproxy/haproxy.cfg",
        "0 99 640 /etc/rotor/haproxy/certs/default.pem",
        "99 99 770 /var/lib/rotor/haproxy/run",
    ]


def test_backend_files_and_named_defaults(edge_vps):
    cfg = edge_vps.sh("cat %s" % CFG).stdout
    # The named sections come last, after every frontend: the frontends keep the main defaults.
    assert cfg.rindex("frontend https") < cfg.index("defaults web-settings") < cfg.index("defaults test-settings")
    assert "http-check send meth GET uri /healthz" in cfg
    assert edge_vps.sh("cat %s/web.cfg" % CONF_D).stdout.splitlines()[-1] == "backend web from web-settings"
    assert edge_vps.sh("stat -c %%s %s" % MAP).stdout.strip() == "0"
    backends = edge_vps.runtime("show backend").split()
    assert {"web", "test", "rotor_no_route"} <= set(backends)


def test_runtime_socket_answers_show_info_from_the_host(edge_vps):
    info = edge_vps.runtime("show info")
    assert re.search(r"^Name: HAProxy$", info, re.M)
    assert re.search(r"^Version: 3\.0\.", info, re.M)
    socket = edge_vps.sh("stat -c '%a %u' /var/lib/rotor/haproxy/run/admin.sock").stdout.split()
    assert socket == ["660", "99"]


def test_unknown_host_gets_a_clean_404_with_security_headers(edge_vps):
    answer = edge_vps.http(host="nowhere.test")
    assert answer.status == 404
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "SAMEORIGIN"
    assert answer.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "strict-transport-security" not in answer.headers, "HSTS must never go out over plain HTTP"


def test_https_answers_with_the_self_signed_certificate(edge_vps):
    answer = edge_vps.http(host="nowhere.test", https=True)
    assert answer.status == 404
    assert answer.headers["strict-transport-security"] == "max-age=31536000"
    handshake = edge_vps.sh("curl -skv --max-time 10 -o /dev/null https://127.0.0.1/ 2>&1").stdout
    assert "ALPN: server accepted h2" in handshake
    assert "subject: CN=%s" % edge_vps.name in handshake
    old = edge_vps.sh("curl -sk --max-time 10 --tlsv1.1 --tls-max 1.1 -o /dev/null https://127.0.0.1/")
    assert old.returncode != 0, "TLS 1.1 was accepted"


def test_stats_page_needs_the_password(edge_vps):
    stats = "http://127.0.0.1:8404/"
    code = "curl -s -o /dev/null -w '%%{http_code}' --max-time 10 %s %s"
    assert edge_vps.sh(code % ("", stats)).stdout == "401"
    assert edge_vps.sh(code % ("-u admin:wrong", stats)).stdout == "401"
    password = edge_vps.variables["haproxy_stats_password"]
    assert edge_vps.sh(code % ("-u admin:%s" % password, stats)).stdout == "200"


def test_metrics_serve_haproxy_series(edge_vps):
    metrics = edge_vps.sh("curl -sf --max-time 10 http://127.0.0.1:8404/metrics").stdout
    assert re.search(r"^haproxy_process_start_time_seconds ", metrics, re.M)
    assert 'haproxy_backend_status{proxy="web",state="UP"}' in metrics


def test_route_and_server_added_at_runtime_serve_without_reload(edge_vps):
    address = edge_vps.start_web("test-web-runtime")
    pid = edge_vps.worker_pid()
    # What the haproxy_rotate module does: a server (check timings given explicitly: runtime
    # servers do not take default-server settings), its health check, then the route.
    assert "New server registered" in edge_vps.runtime(
        "add server web/runtime1 %s:8080 check inter 1s rise 1 fall 3" % address)
    edge_vps.runtime("enable health web/runtime1")
    edge_vps.runtime("enable server web/runtime1")
    edge_vps.runtime("add map %s runtime.lab.test web" % MAP_IN_CONTAINER)
    for attempt in range(50):
        if _server_up(edge_vps, "web", "runtime1"):
            break
        edge_vps.sh("sleep 0.2")
    answer = edge_vps.http(host="Runtime.Lab.Test:80")
    assert answer.status == 200, answer
    assert answer.body.startswith("hello from")
    assert "server" not in answer.headers, "the Server header of the web container leaks"
    assert edge_vps.worker_pid() == pid, "HAProxy was reloaded"


def test_reload_under_load_loses_no_request(edge_vps, web):
    pid = edge_vps.worker_pid()
    # 4 threads, a new connection per request, at most 20,000 requests or 14 seconds.
    edge_vps.sh("rm -f /root/load.json; nohup python3 /root/http_load.py 127.0.0.1 80 test.lab.test 20000 14 4"
                " > /root/load.json 2>&1 &")
    edge_vps.sh("sleep 2")
    answers = []
    for attempt in range(4):
        answers.append(edge_vps.master("reload"))
        edge_vps.sh("sleep 2.5")
    edge_vps.sh("for i in $(seq 1 40); do [ -s /root/load.json ] && break; sleep 0.5; done")
    result = json.loads(edge_vps.sh("cat /root/load.json").stdout)
    print("reload under load: %s" % result)
    for answer in answers:
        assert answer.startswith("Success=1"), answer
        assert "config :" not in answer, "HAProxy warned about the configuration: %s" % answer
    assert result["errors"] == {} and result["status"] == {}, result
    assert result["ok"] > 500, result
    assert edge_vps.worker_pid() != pid


def test_rate_limit_answers_429_past_the_limit(edge_vps, web):
    """From a container on the edge network (the VPS's own addresses are exempt in this inventory)."""
    limit = edge_vps.variables["haproxy_rate_limit_requests"]
    script = (
        "for i in $(seq 1 %d); do exec 3<>/dev/tcp/rotor-haproxy/80; "
        "printf 'GET / HTTP/1.1\\r\\nHost: test.lab.test\\r\\nConnection: close\\r\\n\\r\\n' >&3; "
        "head -n 1 <&3; exec 3<&-; done" % (limit + 20)
    )
    proc = edge_vps.sh("docker run --rm --network edge debian:trixie timeout 60 bash -c %s" % shlex.quote(script))
    codes = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("HTTP/")]
    assert len(codes) == limit + 20, proc.stdout + proc.stderr
    assert codes[:limit] == ["200"] * limit
    assert codes[limit:] == ["429"] * 20


def test_bad_configuration_is_refused_and_nothing_changes(edge_vps):
    before = edge_vps.digest(CFG, CONF_D + "/*.cfg")
    pid, started = edge_vps.worker_pid(), edge_vps.container_started_at()
    run = edge_vps.converge(haproxy_global_extra=["no-such-directive on"])
    assert run.rc != 0
    assert "unknown keyword 'no-such-directive' in 'global' section" in run.output, run.output[-3000:]
    assert run.recap(edge_vps.name)["changed"] == 0
    assert edge_vps.digest(CFG, CONF_D + "/*.cfg") == before
    assert (edge_vps.worker_pid(), edge_vps.container_started_at()) == (pid, started)
    assert edge_vps.http(host="test.lab.test").status == 200


# (case id, variables, words the error must contain)
BAD_INPUT = [
    ("port-out-of-range", {"haproxy_https_port": 70000}, ["haproxy_https_port", "70000", "from 1 to 65535"]),
    ("same-ports", {"haproxy_https_port": 80}, ["haproxy_https_port", "already haproxy_http_port"]),
    ("backend-name", {"haproxy_backends": [{"name": "my app"}]},
     ["haproxy_backends[0].name", "'my app'", "only letters, digits"]),
    ("backend-duplicate", {"haproxy_backends": [{"name": "web"}, {"name": "web"}]},
     ["haproxy_backends[1].name", "already used by haproxy_backends[0]"]),
    ("backend-reserved", {"haproxy_backends": [{"name": "stats"}]}, ["haproxy_backends[0].name", "reserved"]),
    ("health-path", {"haproxy_backends": [{"name": "web", "health_path": "healthz"}]},
     ["haproxy_backends[0].health_path", "must start with /"]),
    ("balance", {"haproxy_backends": [{"name": "web", "balance": "static-rr"}]},
     ["balance must be one of", "got: static-rr found in haproxy_backends"]),
    ("missing-password", {"haproxy_stats_password": ""}, ["haproxy_stats_password: required"]),
    ("rate-limit-negative", {"haproxy_rate_limit_requests": -5}, ["haproxy_rate_limit_requests", "-5"]),
    ("rate-limit-period", {"haproxy_rate_limit_period": "10 seconds"},
     ["haproxy_rate_limit_period", "'10 seconds'", "HAProxy time"]),
    ("exempt-network", {"haproxy_rate_limit_exempt_networks": ["10.0.0.0/33"]},
     ["haproxy_rate_limit_exempt_networks[0]", "10.0.0.0/33"]),
    ("publish-address", {"haproxy_stats_publish_address": "localhost"},
     ["haproxy_stats_publish_address", "'localhost'", "IPv4 or IPv6 address"]),
    ("extra-line-break", {"haproxy_frontend_extra": ["option foo\nbackend evil"]},
     ["haproxy_frontend_extra[0]", "without line breaks"]),
]


BAD_INPUT_PATHS = "%s %s/*.cfg %s /etc/rotor/haproxy/certs/default.pem" % (CFG, CONF_D, MAP)


@pytest.fixture(scope="module")
def bad_input(edge_vps, tmp_path_factory):
    """Every BAD_INPUT case on the edge VPS, in as few runs as keep each case's result its own
    (tests/integration/batch.py), with HAProxy's files and worker before and after."""
    before = (edge_vps.digest(BAD_INPUT_PATHS), edge_vps.worker_pid())
    cases = {case: dict(edge_vps.variables, **variables) for case, variables, _words in BAD_INPUT}
    results = run_cases(edge_vps, edge_vps.PLAYBOOK, cases, tmp_path_factory.mktemp("cases"), timeout=300)
    return before, results, (edge_vps.digest(BAD_INPUT_PATHS), edge_vps.worker_pid())


@pytest.mark.parametrize("case,variables,words", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_fails_before_any_change(edge_vps, bad_input, case, variables, words):
    before, results, after = bad_input
    result = results[case]
    assert result.failed, result.output[-2000:]
    for word in words:
        assert word in result.message, "%r not in the error:\n%s" % (word, result.message)
    assert "password: lab" not in result.output and edge_vps.variables["haproxy_stats_password"] not in result.output
    assert result.changed == 0
    assert result.plays == ["Check the inventory"], "a role ran after the input check failed: %s" % result.plays
    assert after == before


def test_removed_backend_and_new_settings_apply_by_a_reload(edge_vps):
    """One run: backend "test" leaves, the HTTP to HTTPS redirect and the TCP runtime listener come."""
    changes = {"haproxy_backends": [{"name": "web", "health_path": "/healthz"}],
               "haproxy_https_redirect": True, "haproxy_runtime_tcp_port": 9999}
    pid, started = edge_vps.worker_pid(), edge_vps.container_started_at()
    run = edge_vps.converge(**changes)
    assert run.rc == 0, run.output[-3000:]
    assert "RUNNING HANDLER [rotor.vps.haproxy : Reload haproxy]" in run.output
    assert edge_vps.worker_pid() != pid
    assert edge_vps.container_started_at() == started, "the container was restarted instead of reloaded"

    assert edge_vps.sh("test -e %s/test.cfg" % CONF_D).returncode != 0
    assert "test-settings" not in edge_vps.sh("cat %s" % CFG).stdout
    assert "test" not in edge_vps.runtime("show backend").split()
    # The route to the removed backend now ends in the clean 404 (here: after the redirect).
    assert edge_vps.http(host="test.lab.test", https=True).status == 404

    moved = edge_vps.http("/page?x=1", host="Shop.Example.test")
    assert moved.status == 301
    assert moved.headers["location"] == "https://Shop.Example.test/page?x=1"
    assert edge_vps.http("/.well-known/acme-challenge/token", host="shop.example.test").status == 404

    # The TCP runtime API answers inside the container's network namespace only.
    inside = edge_vps.sh("docker exec rotor-haproxy bash -c "
                         "'exec 3<>/dev/tcp/127.0.0.1/9999; echo show info >&3; cat <&3'")
    assert "Name: HAProxy" in inside.stdout, inside
    address = edge_vps.sh("docker inspect -f '{{(index .NetworkSettings.Networks \"app\").IPAddress}}' rotor-haproxy")
    outside = edge_vps.sh("timeout 5 bash -c 'exec 3<>/dev/tcp/%s/9999'" % address.stdout.strip())
    assert outside.returncode != 0, "the TCP runtime API is reachable from outside the container"

    again = edge_vps.converge(**changes)
    assert again.recap(edge_vps.name)["changed"] == 0, again.output[-3000:]
