"""Fixtures for integration tests against real lab services (tests/README.md says more).

Servers are lab VPS containers (tests/lab/lab vps-run), reached by ansible-playbook over SSH (reach.py),
exactly as a real server would be. ``fresh_vps``: a bare VPS of its own (no Docker), for one module.
``edge_vps`` and ``data_vps``: one engine-ready VPS per tier, converged once and shared by the tier's
modules in turn, each starting from that baseline (checked by fingerprint). A module that left the VPS
otherwise is followed by a reset: what tests made goes and the roles' files kept from the first converge come
back; if that is not enough, the tier's playbook converges again, and if that is not either, a fresh VPS.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import reach
from haproxy_helpers import HaproxyHelpers

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "tests" / "lab" / "lab"
LAB_VARS = ROOT / "inventories" / "lab" / "group_vars" / "vps.yml"
# The collection's pure helpers are importable as ansible_collections.rotor.vps (the `collection` target's link).
COLLECTIONS = ROOT / ".cache" / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
# Disposable VPS names start with this (engineers sharing one engine set their own prefix).
TEST_PREFIX = os.environ.get("ROTOR_TEST_PREFIX", "rotor-test")
# The ansible-playbook of the environment running the tests, whatever PATH says.
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class PlaybookRun:
    rc: int
    output: str

    def recap(self, host: str) -> dict[str, int]:
        match = re.search(re.escape(host) + r"\s*:\s*(.*)", self.output)
        assert match, "no PLAY RECAP line for %s in:\n%s" % (host, self.output[-3000:])
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


class LabVps:
    """A fresh lab VPS container and helpers to run playbooks and commands against it."""

    def __init__(self, name: str, suite: str, tmp: Path):
        self.name = name
        self.suite = suite
        self.inventory = tmp / "hosts.yml"
        self.inventory.write_text(yaml.safe_dump({"vps": {"hosts": {name: reach.host_vars(name)}}}))

    def sh(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "exec", self.name, "sh", "-c", command], capture_output=True, text=True, timeout=120, check=False
        )

    def signal(self, signal: str, containers: str) -> subprocess.CompletedProcess:
        """``signal`` (``USR1``...) to the main process of each container ``containers`` names (names or a shell
        ``$(docker ps -q ...)``), as the collection sends it: kill(2), never ``docker kill -s``, after which
        Docker counts a container as stopped by hand and restarts it neither after a crash nor at boot."""
        return self.sh("for pid in $(docker inspect -f '{{.State.Pid}}' %s); do [ \"$pid\" -gt 0 ] && kill -s %s \"$pid\"; "
                       "done" % (containers, signal))

    def playbook(self, playbook: str, *args: str, extra_vars: Path | None = None, timeout: int = 900) -> PlaybookRun:
        cmd = [ANSIBLE_PLAYBOOK, "-i", str(self.inventory), str(ROOT / "playbooks" / playbook), *args]
        if extra_vars:
            cmd += ["-e", "@%s" % extra_vars]
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False)
        return PlaybookRun(proc.returncode, proc.stdout + proc.stderr)

    def snapshot(self) -> str:
        """What a run could have changed: installed packages, /etc/docker, Docker's objects."""
        return self.sh(
            "dpkg-query -W -f '${Package} ${Version}\\n' | sha256sum; "
            "ls -la --time-style=+%s /etc/docker 2>&1; cat /etc/docker/daemon.json 2>&1; "
            "command -v docker >/dev/null && docker network ls -q --no-trunc && docker volume ls -q; true"
        ).stdout


@pytest.fixture(scope="module")
def fresh_vps(tmp_path_factory) -> LabVps:
    """A lab VPS as a cloud provider hands it over: systemd, python3, no Docker."""
    if not _docker_answers():
        pytest.fail("no Docker engine answers; run the tests through `make test`, which starts the lab")
    name = "rotor-test-%s" % uuid.uuid4().hex[:8]
    subprocess.run([str(LAB), "vps-run", name, "trixie"], check=True)
    try:
        yield LabVps(name, "trixie", tmp_path_factory.mktemp(name))
    finally:
        subprocess.run([str(LAB), "vps-rm", name], check=False)


