# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Zero-downtime replacement of the web containers behind one HAProxy backend.

Read the containers, the backend file and the running HAProxy; compare with the desired spec;
plan; apply. One replacement is: start the new container, wait until it answers its health path,
write it into the backend file and add it through the runtime API (UP at once: it has just
answered), wait until HAProxy itself reports it UP, take the old one out of the file, drain it, wait
for its sessions to end, put it in maintenance, delete it from HAProxy, stop and remove its
container. The backend file always lists every server that serves, so a reload at any step loses
none of them. A failure before the switch removes the new container and leaves the old one serving.

A run ends with a check of the service as a whole: every replica running and UP in HAProxy at its
container's address. A replica that died or fell out during the run is replaced then (at most
twice), and one still missing fails the run.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass, field
from typing import Optional

from ansible_collections.rotor.vps.plugins.module_utils._atomic_file import FileState, read_text
from ansible_collections.rotor.vps.plugins.module_utils._audit import append_audit, update_metrics
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_files import BackendFile, Server
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_routes import RouteMap, route_changes, route_conflicts
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import HaproxyError, HaproxyRuntime
from ansible_collections.rotor.vps.plugins.module_utils._host_lock import HostLock
from ansible_collections.rotor.vps.plugins.module_utils._module_run import StepError
from ansible_collections.rotor.vps.plugins.module_utils._waiter import Waiter, WaitTimeout, elapsed
from ansible_collections.rotor.vps.plugins.module_utils._web_container import (
    ContainerError,
    Docker,
    WebContainer,
    WebSpec,
    http_healthy,
)


# A DOWN server with some of its rise checks passed ("DOWN 1/2").
RISING_RE = re.compile(r"DOWN [1-9][0-9]*/[0-9]+")


class RotationError(StepError):
    """A step of a rotation failed; ``step`` names it and the message says what was rolled back."""


@dataclass(frozen=True)
class Settings:
    """The module's options that are not part of the container spec."""

    service: str
    backend: str
    state: str
    replicas: int
    max_age: Optional[int]
    routes: Optional[list]
    socket: str
    config_dir: str
    config_mount: str
    server_options: str
    healthy_timeout: int
    up_timeout: int
    drain_timeout: int
    stop_timeout: int
    lock_timeout: int
    lock_dir: str
    audit_log: str
    metrics_dir: str  # "" for none
    actor: str

    @property
    def backend_file(self) -> str:
        return os.path.join(self.config_dir, "conf.d", "%s.cfg" % self.backend)

    @property
    def route_map(self) -> RouteMap:
        return RouteMap(self.config_dir, self.config_mount, self.lock_dir, self.lock_timeout)


@dataclass
class Step:
    """One planned change: ``start`` a new container, ``replace`` ``old``, ``retire`` ``old``,
    or ``forget`` a server whose container is gone."""

    kind: str
    reason: str
    old: Optional[WebContainer] = None
    server: Optional[str] = None

    def describe(self) -> str:
        if self.kind == "start":
            return "start a new container (%s)" % self.reason
        if self.kind == "replace":
            return "replace %s (%s)" % (self.old.name, self.reason)
        if self.kind == "retire":
            return "drain and remove %s (%s)" % (self.old.name, self.reason)
        return "remove server %s from backend (%s)" % (self.server, self.reason)


@dataclass
class Plan:
    steps: list = field(default_factory=list)
    route_updates: dict = field(default_factory=dict)
    route_removals: set = field(default_factory=set)
    servers_before: list = field(default_factory=list)
    servers_after: list = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.steps or self.route_updates or self.route_removals)

    def actions(self) -> list:
        out = [s.describe() for s in self.steps]
        out += ["route %s to backend" % host for host in sorted(self.route_updates)]
        out += ["remove route %s" % host for host in sorted(self.route_removals)]
        return out


@dataclass(frozen=True)
class Observed:
    """What is there now."""

    containers: list
    backend_file: BackendFile
    live: dict  # server name -> ServerStat
    routes: dict  # host -> backend, from the map file
    desired_hash: str
    image_present: bool


