"""The Docker API broker (rotor.vps.socket_proxy) of the whole platform: read-only, and nothing else gets through.

The module continues on the stack test_observability.py converged on the data VPS (every role: the broker
with cAdvisor behind it, and every other container a VPS runs), or converges it the same way when it runs
alone. A check-mode converge of the role changes nothing. Then, from inside the VPS: every request of the
table in files/docker_api_probe.py (other methods on the allowed paths, exec, archive, export and the other
endpoints, encoded and double-encoded paths, traversal, query strings an endpoint does not take, missing,
wrong, case-changed or doubled tokens, a token in the query string, HTTP/1.0 without Host, a body on GET,
cAdvisor's port from the wrong network, ...) is denied by the broker itself (its own error page, so the
engine never saw it) and the engine records nothing but the containers' health checks while they are sent;
the allowed ones answer 200 with the engine's data. All of them are sent by one Python process in one
`docker exec`. Containers on the broker's networks reach it by name, one on another network does not; the
broker is the only container that mounts the socket (one that sees its file under the host's / cannot open
it), and it runs hardened as the image's user with the socket's group. A new token going live by a reload is
test_credentials.py's (every secret changed at once).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time

import pytest
import yaml

from conftest import ROOT
from test_observability import full_stack

PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "socket_proxy.yml"
PROBE = ROOT / "tests" / "integration" / "files" / "docker_api_probe.py"
# After test_observability.py, on the stack it converged; test_credentials.py continues on it after this one.
RUN_LAST_IN_TIER = 2
CONTINUES_ON = "full_stack"
BROKER = "rotor-docker-api"
NETWORK = "docker_api"
CADVISOR_NETWORK = "docker_api_cadvisor"
CLIENT_IMAGE = "busybox:1.37"


class Broker:
    """The full stack's broker on the data VPS, with the token it takes."""

    def __init__(self, vps, settings_file):
        self.vps = vps
        self.settings_file = settings_file
        self.token = dict(yaml.safe_load(vps.vars_file.read_text()), **yaml.safe_load(settings_file.read_text()))[
            "socket_proxy_token"]

    def converge(self, *args: str):
        return self.vps.playbook(str(PLAYBOOK), "-e", "@%s" % self.vps.vars_file, "-e", "@%s" % self.settings_file, *args)

    def address(self, network: str) -> str:
        return self.vps.sh("docker inspect -f '{{(index .NetworkSettings.Networks \"%s\").IPAddress}}' %s"
                           % (network, BROKER)).stdout.strip()

    def inspect(self, name: str = BROKER) -> dict:
        return json.loads(self.vps.sh("docker inspect %s" % name).stdout)[0]

    def client(self, network: str, url: str, token: str | None = None) -> str:
        """busybox wget from a container on ``network``: the answer's body, or its error."""
        header = "--header %s " % shlex.quote("Authorization: Bearer " + token) if token else ""
        proc = self.vps.sh("docker run --rm --network %s --entrypoint busybox %s wget -q -T 5 -O - %s%s 2>&1"
                           % (network, CLIENT_IMAGE, header, shlex.quote(url)))
        return proc.stdout


@pytest.fixture(scope="module")
def broker(data_vps, collection_snapshot):
    vps = data_vps
    broker = Broker(vps, full_stack(vps))
    pulled = vps.sh("docker pull -q %s" % CLIENT_IMAGE)
    assert pulled.returncode == 0, pulled.stderr
    copy = subprocess.run(["docker", "cp", str(PROBE), "%s:/root/docker_api_probe.py" % vps.name],
                          check=False, capture_output=True, text=True)
    assert copy.returncode == 0, copy.stderr
    yield broker
    vps.sh("rm -f /root/docker_api_probe.py /root/broker-token")


def test_check_mode_on_the_converged_host_changes_nothing(broker):
    # A second apply changing nothing is molecule's idempotence step (site.yml runs this role).
    run = broker.converge("--check", "--diff")
    assert run.rc == 0, run.output[-3000:]
    assert "rotor.vps.socket_proxy" in run.output and run.recap(broker.vps.name)["changed"] == 0, run.output[-3000:]
    assert broker.token not in run.output


def test_the_broker_runs_hardened_and_alone_mounts_the_socket(broker):
    info = broker.inspect()
    host = info["HostConfig"]
    socket_gid = broker.vps.sh("stat -c %g /var/run/docker.sock").stdout.strip()
    assert info["Config"]["User"] == "99:99" and host["GroupAdd"] == [socket_gid]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["Memory"] == 64 * 1024**2 and host["NanoCpus"] == 250_000_000 and host["PidsLimit"] == 32
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    assert not host["PortBindings"] and info["State"]["Health"]["Status"] == "healthy"
    assert sorted(info["NetworkSettings"]["Networks"]) == [NETWORK, CADVISOR_NETWORK]
    for network in (NETWORK, CADVISOR_NETWORK):
        assert broker.inspect(network)["Internal"] is True
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/var/run/docker.sock"]["RW"] is False
    assert mounts["/usr/local/etc/haproxy"]["RW"] is False
    listing = broker.vps.sh("stat -c '%U %g %a %n' /etc/rotor/socket_proxy /etc/rotor/socket_proxy/*").stdout.split("\n")
    assert listing[:3] == ["root 99 750 /etc/rotor/socket_proxy", "root 99 640 /etc/rotor/socket_proxy/haproxy.cfg",
                           "root 99 640 /etc/rotor/socket_proxy/tokens.lst"]
    # No other container of the stack mounts the socket or a directory holding it. One that sees the socket's file
    # under the host's whole / (node-exporter: / with what is mounted below it, /run included) cannot open it: not
    # root, and not in the socket's group (root:docker 0660). cAdvisor's / is bound without /run (non-recursive).
    others = json.loads(broker.vps.sh("docker inspect $(docker ps -aq)").stdout)
    assert len(others) >= 14
    for info in others:
        if info["Name"] == "/" + BROKER:
            continue
        host = info["HostConfig"]
        mounts = [(m["Source"], (m.get("BindOptions") or {}).get("NonRecursive", False)) for m in host.get("Mounts") or []]
        mounts += [(bind.split(":")[0], False) for bind in host.get("Binds") or []]
        sources = [source for source, _non_recursive in mounts]
        assert not set(sources) & {"/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run"}, info["Name"]
        if ("/", False) in mounts:
            uid, _sep, gid = info["Config"]["User"].partition(":")
            assert uid not in ("", "0", "root") and socket_gid not in [gid] + (host["GroupAdd"] or []), info["Name"]


