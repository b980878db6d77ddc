# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The web containers of a rotated service: their desired spec, and starting, probing, removing them.

Each container carries labels naming its service, its generation, its creation time and the hash
of the spec it was made from, so a later run can tell which containers are current without
keeping any state of its own.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Optional

from ansible_collections.rotor.vps.plugins.module_utils._docker_engine import DockerEngine, EngineError
from ansible_collections.rotor.vps.plugins.module_utils._validate import tmpfs_mount_options

LABEL_SERVICE = "org.rotor.vps.service"
LABEL_GENERATION = "org.rotor.vps.generation"
LABEL_CREATED = "org.rotor.vps.created"
LABEL_SPEC = "org.rotor.vps.spec-hash"
LABEL_MANAGED = "org.rotor.vps.managed-by"


# The engine's error, under the name the rotation has always raised.
ContainerError = EngineError


# A start that failed in the OCI runtime itself (runc's "read init-p: connection reset by peer", seen once in
# 1,000 starts under load in the lab) is tried once more: the container is created, its spec valid.
TRANSIENT_START = "OCI runtime create failed"


@dataclass(frozen=True)
class WebSpec:
    """Everything that defines a web container; two containers with the same hash are alike."""

    service: str
    image: str
    port: int
    health_path: str
    networks: tuple
    env: dict = field(default_factory=dict)
    tmpfs: tuple = ()  # dicts: path, size, mode, uid, gid, noexec, nosuid, nodev
    memory: Optional[str] = None
    cpus: Optional[float] = None
    pids_limit: Optional[int] = None
    read_only: bool = True
    cap_drop: tuple = ("ALL",)
    cap_add: tuple = ()
    user: Optional[str] = None
    labels: dict = field(default_factory=dict)
    mounts: tuple = ()  # dicts: source (host path), target, read_only
    command: tuple = ()  # empty: the image's own
    health_port: Optional[int] = None  # where health_path answers, when not ``port`` (an admin port)
    managed_by: str = "rotor.vps.haproxy_rotate"

    @property
    def probe_port(self) -> int:
        """The port the health path answers on (HAProxy's ``check port`` too)."""
        return self.health_port or self.port

    def tmpfs_mounts(self) -> dict:
        return {m["path"]: tmpfs_mount_options(m) for m in self.tmpfs}

    def digest(self, image_id: str) -> str:
        """The spec hash: the options above plus the image ID the tag resolves to now."""
        data = {
            "image": self.image, "image_id": image_id, "port": self.port, "health_path": self.health_path,
            "networks": list(self.networks), "env": {k: str(v) for k, v in sorted(self.env.items())},
            "tmpfs": self.tmpfs_mounts(), "memory": self.memory, "cpus": self.cpus, "pids_limit": self.pids_limit,
            "read_only": self.read_only, "cap_drop": sorted(self.cap_drop), "cap_add": sorted(self.cap_add),
            "user": self.user, "labels": dict(sorted(self.labels.items())),
        }
        # Added only when set, so the hash of a spec without them is what it always was.
        for key in ("mounts", "command", "health_port"):
            if getattr(self, key):
                data[key] = list(getattr(self, key)) if key != "health_port" else self.health_port
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WebContainer:
    """A container of the service as Docker reports it."""

    id: str
    name: str
    running: bool
    address: Optional[str]  # IP on the first network of the spec (where HAProxy reaches it)
    created: float  # epoch seconds, from our label (Docker's own when the label is missing)
    generation: int
    spec_hash: str
    image_id: str


