# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tenant's PostgREST kept in its state: read -> compare -> plan -> apply.

The container and its place in HAProxy are the rotation's (``Rotation``, one replica, health on the
admin server's ``/ready``); this adds the tenant's files, its backend (created with one hitless
reload on arrival, removed with one on departure), its rate limit (a map entry, changed at run
time) and the signals that make PostgREST reload in place.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Optional

from ansible_collections.rotor.vps.plugins.module_utils._atomic_file import FileState, read_text
from ansible_collections.rotor.vps.plugins.module_utils._audit import append_audit
from ansible_collections.rotor.vps.plugins.module_utils._docker_engine import signal_warning
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_backend import BackendError, Backends, backend_text
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_files import BackendFile
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_rotate import (
    Observed,
    Plan,
    Rotation,
    RotationError,
    make_plan,
)
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_routes import RouteMap, route_changes, route_conflicts
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import HaproxyError
from ansible_collections.rotor.vps.plugins.module_utils._module_run import StepError
from ansible_collections.rotor.vps.plugins.module_utils._postgrest import (
    CONFIG_FILE,
    SECRET_FILES,
    FilesPlan,
    TenantFiles,
    files_plan,
    new_jwt_secret,
)
from ansible_collections.rotor.vps.plugins.module_utils._waiter import WaitTimeout
from ansible_collections.rotor.vps.plugins.module_utils._web_container import ContainerError, http_healthy

LIMITS_MAP = "maps/rate_limits.map"
# Steps of a replacement before the new container serves: a failure there leaves the old one as it was.
BEFORE_SWITCH = ("start", "healthy", "add", "up")


class SpawnError(StepError):
    """A step of a tenant's change failed; ``step`` names it and the message says what was rolled back."""


@dataclass(frozen=True)
class Tenant:
    """The options that are not the container's: files, backend, limit, audit."""

    name: str
    state: str
    backend: str
    files: TenantFiles
    uid: int
    gid: int
    wanted: dict  # file name -> text, the jwt-secret's only when given (None: keep or generate)
    rate_limit: int
    backend_lines: list
    jwt_cache: bool  # PostgREST's JWT cache is on: a new secret replaces the container
    audit_log: str
    actor: str
    ready_timeout: int


@dataclass
class SpawnPlan:
    files: FilesPlan = field(default_factory=FilesPlan)
    rotation: Plan = field(default_factory=Plan)
    create_backend: bool = False
    update_backend: bool = False  # its settings (health check, rate-limit period) changed
    remove_backend: bool = False
    limit: Optional[tuple] = None  # (updates, removals) of the rate-limit map
    signal: Optional[str] = None  # SIGUSR2 (config) or SIGUSR1 (schema cache), to the running containers
    generated_secret: Optional[str] = None  # a new generated JWT secret to keep (never shown)
    remove_files: list = field(default_factory=list)
    remove_containers: list = field(default_factory=list)  # containers of a tenant whose backend is gone

    @property
    def changes(self) -> bool:
        return bool(self.files.writes or self.rotation.changes or self.create_backend or self.update_backend
                    or self.remove_backend
                    or self.limit or self.signal or self.remove_files or self.remove_containers)

    def actions(self) -> list:
        out = []
        if self.create_backend:
            out.append("create the HAProxy backend (one hitless reload)")
        if self.update_backend:
            out.append("change the HAProxy backend's settings (one hitless reload)")
        out += [a for a in self.files.actions() if not a.startswith("replace")]
        if self.generated_secret:
            out.append("generate a JWT secret and keep it")
        if self.limit:
            out += ["set the rate limit to %s" % v for v in self.limit[0].values()] or ["remove the rate limit"]
        out += self.rotation.actions()
        out += ["remove container %s" % name for name in self.remove_containers]
        if self.signal == "SIGUSR2" and not self._replaces():
            out.append("reload the configuration in place (SIGUSR2)")
        elif self.signal == "SIGUSR1":
            out.append("reload the schema cache (SIGUSR1)")
        if self.remove_backend:
            out.append("remove the HAProxy backend (one hitless reload)")
        out += ["remove %s" % path for path in self.remove_files]
        return out

    def _replaces(self) -> bool:
        return any(step.kind in ("start", "replace") for step in self.rotation.steps)


