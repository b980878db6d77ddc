"""The plan of haproxy_rotate: which containers stay, which are replaced, started or retired, and why."""

from __future__ import annotations

import pytest

from ansible_collections.rotor.vps.plugins.module_utils import _web_container
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_files import BackendFile, Server
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_rotate import (
    Observed,
    Settings,
    make_plan,
)
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_routes import route_conflicts
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import ServerStat
from ansible_collections.rotor.vps.plugins.module_utils._web_container import WebContainer

NOW = 10_000.0


def settings(**overrides) -> Settings:
    values = dict(
        service="web", backend="web", state="present", replicas=2, max_age=None, routes=None, socket="/s",
        config_dir="/etc/rotor/haproxy", config_mount="/usr/local/etc/haproxy", server_options="check",
        healthy_timeout=1, up_timeout=1, drain_timeout=1, stop_timeout=1, lock_timeout=1, lock_dir="/tmp",
        audit_log="/tmp/a", metrics_dir="/tmp/m", actor="test",
    )
    values.update(overrides)
    return Settings(**values)


def container(name, *, running=True, age=60, spec="h1", address="10.0.0.%d") -> WebContainer:
    index = int(name.rsplit("-", 1)[1])
    return WebContainer(id=name, name=name, running=running, address=address % index if address else None,
                        created=NOW - age, generation=index, spec_hash=spec, image_id="sha256:x")


def observed(containers, *, live=None, routes=None, file_servers=None, desired="h1") -> Observed:
    if live is None:
        live = {c.name: ServerStat(c.name, "UP", 0, "%s:8080" % c.address) for c in containers if c.running}
    servers = file_servers if file_servers is not None else [Server(n, s.address, "check") for n, s in live.items()]
    return Observed(containers=list(containers), backend_file=BackendFile("web", ("backend web",), tuple(servers), ()),
                    live=live, routes=routes or {}, desired_hash=desired, image_present=True)


def kinds(plan) -> list:
    return [(s.kind, s.old.name if s.old else s.server, s.reason) for s in plan.steps]


@pytest.mark.parametrize("containers, overrides, expected", [
    # Nothing there: start the replicas.
    ([], {}, [("start", None, "fewer than 2 replicas")] * 2),
    # Current and serving: nothing to do.
    ([container("web-1"), container("web-2")], {}, []),
    # state=rotated replaces every container, oldest first.
    ([container("web-1", age=90), container("web-2", age=30)], {"state": "rotated"},
     [("replace", "web-1", "rotation requested"), ("replace", "web-2", "rotation requested")]),
    # max_age: only the old one.
    ([container("web-1", age=7200), container("web-2", age=60)], {"max_age": 3600},
     [("replace", "web-1", "older than max_age (7200s)")]),
    # A changed spec or image.
    ([container("web-1", spec="old"), container("web-2")], {},
     [("replace", "web-1", "spec or image changed")]),
    # A stopped container is retired and a new one started in its place.
    ([container("web-1", running=False), container("web-2")], {},
     [("start", None, "fewer than 2 replicas"), ("retire", "web-1", "not running")]),
    # Scale down: those due for replacement go first, then the oldest.
    ([container("web-1"), container("web-2"), container("web-3")], {"replicas": 1},
     [("retire", "web-1", "more than 1 replicas"), ("retire", "web-2", "more than 1 replicas")]),
    ([container("web-1"), container("web-2", spec="old")], {"replicas": 1},
     [("retire", "web-2", "more than 1 replicas")]),
    # Scale up alongside a replacement.
    ([container("web-1", spec="old")], {"replicas": 2},
     [("start", None, "fewer than 2 replicas"), ("replace", "web-1", "spec or image changed")]),
    # absent retires everything.
    ([container("web-1"), container("web-2")], {"state": "absent"},
     [("retire", "web-1", "state is absent"), ("retire", "web-2", "state is absent")]),
])
def test_plan_steps(containers, overrides, expected):
    assert kinds(make_plan(observed(containers), settings(**overrides), now=NOW)) == expected