# The edge_vps inventory: the lab's, with fixed subnets (so tests know the addresses), a second
# backend for tests, and a rate limit tests can reach. Requests from the VPS itself (through the
# published ports or straight to HAProxy's addresses) come from the bridges' gateways, and requests
# from this machine from the VPS's default gateway (added by the fixture): all exempt, so only
# containers on the VPS's networks meet the limit.
EDGE_VARS = {
    "networks_list": [
        {"name": "edge", "internal": False, "subnet": "10.231.0.0/24"},
        {"name": "app", "internal": False, "subnet": "10.231.1.0/24"},
        {"name": "data", "internal": True, "subnet": "10.231.2.0/24"},
        {"name": "observability", "internal": True, "subnet": "10.231.3.0/24"},
    ],
    "haproxy_backends": [
        {"name": "web", "health_path": "/healthz"},
        {"name": "test", "health_path": "/healthz", "check_interval": "1s", "check_rise": 1},
    ],
    "haproxy_rate_limit_requests": 50,
    "haproxy_rate_limit_period": "30s",
    "haproxy_rate_limit_exempt_networks": ["10.231.0.1", "10.231.1.1", "10.231.3.1"],
}


class ConvergedVps(LabVps):
    """A lab VPS converged by one playbook (``PLAYBOOK``) with the fixture's variables (``vars_file``).

    ``TOOLS`` (name -> path on this machine) are copied to /root/ in the VPS by install_tools().
    """

    PLAYBOOK: Path
    TOOLS: dict[str, Path] = {}
    # The directories of the tier's roles' files, kept after the first converge (in SAVED) for resets.
    SAVED_DIRS: tuple[str, ...] = ()
    SAVED = "/root/rotor-baseline.tar"

    def __init__(self, name: str, suite: str, tmp: Path):
        super().__init__(name, suite, tmp)
        self.tmp = tmp
        self.vars_file = tmp / "vars.yml"
        # What a module left for the next one to continue on (CONTINUES_ON), by name; a reset clears it.
        self.marks: dict = {}

    def install_tools(self) -> None:
        """Copy the fixture's tools to /root/ in the VPS."""
        for name, path in self.TOOLS.items():
            subprocess.run(["docker", "cp", str(path), "%s:/root/%s" % (self.name, name)], check=True)

    def after_first_converge(self) -> None:
        """Keep ``SAVED_DIRS`` as the first converge left them: a reset puts them back."""
        proc = self.sh("tar -C / -cpf %s %s" % (self.SAVED, " ".join(d.lstrip("/") for d in self.SAVED_DIRS)))
        assert proc.returncode == 0, proc.stderr

    def restore_files(self) -> None:
        """``SAVED_DIRS`` as the first converge left them: emptied (not replaced: containers mount them) and
        filled from what after_first_converge kept. The services still run on what they last loaded."""
        proc = self.sh("for d in %s; do find \"$d\" -mindepth 1 -delete || exit 1; done; tar -C / -xpf %s"
                       % (" ".join(self.SAVED_DIRS), self.SAVED))
        assert proc.returncode == 0, proc.stderr

    def containers(self) -> str:
        """Every container, one line each: name, image, state and a digest of how it was made (its
        configuration and the host's side: limits, mounts, ports...), so a container a converge with other
        settings replaced differs even under the same name."""
        ids = self.sh("docker ps -aq").stdout.split()
        lines = []
        for c in json.loads(self.sh("docker inspect %s" % " ".join(ids)).stdout) if ids else []:
            # Empty values left out: a restarted daemon shows some unset ones as [] where they were null.
            made = [{k: v for k, v in part.items() if v not in (None, [], {}, "") and k != "Hostname"}
                    for part in (c["Config"], c["HostConfig"])] + [sorted(c["NetworkSettings"]["Networks"])]
            digest = hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()[:16]
            lines.append("%s %s %s %s" % (c["Name"].lstrip("/"), c["Config"]["Image"], c["State"]["Status"], digest))
        return "\n".join(sorted(lines)) + "\n"

    def fingerprint(self) -> str:
        """What the tier's tests may change, as text: equal to the baseline's means nothing was left behind."""
        raise NotImplementedError

    def reset(self) -> None:
        """Remove what test modules made, put ``SAVED_DIRS`` back and have the services load them."""
        raise NotImplementedError

    def reconverge(self) -> None:
        """Converge again with the fixture's variables (after a reset that was not enough)."""
        run = self.converge("--skip-tags", "platform")
        assert run.rc == 0, "converging %s again failed:\n%s" % (self.name, run.output[-3000:])

    def converge(self, *args: str, timeout: int = 900, **overrides) -> PlaybookRun:
        """Run the fixture's playbook with its variables, then ``overrides`` on top."""
        extra = ["-e", "@%s" % self.vars_file]
        if overrides:
            path = self.tmp / ("overrides-%s.yml" % uuid.uuid4().hex[:8])
            path.write_text(yaml.safe_dump(overrides))
            extra += ["-e", "@%s" % path]
        return self.playbook(str(self.PLAYBOOK), *extra, *args, timeout=timeout)