def _events(vps, since: float, until: float) -> list[dict]:
    text = vps.sh("docker events --since %.3f --until %.3f --format '{{json .}}'" % (since, until)).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _health_checks(vps) -> set[str]:
    """Each running container's health check, as the engine's exec events name it ("exec_start: <command>")."""
    commands = set()
    for c in json.loads(vps.sh("docker inspect $(docker ps -q)").stdout):
        test = (c["Config"].get("Healthcheck") or {}).get("Test") or []
        if test[:1] == ["CMD"]:
            commands.add(" ".join(test[1:]))
        elif test[:1] == ["CMD-SHELL"]:
            commands.add(" ".join(c["Config"].get("Shell") or ["/bin/sh", "-c"]) + " " + test[1])
    return commands


def _state(vps) -> str:
    return vps.sh("docker ps -a --no-trunc --format '{{.ID}} {{.Names}} {{.State}}' | sort; docker images -q | sort; "
                  "docker network ls -q | sort; docker volume ls -q | sort").stdout


def test_every_denied_request_is_denied_and_the_allowed_ones_answer(broker):
    vps = broker.vps
    assert vps.sh("umask 077 && printf %%s %s > /root/broker-token" % shlex.quote(broker.token)).returncode == 0
    before = _state(vps)
    since = time.time()
    proc = vps.sh("python3 /root/docker_api_probe.py --address %s --cadvisor-address %s --token-file /root/broker-token "
                  "--container %s --network %s" % (broker.address(NETWORK), broker.address(CADVISOR_NETWORK), BROKER,
                                                   NETWORK))
    until = time.time() + 1
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    denied = [a for a in answers if a["expect"] == "deny"]
    allowed = {a["id"]: a for a in answers if a["expect"] == "allow"}
    assert len(denied) >= 200, len(denied)
    # Denied by the broker: its own error page (the engine answers JSON), 403, or 400 for what HAProxy
    # does not parse as a request at all (CONNECT to a path, a control character, a backslash).
    wrong = ["%s: %s %s" % (a["id"], a["status"], a["body"][:80]) for a in denied
             if not (a["status"] == 403 and "<h1>403 Forbidden</h1>" in a["body"]
                     or a["status"] == 400 and "<h1>400 Bad request</h1>" in a["body"])]
    assert not wrong, "%d of %d not denied:\n%s" % (len(wrong), len(denied), "\n".join(wrong))
    print("\n%d requests denied (%d answered 400), %d allowed" % (
        len(denied), sum(a["status"] == 400 for a in denied), len(allowed)))
    # The engine recorded nothing but the containers' health checks while the requests were sent.
    checks = _health_checks(vps)
    events = [e for e in _events(vps, since, until)
              if not (e.get("Action", "").split(": ", 1)[0] in ("exec_create", "exec_start")
                      and e["Action"].split(": ", 1)[1] in checks
                      or e.get("Action", "").startswith("health_status") or e.get("Action") == "exec_die")]
    assert not events, events
    assert _state(vps) == before
    # The allowed ones answer 200 with the engine's data.
    failed = [(case_id, a["status"]) for case_id, a in allowed.items() if a["status"] != 200]
    assert not failed, failed
    assert allowed["GET /_ping"]["body"] == "OK"
    assert allowed["HEAD /_ping"]["body"] == ""
    engine = vps.sh("docker version -f '{{.Server.APIVersion}}'").stdout.strip()
    assert '"ApiVersion":"%s"' % engine in allowed["GET /version"]["body"]
    assert '"Containers":' in allowed["GET /info"]["body"]
    assert '"/%s"' % BROKER in allowed["GET /containers/json"]["body"]
    assert '"Name":"/%s"' % BROKER in allowed["GET /containers/%s/json" % BROKER]["body"]
    assert '"Name":"%s"' % NETWORK in allowed["GET /networks/%s" % NETWORK]["body"]
    assert '"Name":"%s"' % NETWORK in allowed["GET /networks"]["body"]
    assert '"/%s"' % BROKER in allowed["cadvisor GET /v1.40/containers/%s/json" % BROKER]["body"]


def test_containers_reach_the_broker_by_name_from_its_networks_only(broker):
    url = "http://%s:2375/_ping" % BROKER
    assert broker.client(NETWORK, url, broker.token) == "OK"
    assert "403" in broker.client(NETWORK, url)
    # cAdvisor's port answers containers on cAdvisor's network, and no one else.
    assert '"ApiVersion"' in broker.client(CADVISOR_NETWORK, "http://%s:2376/v1.40/version" % BROKER)
    assert "403" in broker.client(NETWORK, "http://%s:2376/v1.40/version" % BROKER)
    assert "403" in broker.client(CADVISOR_NETWORK, "http://%s:2376/containers/json" % BROKER)
    # Containers on the platform's other networks do not reach it at all.
    assert "OK" not in broker.client("app", url, broker.token)