class Docker(DockerEngine):
    """The engine client with what rotated web containers need: list a service's, start one from a spec."""

    def service_containers(self, service: str, network: str) -> list:
        """Every container labelled as part of ``service``, oldest first."""
        found = []
        for c in self.client.containers.list(all=True, filters={"label": "%s=%s" % (LABEL_SERVICE, service)}):
            labels = c.labels or {}
            nets = c.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
            address = (nets.get(network) or {}).get("IPAddress") or None
            try:
                created = float(labels.get(LABEL_CREATED, ""))
            except ValueError:
                created = 0.0
            found.append(WebContainer(
                id=c.id, name=c.name, running=c.status == "running", address=address, created=created,
                generation=int(labels.get(LABEL_GENERATION, "0") or 0), spec_hash=labels.get(LABEL_SPEC, ""),
                image_id=c.attrs.get("Image", ""),
            ))
        return sorted(found, key=lambda c: (c.created, c.name))

    def start(self, spec: WebSpec, *, generation: int, spec_hash: str) -> WebContainer:
        """Create and start a fresh container of the service (random name suffix) and return it."""
        name = "%s-%s" % (spec.service, secrets.token_hex(4))
        now = time.time()
        labels = dict(spec.labels)
        labels.update({
            LABEL_SERVICE: spec.service, LABEL_GENERATION: str(generation), LABEL_CREATED: "%.3f" % now,
            LABEL_SPEC: spec_hash, LABEL_MANAGED: spec.managed_by,
        })
        kwargs = dict(
            name=name, hostname=name, detach=True, labels=labels, environment={k: str(v) for k, v in spec.env.items()},
            network=spec.networks[0], tmpfs=spec.tmpfs_mounts(), read_only=spec.read_only,
            cap_drop=list(spec.cap_drop) or None, cap_add=list(spec.cap_add) or None,
            security_opt=["no-new-privileges:true"], restart_policy={"Name": "unless-stopped"},
        )
        if spec.memory:
            kwargs["mem_limit"] = spec.memory
        if spec.cpus:
            kwargs["nano_cpus"] = int(spec.cpus * 1e9)
        if spec.pids_limit:
            kwargs["pids_limit"] = spec.pids_limit
        if spec.user:
            kwargs["user"] = spec.user
        if spec.mounts:
            kwargs["volumes"] = {m["source"]: {"bind": m["target"], "mode": "ro" if m.get("read_only", True) else "rw"}
                                 for m in spec.mounts}
        if spec.command:
            kwargs["command"] = list(spec.command)
        try:
            container = self.client.containers.create(spec.image, **kwargs)
        except self.errors.APIError as exc:
            raise ContainerError("could not create container %s from %s: %s" % (name, spec.image, exc.explanation or exc)) from exc
        try:
            for network in spec.networks[1:]:
                self.client.networks.get(network).connect(container)
            self._start(container)
            container.reload()
        except self.errors.APIError as exc:
            self.remove(name, timeout=0)
            raise ContainerError("could not start container %s: %s" % (name, exc.explanation or exc)) from exc
        nets = container.attrs["NetworkSettings"]["Networks"]
        address = (nets.get(spec.networks[0]) or {}).get("IPAddress")
        if not address:
            self.remove(name, timeout=0)
            raise ContainerError("container %s got no address on network %s" % (name, spec.networks[0]))
        return WebContainer(id=container.id, name=name, running=True, address=address, created=now,
                            generation=generation, spec_hash=spec_hash, image_id=container.attrs.get("Image", ""))

    def _start(self, container) -> None:
        """Start the created container; once more when the runtime failed for a reason of its own."""
        try:
            container.start()
        except self.errors.APIError as exc:
            if TRANSIENT_START not in str(getattr(exc, "explanation", None) or exc):
                raise
            time.sleep(0.5)
            container.start()


def http_healthy(address: str, port: int, path: str, timeout: float = 2.0) -> str:
    """Probe ``http://address:port/path``; return "" when healthy (2xx/3xx) or why not."""
    url = "http://%s:%d%s" % (address, port, path)
    # No proxy: the container is on a local bridge, whatever http_proxy the environment sets.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return "" if response.status < 400 else "HTTP %d" % response.status
    except urllib.error.HTTPError as exc:
        return "HTTP %d" % exc.code
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