class Spawn:
    """Reads, plans and applies; only ``apply`` changes anything."""

    def __init__(self, tenant: Tenant, rotation: Rotation, backends: Backends, limits: RouteMap):
        self.tenant = tenant
        self.rotation = rotation
        self.backends = backends
        self.limits = limits
        # For the module's warnings: a signal that had to go through Docker's kill endpoint.
        self.warnings: list = []

    # Read -----------------------------------------------------------------------------------

    def preflight(self) -> None:
        self.rotation.runtime.check_socket()

    def current_files(self) -> dict:
        return {name: read_text(self.tenant.files.path(name)) for name in (CONFIG_FILE,) + SECRET_FILES}

    def running(self) -> list:
        return [c for c in self._containers() if c.running]

    def _containers(self) -> list:
        spec = self.rotation.spec
        return self.rotation.docker.service_containers(self.rotation.settings.service,
                                                       spec.networks[0] if spec else "app")

    def plan(self) -> SpawnPlan:
        t, r = self.tenant, self.rotation
        live = t.backend in r.runtime.backends()
        plan = SpawnPlan()
        if t.state == "absent":
            if live:
                plan.rotation = r.plan()
            else:  # no backend to drain from: its containers just go, its routes too
                plan.remove_containers = [c.name for c in self._containers()]
                plan.rotation.route_updates, plan.rotation.route_removals = route_changes(
                    r.settings.route_map.read(), t.backend, None)
            plan.remove_backend = live or os.path.exists(self.backends.site.backend_path(t.backend))
            limits = self.limits.read()
            if t.backend in limits:
                plan.limit = ({}, {t.backend})
            plan.remove_files = [path for path in (t.files.directory, t.files.generated_secret) if os.path.exists(path)]
            return plan
        running = self.running()
        if t.state == "reloaded":
            if not running:
                raise SpawnError("tenant %s has no running PostgREST container to reload; run state=present first"
                                 % t.name, step="plan")
            plan.signal = "SIGUSR1"
            return plan
        wanted = dict(t.wanted)
        if wanted.get("jwt-secret") is None:
            kept = (read_text(t.files.generated_secret) or "").strip() or None
            if kept is None:
                kept = plan.generated_secret = new_jwt_secret()
            wanted["jwt-secret"] = kept
        elif os.path.exists(t.files.generated_secret):
            plan.remove_files.append(t.files.generated_secret)
        plan.files = files_plan(self.current_files(), wanted, running=bool(running), jwt_cache=t.jwt_cache)
        if t.state == "restarted":
            plan.files.restart.append("restart requested")
        r.settings = _with_state(r.settings, "rotated" if plan.files.restart else "present")
        plan.create_backend = not live
        plan.update_backend = live and self.backends.settings_differ(t.backend, t.backend_lines)
        plan.rotation = r.plan() if live else self._plan_without_backend()
        if plan.files.reload_config and not plan._replaces():
            plan.signal = "SIGUSR2"
        limits = self.limits.read()
        wanted_limit = str(t.rate_limit) if t.rate_limit else None
        if limits.get(t.backend) != wanted_limit:
            plan.limit = ({t.backend: wanted_limit}, set()) if wanted_limit else ({}, {t.backend})
        return plan

    def _plan_without_backend(self) -> Plan:
        """The rotation's plan for a backend HAProxy does not have (yet, or any more): no live servers."""
        r = self.rotation
        routes = r.settings.route_map.read()
        if r.settings.routes and r.settings.state != "absent":
            conflicts = route_conflicts(r.settings.routes, routes, r.settings.backend)
            if conflicts:
                raise SpawnError("routes already point to another backend: %s; remove them there first"
                                 % ", ".join(conflicts), step="plan")
        desired = ""
        if r.spec is not None:
            desired = r.spec.digest(r.docker.image_id(r.spec.image, pull=not r.check_mode) or "")
        observed = r.known(Observed(containers=self._containers(), live={}, routes=routes, desired_hash=desired,
                                    backend_file=BackendFile(r.settings.backend, (), (), ()), image_present=True))
        return make_plan(observed, r.settings, now=time.time())

    # Apply ----------------------------------------------------------------------------------

    def lock(self):
        return self.rotation.lock()

    def apply(self, plan: SpawnPlan) -> list:
        """Carry out the plan; returns the rotation's records. Call with the lock held."""
        if self.tenant.state == "absent":
            return self._apply_absent(plan)
        if self.tenant.state == "reloaded":
            self._signal(plan.signal)
            return []
        return self._apply_present(plan)

    def _apply_present(self, plan: SpawnPlan) -> list:
        t = self.tenant
        written = self._write_files(plan)
        records: list = []
        try:
            if plan.create_backend:
                self.limits.ensure()
                if plan.limit:
                    self.limits.write(*plan.limit)
                self.backends.create(t.backend, backend_text(t.backend, t.backend_lines))
                self._audit("create backend")
            elif plan.limit:
                self.limits.apply(self.rotation.runtime, *plan.limit)
            if plan.update_backend:
                self.backends.update(t.backend, t.backend_lines)
                self._audit("change backend settings")
            records = self.rotation.apply(plan.rotation)
            if plan.signal and not plan._replaces():
                self._signal(plan.signal)
        except (RotationError, BackendError, HaproxyError, ContainerError, WaitTimeout, OSError) as exc:
            records = records or getattr(exc, "records", [])
            switched = any(record.get("result") == "ok" and record.get("new") for record in records)
            undone = []
            if not switched:
                for state in reversed(written):
                    state.restore()
                undone.append("the tenant's files were restored")
                if plan.create_backend and not any(c.running for c in self._containers()):
                    try:
                        self.backends.remove(t.backend)
                        undone.append("the new backend was removed")
                    except BackendError:
                        pass  # reported below as left; the next run removes or reuses it
            raise SpawnError("%s%s" % (exc, "; " + ", ".join(undone) if undone else ""),
                             step=getattr(exc, "step", "apply"), records=records) from exc
        if plan.files.writes and not plan.rotation.steps:
            self._audit("write files", files=sorted(plan.files.writes))
        return records

    def _apply_absent(self, plan: SpawnPlan) -> list:
        t = self.tenant
        records = self.rotation.apply(plan.rotation) if plan.rotation.changes else []
        for name in plan.remove_containers:
            self.rotation.docker.remove(name, timeout=self.rotation.settings.stop_timeout)
        if plan.limit:  # the reload below loads the map again from its file
            self.limits.write(*plan.limit)
        if plan.remove_backend:
            self.backends.remove(t.backend)
            self._audit("remove backend")
        for path in plan.remove_files:
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.unlink(path)
        if plan.remove_files:
            self._audit("remove files")
        return records

    def _write_files(self, plan: SpawnPlan) -> list:
        """Write the changed files (secrets and config 0400, the container user's); their old states."""
        t = self.tenant
        written = []
        if plan.files.writes and not os.path.isdir(t.files.directory):
            os.makedirs(t.files.directory, mode=0o500)
            os.chown(t.files.directory, t.uid, t.gid)
            os.chmod(t.files.directory, 0o500)
        if plan.generated_secret:
            state = FileState.read(t.files.generated_secret)
            FileState(state.path, state.text, 0o600, 0, 0).write(plan.generated_secret)
            written.append(state)
        for name, text in plan.files.writes.items():
            state = FileState.read(t.files.path(name))
            FileState(state.path, state.text, 0o400, t.uid, t.gid).write(text)
            written.append(state)
        for path in plan.remove_files:
            if os.path.exists(path):
                written.append(FileState.read(path))
                os.unlink(path)
        return written

    def _signal(self, signal: str) -> None:
        """Send ``signal`` to every running container of the tenant, then wait until each is ready again."""
        spec = self.rotation.spec
        for container in self.running():
            why = self.rotation.docker.signal(container.name, signal)
            if why:
                self.warnings.append(signal_warning(signal, container.name, why))
            if spec is not None and container.address:
                # PostgREST answers /ready again once it has reloaded (a schema reload holds requests).
                self.rotation.waiter.until(
                    lambda c=container: http_healthy(c.address, spec.probe_port, spec.health_path), lambda why: why == "",
                    what="%s ready after %s" % (container.name, signal), timeout=self.tenant.ready_timeout)
            self._audit("signal %s" % signal, container=container.name)

    def _audit(self, action: str, **extra) -> None:
        t = self.tenant
        append_audit(t.audit_log, dict({"actor": t.actor, "tenant": t.name, "service": self.rotation.settings.service,
                                        "backend": t.backend, "action": action, "result": "ok"}, **extra))


def _with_state(settings, state: str):
    """The rotation's settings with another state (frozen dataclass)."""
    from dataclasses import replace

    return replace(settings, state=state)