def test_server_without_container_is_forgotten():
    live = {"web-9": ServerStat("web-9", "DOWN", 0, "10.0.0.9:8080")}
    plan = make_plan(observed([container("web-1"), container("web-2")], live=dict(live, **{
        "web-1": ServerStat("web-1", "UP", 0, "10.0.0.1:8080"), "web-2": ServerStat("web-2", "UP", 0, "10.0.0.2:8080")})),
        settings(), now=NOW)
    assert kinds(plan) == [("forget", "web-9", "its container is gone")]
    assert plan.servers_after == ["web-1", "web-2"]


def test_container_unknown_to_haproxy_or_moved_is_replaced():
    moved = {"web-1": ServerStat("web-1", "UP", 0, "10.9.9.9:8080"), "web-2": ServerStat("web-2", "UP", 0, "10.0.0.2:8080")}
    plan = make_plan(observed([container("web-1"), container("web-2")], live=moved), settings(), now=NOW)
    assert kinds(plan)[0][:2] == ("replace", "web-1") and kinds(plan)[0][2].startswith("address changed")
    missing = {"web-2": ServerStat("web-2", "UP", 0, "10.0.0.2:8080")}
    plan = make_plan(observed([container("web-1"), container("web-2")], live=missing), settings(), now=NOW)
    assert kinds(plan) == [("replace", "web-1", "not a server of the backend")]


@pytest.mark.parametrize("status, expected", [
    ("DOWN", [("replace", "web-1", "DOWN in HAProxy")]),
    ("DOWN 1/2", []),
    # Going down, but still serving; and the admin states an operator sets stay as they are.
    ("UP 1/2", []),
    ("MAINT", []),
    ("DRAIN", []),
    ("no check", []),
])
def test_server_haproxy_took_down_is_replaced(status, expected):
    live = {"web-1": ServerStat("web-1", status, 0, "10.0.0.1:8080"), "web-2": ServerStat("web-2", "UP", 0, "10.0.0.2:8080")}
    assert kinds(make_plan(observed([container("web-1"), container("web-2")], live=live), settings(), now=NOW)) == expected


def test_plan_diff_names_new_servers():
    plan = make_plan(observed([container("web-1", age=90), container("web-2")]), settings(state="rotated"), now=NOW)
    assert plan.servers_before == ["web-1", "web-2"]
    assert plan.servers_after == ["web-(new 1)", "web-(new 2)"]
    assert plan.actions() == ["replace web-1 (rotation requested)", "replace web-2 (rotation requested)"]


@pytest.mark.parametrize("routes, current, state, updates, removals", [
    (None, {"a.test": "web"}, "present", {}, set()),  # routes not given: left alone
    (["a.test"], {}, "present", {"a.test": "web"}, set()),
    (["a.test"], {"a.test": "web", "b.test": "web", "c.test": "api"}, "present", {}, {"b.test"}),
    (None, {"a.test": "web", "c.test": "api"}, "absent", {}, {"a.test"}),
])
def test_plan_routes(routes, current, state, updates, removals):
    plan = make_plan(observed([container("web-1"), container("web-2")], routes=current),
                     settings(routes=routes, state=state), now=NOW)
    assert plan.route_updates == updates and plan.route_removals == removals
    assert plan.changes == bool(updates or removals or plan.steps)


def test_route_conflicts():
    assert route_conflicts(["a.test", "b.test"], {"a.test": "api", "b.test": "web"}, "web") == ["a.test (routed to api)"]


class _MapRuntime:
    """The runtime API calls _apply_routes makes, recorded."""

    def __init__(self):
        self.calls = []

    def map_entries(self, ref):
        return {}

    def set_map(self, ref, host, backend, *, exists):
        self.calls.append(("set", host, backend))

    def del_map(self, ref, host):
        self.calls.append(("del", host))