def replacement_reason(c: WebContainer, *, desired_hash: str, live: dict, settings: Settings, now: float) -> str:
    """Why a running container must be replaced, or "" when it may stay (the idempotency predicate)."""
    if settings.state == "rotated":
        return "rotation requested"
    if c.spec_hash != desired_hash:
        return "spec or image changed"
    server = live.get(c.name)
    if server is None:
        return "not a server of the backend"
    if c.address and server.address.rsplit(":", 1)[0] != c.address:
        return "address changed (HAProxy sends to %s, the container is at %s)" % (server.address, c.address)
    if server.status == "DOWN":  # "DOWN 1/2" is on its way up again
        return "DOWN in HAProxy"
    if settings.max_age is not None and now - c.created > settings.max_age:
        return "older than max_age (%ds)" % int(now - c.created)
    return ""


def make_plan(observed: Observed, settings: Settings, *, now: float) -> Plan:
    """Compare what is there with what is wanted; pure, so it is unit tested table by table."""
    plan = Plan(servers_before=sorted(observed.live))
    containers = {c.name: c for c in observed.containers}
    if settings.state == "absent":
        for c in observed.containers:
            plan.steps.append(Step("retire", "state is absent", old=c))
    else:
        keep, replace = [], []
        for c in observed.containers:
            if not c.running:
                plan.steps.append(Step("retire", "not running", old=c))
                continue
            reason = replacement_reason(c, desired_hash=observed.desired_hash, live=observed.live,
                                        settings=settings, now=now)
            (replace if reason else keep).append((c, reason))
        surplus = len(keep) + len(replace) - settings.replicas
        while surplus > 0:  # too many: retire those due for replacement first, then the oldest
            c, _reason = (replace or keep).pop(0)
            plan.steps.append(Step("retire", "more than %d replicas" % settings.replicas, old=c))
            surplus -= 1
        for _missing in range(-surplus):
            plan.steps.insert(0, Step("start", "fewer than %d replicas" % settings.replicas))
        for c, reason in replace:
            plan.steps.append(Step("replace", reason, old=c))
    for name in sorted(set(observed.live) | {s.name for s in observed.backend_file.servers}):
        if name not in containers:
            plan.steps.append(Step("forget", "its container is gone", server=name))
    # Routes: only managed when given; this backend's routes are exactly the listed hosts.
    if settings.routes is not None or settings.state == "absent":
        wanted = settings.routes if settings.state != "absent" else None
        plan.route_updates, plan.route_removals = route_changes(observed.routes, settings.backend, wanted)
    retired = {s.old.name for s in plan.steps if s.kind in ("retire", "replace")} | {
        s.server for s in plan.steps if s.kind == "forget"}
    fresh = ["%s-(new %d)" % (settings.service, i + 1) for i, s in enumerate(
        [s for s in plan.steps if s.kind in ("start", "replace")])]
    plan.servers_after = sorted(n for n in observed.live if n not in retired) + fresh
    return plan