class EdgeVps(HaproxyHelpers, ConvergedVps):
    """A lab VPS converged with docker_host, networks and haproxy (tests/integration/playbooks/edge.yml).

    Helpers (HaproxyHelpers) talk to HAProxy; ``start_web`` starts web containers for backends.
    """

    PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "edge.yml"
    TOOLS = HaproxyHelpers.HAPROXY_TOOLS
    SAVED_DIRS = (HaproxyHelpers.CONFIG_DIR,)

    def __init__(self, name: str, suite: str, tmp: Path):
        super().__init__(name, suite, tmp)
        self.variables = dict(yaml.safe_load(LAB_VARS.read_text()), **EDGE_VARS)
        gateway = self.sh("ip -4 route show default").stdout.split()
        self.variables["haproxy_rate_limit_exempt_networks"] = (
            EDGE_VARS["haproxy_rate_limit_exempt_networks"] + gateway[2:3])
        self.vars_file = tmp / "edge-vars.yml"
        self.vars_file.write_text(yaml.safe_dump(self.variables))

    def fingerprint(self) -> str:
        """HAProxy's files and live backends and routes, the containers, units, networks and volumes."""
        return self.haproxy_fingerprint() + self.containers() + self.sh(
            "ls /etc/systemd/system | grep '^rotor-'; ls /etc/rotor; "
            "docker network ls --format '{{.Name}} {{.Driver}}' | sort; docker volume ls -q | sort; true").stdout

    def reset(self) -> None:
        """Containers other than HAProxy, rotation timers and state go; HAProxy's files come back and it
        reloads them, which drops runtime changes."""
        proc = self.sh(
            "for c in $(docker ps -a --format '{{.Names}}'); do [ \"$c\" = %s ] || docker rm -f \"$c\" >/dev/null; done; "
            "for unit in $(ls /etc/systemd/system | grep '^rotor-rotate-'); do systemctl disable --now \"$unit\" "
            ">/dev/null 2>&1; rm -f \"/etc/systemd/system/$unit\"; done; systemctl daemon-reload; "
            "rm -rf /etc/rotor/rotation /var/log/rotor/rotation.jsonl /var/lib/rotor/metrics/rotation_*.prom"
            % self.CONTAINER)
        assert proc.returncode == 0, proc.stderr
        self.restore_files()
        assert "Success=1" in self.master("reload"), "HAProxy did not reload after the reset"

    def container_started_at(self) -> str:
        return self.sh("docker inspect -f '{{.State.StartedAt}}' %s" % self.CONTAINER).stdout.strip()

    def start_web(self, name: str, *, image: str = "rotor-lab/demo-web:1", network: str = "app") -> str:
        """Start a demo web container (port 8080) on ``network`` and return its address there."""
        self.sh("docker rm -f %s" % name)
        proc = self.sh("docker run -d --name %s --network %s --read-only --tmpfs /tmp %s" % (name, network, image))
        assert proc.returncode == 0, proc.stderr
        return self.sh("docker inspect -f '{{(index .NetworkSettings.Networks \"%s\").IPAddress}}' %s"
                       % (network, name)).stdout.strip()

    def digest(self, *paths: str) -> str:
        """sha256sum of files in the VPS (a missing file shows as an error line, which differs too)."""
        return self.sh("sha256sum %s 2>&1" % " ".join(paths)).stdout