def _role_made(path, text: str) -> None:
    """A file as the haproxy role creates it: root, group 99 (HAProxy), 0640."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o640)
    os.chown(path, os.getuid(), 99)


@pytest.mark.skipif(__import__("os").getuid() != 0, reason="changing a file's group to 99 needs root")
def test_rewritten_files_keep_the_roles_mode_and_owner(tmp_path):
    """The backend file and the host map stay root:99 0640 after the module rewrites them."""
    import os

    from ansible_collections.rotor.vps.plugins.module_utils._haproxy_rotate import Plan, Rotation

    backend = tmp_path / "conf.d" / "web.cfg"
    host_map = tmp_path / "maps" / "hosts.map"
    _role_made(backend, "backend web\n")
    _role_made(host_map, "# routes\n")
    runtime = _MapRuntime()
    rotation = Rotation(settings(config_dir=str(tmp_path), lock_dir=str(tmp_path)), None, None, runtime)
    rotation._write_servers(add=Server("web-1", "10.0.0.1:8080", "check"))
    rotation._apply_routes(Plan(route_updates={"web.lab.test": "web"}))
    for path in (backend, host_map):
        info = os.stat(path)
        assert (info.st_mode & 0o7777, info.st_gid) == (0o640, 99), path
    assert "server web-1 10.0.0.1:8080 check" in backend.read_text()
    assert "web.lab.test web" in host_map.read_text()
    assert runtime.calls == [("set", "web.lab.test", "web")]


class _StatusRuntime:
    def __init__(self, status):
        self.status = status
        self.forced = []

    def servers(self, backend):
        return {"web-3": ServerStat("web-3", self.status, 0, "10.0.0.3:8080")}

    def set_health_up(self, backend, name):
        self.forced.append("%s/%s" % (backend, name))


class _StateDocker:
    def __init__(self, state):
        self.state_value = state

    def state(self, name):
        return self.state_value

    def logs_tail(self, name):
        return "killed"


@pytest.mark.parametrize("status, state, expected", [
    ("UP", "exited", "UP"),  # UP is UP: the end-of-run check looks after a container that dies later
    ("UP 2/3", "running", "UP 2/3"),  # UP with a check failed: keep waiting
    ("DOWN", "running", "DOWN"),
    ("UP 2/3", "exited", "container web-3 is exited: killed"),  # dead: fail now, not after up_timeout
    ("DOWN", "missing", "container web-3 is missing: killed"),
])
def test_waiting_for_up_stops_when_the_new_container_died(status, state, expected):
    from ansible_collections.rotor.vps.plugins.module_utils._haproxy_rotate import Rotation
    from ansible_collections.rotor.vps.plugins.module_utils._web_container import ContainerError

    rotation = Rotation(settings(), None, _StateDocker(state), _StatusRuntime(status))
    try:
        seen = rotation._live_status("web-3", "10.0.0.3:8080")
    except ContainerError as exc:
        seen = str(exc)
    assert seen == expected


def test_a_new_server_is_up_once_haproxys_first_check_passed():
    """HAProxy reaches the container itself ("DOWN 1/2"): UP now, not after the rest of its rise checks;
    before any check of its own passed ("DOWN"), it stays DOWN."""
    from ansible_collections.rotor.vps.plugins.module_utils._haproxy_rotate import Rotation

    rising = _StatusRuntime("DOWN 1/2")
    assert Rotation(settings(), None, _StateDocker("running"), rising)._live_status("web-3", "10.0.0.3:8080") == "UP"
    assert rising.forced == ["web/web-3"]
    down = _StatusRuntime("DOWN")
    assert Rotation(settings(), None, _StateDocker("running"), down)._live_status("web-3", "10.0.0.3:8080") == "DOWN"
    assert down.forced == []


def test_a_start_the_runtime_failed_on_its_own_is_tried_once_more(monkeypatch):
    class Created:
        def __init__(self, errors):
            self.errors, self.starts = list(errors), 0

        def start(self):
            self.starts += 1
            if self.errors:
                raise RuntimeError(self.errors.pop(0))

    docker = _web_container.Docker.__new__(_web_container.Docker)
    docker.errors = type("errors", (), {"APIError": RuntimeError})
    monkeypatch.setattr(_web_container.time, "sleep", lambda seconds: None)
    flaky = Created(["OCI runtime create failed: runc create failed: read init-p: connection reset by peer"])
    docker._start(flaky)
    assert flaky.starts == 2
    broken = Created(["port is already allocated", "port is already allocated"])
    with pytest.raises(RuntimeError, match="port is already allocated"):
        docker._start(broken)
    assert broken.starts == 1
    twice = Created(["OCI runtime create failed: x", "OCI runtime create failed: y"])
    with pytest.raises(RuntimeError, match="y"):
        docker._start(twice)
    assert twice.starts == 2