class Rotation:
    """Reads, plans and applies; only ``apply`` changes anything."""

    def __init__(self, settings: Settings, spec: Optional[WebSpec], docker: Docker, runtime: HaproxyRuntime,
                 *, waiter: Optional[Waiter] = None, check_mode: bool = False):
        self.settings = settings
        self.spec = spec
        self.docker = docker
        self.runtime = runtime
        self.waiter = waiter or Waiter()
        self.check_mode = check_mode
        self._stopping = []  # (container name, its record, monotonic time the stop signal went out)
        self._spec_hash = ""  # of the spec with the image the last observe() found
        self._generation = 0  # the highest generation of the service's containers seen or started

    # Read -----------------------------------------------------------------------------------

    def preflight(self) -> None:
        """Fail, changing nothing, when HAProxy or the backend is not there."""
        s = self.settings
        self.runtime.check_socket()
        backends = self.runtime.backends()
        if s.backend not in backends:
            raise RotationError(
                "backend %s is not defined in the running HAProxy (it has: %s); declare it in haproxy_backends "
                "and converge the haproxy role first" % (s.backend, ", ".join(b for b in backends if b != "MASTER") or "none"),
                step="preflight")
        if read_text(s.backend_file) is None:
            raise RotationError("backend %s has no file %s; the haproxy role creates it for every entry of "
                                "haproxy_backends" % (s.backend, s.backend_file), step="preflight")

    def observe(self, *, pull: bool = True) -> Observed:
        """What is there now; ``pull``: look for a newer image in the registry (not in check mode)."""
        s = self.settings
        text = read_text(s.backend_file) or ""
        backend_file = BackendFile.parse(text, s.backend_file)
        if backend_file.backend != s.backend:
            raise RotationError("%s declares backend %s, not %s" % (s.backend_file, backend_file.backend, s.backend),
                                step="preflight")
        network = self.spec.networks[0] if self.spec else "app"
        containers = self.docker.service_containers(s.service, network)
        image_id, desired = None, ""
        if self.spec is not None:
            image_id = self.docker.image_id(self.spec.image, pull=pull and not self.check_mode)
            desired = self.spec.digest(image_id or "")
        routes = s.route_map.read()
        return self.known(Observed(containers=containers, backend_file=backend_file, live=self.runtime.servers(s.backend),
                                   routes=routes, desired_hash=desired, image_present=image_id is not None))

    def known(self, observed: Observed) -> Observed:
        """Keep what a replacement starts from: the spec's hash with the image found, the highest generation."""
        self._spec_hash = observed.desired_hash
        self._generation = max([c.generation for c in observed.containers] + [self._generation])
        return observed

    def plan(self) -> Plan:
        observed = self.observe()
        if self.settings.routes:
            conflicts = route_conflicts(self.settings.routes, observed.routes, self.settings.backend)
            if conflicts:
                raise RotationError("routes already point to another backend: %s; remove them there first"
                                    % ", ".join(conflicts), step="plan")
        return make_plan(observed, self.settings, now=time.time())

    # Apply ----------------------------------------------------------------------------------

    def lock(self) -> HostLock:
        return HostLock(os.path.join(self.settings.lock_dir, "haproxy-%s.lock" % self.settings.backend),
                        self.settings.lock_timeout, "backend %s" % self.settings.backend)

    def apply(self, plan: Plan) -> list:
        """Carry out the plan, then the end-of-run check; returns one record per container change.
        Call with the lock held."""
        records = []
        try:
            self._apply_steps(plan, records)
            self._finish_stops()
            if plan.steps:  # the plan itself has just found the service whole otherwise
                self._check_service(records)
        except (HaproxyError, ContainerError, OSError) as exc:  # reading the service again failed
            try:
                self._finish_stops()
            except RotationError:
                pass
            raise RotationError("the end-of-run check could not read the service: %s; the steps before it are done "
                                "(see replacements)" % exc, step="check", records=records) from exc
        except RotationError:
            try:
                self._finish_stops()
            except RotationError:
                pass  # the first error is the one to report; these containers are out of HAProxy anyway
            raise
        return records

    def _check_service(self, records: list, attempts: int = 2) -> None:
        """The end-of-run check: every replica runs and is UP in HAProxy at its container's address.

        Whatever is missing (a replica that died after its switch, one HAProxy took down, a server
        whose container is gone) is planned as a ``present`` run would plan it and applied, up to
        ``attempts`` times; what is still missing then fails the run.
        """
        if self.settings.state == "absent":
            return
        steady = dataclasses.replace(self.settings, state="present", max_age=None, routes=None)
        for attempt in range(attempts + 1):
            plan = make_plan(self.observe(pull=False), steady, now=time.time())
            if not plan.steps:
                return
            if attempt == attempts:
                break
            for step in plan.steps:
                step.reason = "end-of-run check: %s" % step.reason
            self._apply_steps(plan, records)
            self._finish_stops()
        raise RotationError("the end-of-run check still finds the service short after %d repairs: %s"
                            % (attempts, "; ".join(plan.actions())), step="check", records=records)

    def _apply_steps(self, plan: Plan, records: list) -> None:
        try:
            for step in plan.steps:
                if step.kind == "forget":
                    self._remove_server(step.server)
                    records.append({"action": "forget", "old": step.server, "new": None, "reason": step.reason,
                                    "result": "ok"})
                    continue
                records.append(self._run_step(step))
            self._apply_routes(plan)
        except RotationError as exc:
            exc.records = records + exc.records
            raise
        except (HaproxyError, ContainerError, WaitTimeout, OSError) as exc:
            raise RotationError("%s; the steps before it are done (see replacements)" % exc, step="apply",
                                records=records) from exc

    def _run_step(self, step: Step) -> dict:
        s = self.settings
        record = {"action": step.kind, "old": step.old.name if step.old else None, "new": None,
                  "reason": step.reason, "durations": {}, "sessions_cut": 0}
        start = time.monotonic()
        try:
            if step.kind in ("start", "replace"):
                new = self._bring_up(record)
                record["new"] = new.name
            if step.old is not None:
                self._take_down(step.old, record)
        except RotationError as exc:
            record.update(result="failed", step=exc.step, error=str(exc), duration=elapsed(start))
            self._audit(record)
            self._metrics(ok=False, duration=record["duration"])
            exc.records = [record]
            raise
        record.update(result="ok", duration=elapsed(start))
        self._audit(record)
        self._metrics(ok=True, duration=record["duration"], sessions_cut=record["sessions_cut"])
        return record

    def _bring_up(self, record: dict) -> WebContainer:
        """Start, health-check and switch in a new container; on failure remove it and raise."""
        s, durations = self.settings, record["durations"]
        # The image and the generations as the plan read them: a replacement asks the registry and the
        # engine nothing more before it starts its container.
        self._generation += 1
        try:
            t = time.monotonic()
            new = self.docker.start(self.spec, generation=self._generation, spec_hash=self._spec_hash)
        except ContainerError as exc:
            raise RotationError("step 'start' failed: %s; nothing else was changed" % exc, step="start") from exc
        durations["start"] = elapsed(t)
        step = "healthy"
        try:
            t = time.monotonic()
            url = "http://%s:%d%s" % (new.address, self.spec.probe_port, self.spec.health_path)
            self.waiter.until(lambda: self._health(new), lambda why: why == "",
                              what="container %s answering %s" % (new.name, url), timeout=s.healthy_timeout)
            durations["healthy"] = elapsed(t)
            record["start_to_healthy"] = round(durations["start"] + durations["healthy"], 3)
            step = "add"
            t = time.monotonic()
            address = "%s:%d" % (new.address, self.spec.port)
            self._write_servers(add=Server(new.name, address, s.server_options))
            self.runtime.add_server(s.backend, new.name, address, s.server_options)
            step = "up"
            self.waiter.until(lambda: self._live_status(new.name, address), lambda status: status == "UP",
                              what="HAProxy reporting %s/%s UP" % (s.backend, new.name), timeout=s.up_timeout)
            durations["up"] = elapsed(t)
        except (WaitTimeout, HaproxyError, ContainerError, OSError) as exc:
            self._discard(new)
            raise RotationError("step '%s' failed for new container %s: %s; the new container was removed and the "
                                "old ones keep serving" % (step, new.name, exc), step=step) from exc
        return new

    def _take_down(self, old: WebContainer, record: dict) -> None:
        """Drain an old container out of HAProxy and remove it."""
        s, durations = self.settings, record["durations"]
        t = time.monotonic()
        try:
            self._write_servers(remove=old.name)
            if old.name in self.runtime.servers(s.backend):
                self.runtime.set_state(s.backend, old.name, "drain")
                try:
                    self.waiter.until(lambda: self._sessions(old.name), lambda n: n == 0,
                                      what="sessions of %s/%s ending" % (s.backend, old.name), timeout=s.drain_timeout)
                except WaitTimeout as exc:
                    record["sessions_cut"] = int(exc.last or 0)
                durations["drain"] = elapsed(t)
                t = time.monotonic()
                self._remove_server(old.name)
            durations["deregister"] = elapsed(t)
            # Out of HAProxy, the old container only has to go away: it shuts down while the next
            # replacement starts, and is removed before the run ends (_finish_stops).
            self.docker.signal_stop(old.name)
            self._stopping.append((old.name, record, time.monotonic()))
        except (HaproxyError, ContainerError, OSError) as exc:
            raise RotationError("removing old container %s failed: %s; the new container serves, the old one may "
                                "still exist" % (old.name, exc), step="remove") from exc

    def _finish_stops(self) -> None:
        """Wait for the old containers signalled to stop, and remove them (SIGKILL after stop_timeout)."""
        failures = []
        while self._stopping:
            name, record, signalled = self._stopping.pop(0)
            try:
                self.docker.remove(name, timeout=self.settings.stop_timeout)
            except ContainerError as exc:
                failures.append(str(exc))
            record["durations"]["stop"] = elapsed(signalled)
        if failures:
            raise RotationError("old containers are out of HAProxy but could not be removed: %s" % "; ".join(failures),
                                step="remove")

    # Helpers --------------------------------------------------------------------------------

    def _health(self, new: WebContainer) -> str:
        state = self.docker.state(new.name)
        if state != "running":
            raise ContainerError("container %s is %s: %s" % (new.name, state, self.docker.logs_tail(new.name)))
        return http_healthy(new.address, self.spec.probe_port, self.spec.health_path)

    def _live_status(self, name: str, address: str) -> str:
        """HAProxy's status of a new server; UP as soon as HAProxy's own first check has passed ("DOWN 1/2":
        HAProxy reaches the container too), without waiting for the rest of its ``rise`` checks."""
        server = self.runtime.servers(self.settings.backend).get(name)
        if server is None:  # HAProxy restarted from a file that did not have it yet: add it again
            self.runtime.add_server(self.settings.backend, name, address, self.settings.server_options)
            return "re-added"
        if RISING_RE.fullmatch(server.status):
            self.runtime.set_health_up(self.settings.backend, name)
            return "UP"
        if server.status != "UP":
            # A container that died after its health check never comes UP: say so now, not after up_timeout.
            state = self.docker.state(name)
            if state != "running":
                raise ContainerError("container %s is %s: %s" % (name, state, self.docker.logs_tail(name)))
        return server.status

    def _sessions(self, name: str) -> int:
        server = self.runtime.servers(self.settings.backend).get(name)
        return 0 if server is None else server.sessions

    def _remove_server(self, name: str) -> None:
        """Maintenance, then delete, retrying while HAProxy still holds connections to it."""
        s = self.settings
        self._write_servers(remove=name)
        if name not in self.runtime.servers(s.backend):
            return
        self.runtime.set_state(s.backend, name, "maint")

        def attempt() -> str:
            try:
                self.runtime.del_server(s.backend, name)
                return ""
            except HaproxyError as exc:
                if name not in self.runtime.servers(s.backend):
                    return ""
                return str(exc)

        try:
            self.waiter.until(attempt, lambda why: why == "", what="deleting server %s/%s" % (s.backend, name),
                              timeout=max(5, s.drain_timeout))
        except WaitTimeout:
            self.runtime.shutdown_sessions(s.backend, name)
            self.waiter.until(attempt, lambda why: why == "", what="deleting server %s/%s" % (s.backend, name),
                              timeout=5)

    def _write_servers(self, *, add: Optional[Server] = None, remove: Optional[str] = None) -> None:
        path = self.settings.backend_file
        state = FileState.read(path)
        current = BackendFile.parse(state.text or "", path)
        servers = [srv for srv in current.servers if srv.name not in (remove, add.name if add else None)]
        if add is not None:
            servers.append(add)
        updated = current.with_servers(servers)
        if updated != current:
            state.write(updated.render())

    def _discard(self, new: WebContainer) -> None:
        """Undo a new container that did not make it: out of HAProxy, out of the file, removed."""
        try:
            self._remove_server(new.name)
        except (HaproxyError, WaitTimeout, OSError):
            pass  # it never served; the file no longer lists it, and its container goes next
        try:
            self.docker.remove(new.name, timeout=0)
        except ContainerError:
            pass  # reported by the caller's error; a stray stopped container is removed by the next run

    def _apply_routes(self, plan: Plan) -> None:
        self.settings.route_map.apply(self.runtime, plan.route_updates, plan.route_removals)

    def _metrics(self, **values) -> None:
        """The service's textfile metrics, when it has a metrics directory."""
        if self.settings.metrics_dir:
            update_metrics(self.settings.metrics_dir, self.settings.service, **values)

    def _audit(self, record: dict) -> None:
        s = self.settings
        append_audit(s.audit_log, {
            "actor": s.actor, "service": s.service, "backend": s.backend, "action": record["action"],
            "old": record.get("old"), "new": record.get("new"), "reason": record.get("reason"),
            "result": record.get("result"), "error": record.get("error"), "duration": record.get("duration"),
            "sessions_cut": record.get("sessions_cut", 0),
        })