def _start_vps(kind: str, image: str = "vps") -> str:
    """Start a trixie lab VPS from ``image`` (vps: bare; vps-engine: engine installed) and return its name."""
    if not _docker_answers():
        pytest.fail("no Docker engine answers; run the tests through `make test`, which starts the lab")
    name = "%s-%s-%s" % (TEST_PREFIX, kind, uuid.uuid4().hex[:8])
    subprocess.run([str(LAB), "vps-run", name, "trixie", image], check=True)
    return name


def _remove_vps(name: str) -> None:
    subprocess.run([str(LAB), "vps-rm", name], check=False)


class SharedVps:
    """One lab VPS of a tier (``cls``: EdgeVps or DataVps) that the tier's test modules use in turn.

    Started from the engine-ready image and converged with the tier's playbook on first use; the
    fingerprint taken then is the baseline every module starts from (``checkout``). The VPS is
    removed after the last module that uses it (``release``), or at the end of the session.
    """

    def __init__(self, cls: type, kind: str, tmp_path_factory):
        self.cls = cls
        self.kind = kind
        self.tmp_path_factory = tmp_path_factory
        self.vps: ConvergedVps | None = None
        self.baseline = ""

    def _create(self) -> ConvergedVps:
        name = _start_vps(self.kind, "vps-engine")
        try:
            vps = self.cls(name, "trixie", self.tmp_path_factory.mktemp(name))
            run = vps.converge()
            assert run.rc == 0, run.output[-4000:]
            vps.first_converge = run
            vps.install_tools()
            vps.after_first_converge()
        except BaseException:
            _remove_vps(name)
            raise
        self.baseline = vps.fingerprint()
        return vps

    def checkout(self, keep: str = "") -> ConvergedVps:
        """The VPS in its baseline state: as converged, or reset to it, or a fresh one. With ``keep``, the name of
        a mark the previous module left in ``vps.marks``: when it is there, the VPS as that module left it."""
        if self.vps is None:
            self.vps = self._create()
            return self.vps
        if keep and keep in self.vps.marks:
            return self.vps
        now = self.vps.fingerprint()
        if now == self.baseline:
            return self.vps
        print("\n%s: the VPS differs from its baseline; resetting it" % self.vps.name)
        self.vps.marks.clear()
        self.vps.reset()
        now = self.vps.fingerprint()
        if now != self.baseline:
            print("%s: still not the baseline after the reset; converging it again" % self.vps.name)
            self.vps.reconverge()
            now = self.vps.fingerprint()
        if now != self.baseline:
            diff = "\n".join(difflib.unified_diff(self.baseline.splitlines(), now.splitlines(), lineterm=""))
            print("%s: still not the baseline after converging again; starting a fresh VPS. Difference:\n%s"
                  % (self.vps.name, diff))
            self.release()
            self.vps = self._create()
        return self.vps

    def release(self) -> None:
        if self.vps is not None:
            _remove_vps(self.vps.name)
            self.vps = None


def pytest_configure(config):
    config.addinivalue_line("markers", "quick: part of `make test-quick`, the few-minute subset for the edit-test loop")


# Fixtures of shared VPSs, by tier. A test module belongs to the tier whose fixture it uses
# (directly or through its own fixtures); pytest_collection_modifyitems runs each tier's modules
# together and notes the last one, after which the VPS goes.
SHARED_TIERS = ("edge_vps", "data_vps")


def _tier_of(item) -> str:
    return next((tier for tier in SHARED_TIERS if tier in item.fixturenames), "")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Run the modules of each shared tier one after the other (fresh-VPS modules first, and a module
    that sets ``RUN_LAST_IN_TIER = 1`` after its tier's others: it leaves what no reset undoes
    cheaply; those that set 2, 3 ... after it, in that order); each module's order and test ids stay."""
    rank = {"": 0, **{tier: index + 1 for index, tier in enumerate(SHARED_TIERS)}}
    modules: dict[str, int] = {}
    last: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        modules[module] = max(modules.get(module, 0), rank[_tier_of(item)])
        last[module] = int(getattr(item.module, "RUN_LAST_IN_TIER", 0))
    order = {module: position for position, module in enumerate(modules)}
    items.sort(key=lambda item: (modules[item.nodeid.split("::")[0]], last[item.nodeid.split("::")[0]],
                                 order[item.nodeid.split("::")[0]]))
    config.rotor_last_module = {}
    for item in items:
        tier = _tier_of(item)
        if tier:
            config.rotor_last_module[tier] = item.nodeid.split("::")[0]


@pytest.fixture(scope="session")
def _shared(tmp_path_factory):
    pools = {"edge_vps": SharedVps(EdgeVps, "edge", tmp_path_factory),
             "data_vps": SharedVps(DataVps, "data", tmp_path_factory)}
    try:
        yield pools
    finally:
        for pool in pools.values():
            pool.release()


def _tier_fixture(request, tier: str):
    pool = request.getfixturevalue("_shared")[tier]
    # A module with ``CONTINUES_ON = "<mark>"`` continues on what the tier's previous module left, when that
    # module put the mark in ``vps.marks`` (test_credentials.py on test_observability.py's full stack).
    yield pool.checkout(keep=getattr(request.module, "CONTINUES_ON", ""))
    module = request.node.nodeid.split("::")[0]
    if getattr(request.config, "rotor_last_module", {}).get(tier) == module:
        pool.release()


@pytest.fixture(scope="module")
def edge_vps(request) -> EdgeVps:
    """A lab VPS (trixie) running Docker, the platform's networks and HAProxy (rotor.vps.haproxy).

    Converged once with the lab inventory plus EDGE_VARS; the backends "web" and "test" exist with no
    servers and no routes. Shared by the edge tier's modules, each starting from that baseline.
    """
    yield from _tier_fixture(request, "edge_vps")


# The data_vps inventory: the lab's (which holds lab-only passwords for the superuser and the
# PgBouncer admin), with fixed subnets so tests know the data network's addresses.
DATA_VARS = {
    "networks_list": [
        {"name": "edge", "internal": False, "subnet": "10.232.0.0/24"},
        {"name": "app", "internal": False, "subnet": "10.232.1.0/24"},
        {"name": "data", "internal": True, "subnet": "10.232.2.0/24"},
        {"name": "observability", "internal": True, "subnet": "10.232.3.0/24"},
    ],
    "haproxy_rate_limit_exempt_networks": ["10.232.0.1", "10.232.1.1", "10.232.3.1"],
}


class DataVps(HaproxyHelpers, ConvergedVps):
    """A lab VPS converged with docker_host, networks, postgres, pgbouncer and, in front, haproxy
    (playbooks/data.yml): the data tier and the edge its tenants' APIs are reached through.

    ``variables`` holds what the playbook was given (the lab's passwords among them) and the paths
    of the data tier's contract. ``psql`` runs SQL as a client on the data network (psql inside the
    rotor-postgres container, over TCP to PgBouncer or to PostgreSQL itself); ``admin`` talks to
    PgBouncer's admin console from the VPS host through its unix socket, as the modules do; the
    HaproxyHelpers talk to HAProxy.
    """

    PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "data.yml"
    POSTGRES = "rotor-postgres"
    PGBOUNCER = "rotor-pgbouncer"
    PATHS = {
        "postgres_data_dir": "/var/lib/rotor/postgres/data",
        "postgres_run_dir": "/var/lib/rotor/postgres/run",
        "pgbouncer_run_dir": "/var/lib/rotor/pgbouncer/run",
        "pgbouncer_config_dir": "/etc/rotor/pgbouncer",
    }
    TOOLS = dict(HaproxyHelpers.HAPROXY_TOOLS,
                 **{"pgbouncer_admin.py": ROOT / "tests" / "integration" / "files" / "pgbouncer_admin.py"})
    POSTGREST_DIR = "/etc/rotor/postgrest"

    def __init__(self, name: str, suite: str, tmp: Path):
        super().__init__(name, suite, tmp)
        lab = yaml.safe_load(LAB_VARS.read_text())
        self.variables = dict(lab, **DATA_VARS)
        gateway = self.sh("ip -4 route show default").stdout.split()
        self.variables["haproxy_rate_limit_exempt_networks"] = (
            DATA_VARS["haproxy_rate_limit_exempt_networks"] + gateway[2:3])
        self.vars_file = tmp / "data-vars.yml"
        self.vars_file.write_text(yaml.safe_dump(self.variables))
        self.variables.update(self.PATHS)
        self.variables.setdefault("pgbouncer_admin_user", "pgbouncer_admin")
        self.variables.setdefault("pgbouncer_port", 6432)

    POSTGRES_CONFIG_DIR = "/etc/rotor/postgres"
    SAVED_DIRS = (HaproxyHelpers.CONFIG_DIR, PATHS["pgbouncer_config_dir"], POSTGRES_CONFIG_DIR)
    DATABASES_SQL = "SELECT datname FROM pg_database ORDER BY 1"
    ROLES_SQL = "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1"
    PENDING_SQL = "SELECT 'pending restart: ' || name FROM pg_settings WHERE pending_restart ORDER BY 1"

    def after_first_converge(self) -> None:
        """Keep the roles' files, databases and roles as the first converge left them: a reset puts them back."""
        super().after_first_converge()
        self.baseline_databases = set(self._names(self.DATABASES_SQL))
        self.baseline_roles = set(self._names(self.ROLES_SQL))

    def _names(self, sql: str) -> list[str]:
        proc = self.psql(sql, via="postgres")
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    def fingerprint(self) -> str:
        """The data tier's files, containers, databases, roles, the settings PostgreSQL and PgBouncer run
        with, and PgBouncer's live databases."""
        config = self.variables["pgbouncer_config_dir"]
        files = self.sh("sha256sum %s/*.ini %s/userlist.txt %s/* 2>&1; ls %s/backup 2>&1; "
                        "docker network ls --format '{{.Name}} {{.Driver}}' | sort; docker volume ls -q | sort"
                        % (config, config, self.POSTGRES_CONFIG_DIR, config)).stdout
        postgres = [self.psql(sql, via="postgres") for sql in (self.DATABASES_SQL, self.ROLES_SQL, self.PENDING_SQL)]
        pools = self.admin("SHOW DATABASES")
        settings = self.admin("SHOW CONFIG")
        tenants = self.sh("ls -A %s 2>/dev/null; true" % self.POSTGREST_DIR).stdout
        return "\n".join([files, self.containers(), *(proc.stdout + proc.stderr for proc in postgres),
                          "pools: " + " ".join(sorted(line.split("\t")[0] for line in pools.stdout.splitlines())),
                          "pgbouncer: " + " ".join(sorted(line.split("\t")[0] + "=" + line.split("\t")[1]
                                                          for line in settings.stdout.splitlines())) + settings.stderr,
                          self.haproxy_fingerprint(), tenants])

    def reset(self) -> None:
        """Containers other than the tier's go, the roles' files come back, databases and roles the tests made
        are dropped, and PostgreSQL, PgBouncer and HAProxy load their files."""
        proc = self.sh("for c in $(docker ps -a --format '{{.Names}}'); do case $c in %s|%s|%s) ;; *) docker rm -f "
                       "\"$c\" >/dev/null;; esac; done; rm -rf %s"
                       % (self.POSTGRES, self.PGBOUNCER, self.CONTAINER, self.POSTGREST_DIR))
        assert proc.returncode == 0, proc.stderr
        self.restore_files()
        for name in sorted(set(self._names(self.DATABASES_SQL)) - self.baseline_databases):
            assert self.psql('DROP DATABASE "%s" WITH (FORCE)' % name, via="postgres").returncode == 0, name
        for name in sorted(set(self._names(self.ROLES_SQL)) - self.baseline_roles):
            assert self.psql('DROP ROLE "%s"' % name, via="postgres").returncode == 0, name
        self.load_files()

    def reconverge(self) -> None:
        super().reconverge()
        self.load_files()

    def load_files(self) -> None:
        """PostgreSQL, PgBouncer and HAProxy reload their files (what needs a restart shows in the fingerprint)."""
        assert self.psql("SELECT pg_reload_conf()", via="postgres").returncode == 0, "PostgreSQL did not reload"
        proc = self.admin("RELOAD")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Success=1" in self.master("reload"), "HAProxy did not reload after the reset"

    def psql(self, sql: str, *, user: str = "postgres", password: str | None = None, dbname: str = "postgres",
             via: str = "pgbouncer", timeout: int = 60) -> subprocess.CompletedProcess:
        """Run ``sql`` with psql (unaligned, tuples only, stop on error) as a client on the data network.

        ``via="pgbouncer"`` connects to rotor-pgbouncer:6432, ``via="postgres"`` to rotor-postgres:5432
        over TCP (the pg_hba line of the data network). The password defaults to the superuser's.
        """
        assert via in ("pgbouncer", "postgres"), via
        if password is None:
            password = self.variables["postgres_superuser_password"]
        host, port = ((self.PGBOUNCER, self.variables["pgbouncer_port"]) if via == "pgbouncer"
                      else (self.POSTGRES, 5432))
        command = ("docker exec -e PGPASSWORD=%s -e PGCONNECT_TIMEOUT=10 %s psql -X -A -t -v ON_ERROR_STOP=1 "
                   "-h %s -p %d -U %s -d %s -c %s"
                   % (shlex.quote(password), self.POSTGRES, host, port, shlex.quote(user), shlex.quote(dbname),
                      shlex.quote(sql)))
        return subprocess.run(["docker", "exec", self.name, "sh", "-c", command],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def admin(self, sql: str) -> subprocess.CompletedProcess:
        """Run one admin console command (``SHOW CONFIG``, ``RELOAD``...) as the PgBouncer admin user.

        From the VPS host with psycopg over the unix socket in pgbouncer_run_dir; rows come back
        tab-separated, one per line.
        """
        command = ("PGPASSWORD=%s python3 /root/pgbouncer_admin.py --socket-dir %s --port %d --user %s %s"
                   % (shlex.quote(self.variables["pgbouncer_admin_password"]), self.variables["pgbouncer_run_dir"],
                      self.variables["pgbouncer_port"], shlex.quote(self.variables["pgbouncer_admin_user"]),
                      shlex.quote(sql)))
        return self.sh(command)

    def started_at(self, container: str) -> str:
        return self.sh("docker inspect -f '{{.State.StartedAt}}' %s" % container).stdout.strip()


@pytest.fixture(scope="module")
def data_vps(request) -> DataVps:
    """A lab VPS (trixie) running Docker, the platform's networks, PostgreSQL and PgBouncer.

    Converged once with the lab inventory plus DATA_VARS (data network 10.232.2.0/24); the
    databases.ini holds no database yet. Shared by the data tier's modules, each starting from
    that baseline.
    """
    yield from _tier_fixture(request, "data_vps")


@pytest.fixture(scope="module")
def collection_snapshot(tmp_path_factory):
    """This checkout as it is now, as the collection every run of this module uses.

    The role ships the collection to the VPS and reinstalls it when its content changes; a snapshot
    keeps files edited in the checkout while the tests run from counting as changes.
    """
    root = tmp_path_factory.mktemp("collections")
    dest = root / "ansible_collections" / "rotor" / "vps"
    dest.mkdir(parents=True)
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout.split(b"\0")
    present = b"\0".join(f for f in files if f and (ROOT / f.decode()).exists())
    tar = subprocess.run(["tar", "-C", str(ROOT), "--null", "--files-from=-", "-cf", "-"], input=present,
                         capture_output=True, check=True).stdout
    subprocess.run(["tar", "-C", str(dest), "-xf", "-"], input=tar, check=True)
    old = os.environ.get("ANSIBLE_COLLECTIONS_PATH")
    os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(root)
    yield dest
    if old is None:
        os.environ.pop("ANSIBLE_COLLECTIONS_PATH", None)
    else:
        os.environ["ANSIBLE_COLLECTIONS_PATH"] = old
