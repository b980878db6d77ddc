# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one Docker engine client of the collection's modules (python docker SDK).

It knows containers and images in general; what a kind of container means (a rotated web
container, a tenant's PostgREST) lives in the module_utils of that kind, built on this class.
Every failure is an ``EngineError`` naming the container or image and what Docker said.
"""

from __future__ import annotations

import calendar
import os
import signal as signals
import time
from typing import Optional


class EngineError(Exception):
    """Docker refused an operation or a container did not behave."""


def signal_number(name: str) -> int:
    """The number of a signal given by name, with or without its SIG prefix (``HUP``, ``SIGUSR2``)."""
    wanted = name.upper() if name.upper().startswith("SIG") else "SIG" + name.upper()
    number = getattr(signals, wanted, None)
    if not isinstance(number, int) or wanted.startswith("SIG_"):
        raise EngineError("%r is not a signal name such as SIGHUP or USR1" % name)
    return int(number)


def process_in_container(pid: int, container_id: str, proc: str = "/proc") -> bool:
    """Whether process ``pid`` of this host runs in the container ``container_id`` (its cgroup names it)."""
    if pid <= 0 or not container_id:
        return False
    try:
        with open("%s/%d/cgroup" % (proc, pid), encoding="utf-8") as handle:
            return container_id in handle.read()
    except OSError:
        return False


def signal_warning(signal: str, container: str, why: str) -> str:
    """The warning for a signal that went through Docker's kill endpoint (DockerEngine.signal said why)."""
    return ("%s went to container %s through Docker's kill endpoint (%s): Docker now counts it as stopped by hand "
            "and restarts it neither after a crash nor at boot until it is started again (docker restart %s)"
            % (signal, container, why, container))


def namespace_init(pid: int, proc: str = "/proc") -> bool:
    """Whether process ``pid`` of this host is PID 1 of its own PID namespace (a container's main process)."""
    try:
        with open("%s/%d/status" % (proc, pid), encoding="utf-8") as handle:
            fields = [line.split()[1:] for line in handle if line.startswith("NSpid:")]
    except OSError:
        return False
    return bool(fields) and len(fields[0]) > 1 and fields[0][-1] == "1"


# The first engine API version whose health checks take a start interval (Docker 25.0).
START_INTERVAL_API = (1, 44)


def with_start_interval(check: dict, api_version: object, every: str = "1s") -> dict:
    """A health check (docker_container's ``healthcheck``) that also runs every ``every`` during its start
    period where the engine's API (``api_version`` as ``docker version`` prints it, "1.45") has a start
    interval: a started container is found healthy about that long after it is ready, not a whole interval
    after it started. Unchanged on an older or unknown engine ("") and for a check without a start period."""
    try:
        version = tuple(int(part) for part in str(api_version).strip().split(".")[:2])
    except ValueError:
        version = ()
    if not isinstance(check, dict) or not check.get("start_period") or version < START_INTERVAL_API:
        return check
    return dict(check, start_interval=every)


class DockerEngine:
    """Containers and images over the engine's API at ``base_url`` (``unix:///var/run/docker.sock``)."""

    def __init__(self, base_url: str, timeout: int = 60):
        import docker  # imported here so a module can report a missing SDK cleanly

        # An engine on this host: its containers' processes are this host's (DockerEngine.signal).
        self.local = base_url.startswith("unix://")
        try:
            self.client = docker.DockerClient(base_url=base_url, timeout=timeout)
        except docker.errors.DockerException as exc:  # the SDK asks the engine for its API version first
            raise EngineError("could not reach the Docker engine at %s: %s" % (base_url, exc)) from exc
        self.errors = docker.errors

    def close(self) -> None:
        self.client.close()

    def image_id(self, image: str, *, pull: bool) -> Optional[str]:
        """The ID of the local image for ``image``; pulled first when missing and ``pull`` is set."""
        try:
            return self.client.images.get(image).id
        except self.errors.ImageNotFound:
            if not pull:
                return None
        try:
            return self.client.images.pull(image).id
        except self.errors.APIError as exc:
            raise EngineError("could not pull image %s: %s" % (image, exc.explanation or exc)) from exc

    def state(self, name: str) -> str:
        """The container's state ("running", "exited", ...) or "missing"."""
        try:
            return self.client.containers.get(name).status
        except self.errors.NotFound:
            return "missing"

    def logs(self, name: str, *, since: Optional[float] = None, tail: Optional[int] = None) -> str:
        """The container's log (stdout and stderr) since an epoch time, or its last ``tail`` lines.

        Older SDKs (Debian 12's) take whole seconds only: the log is asked for from the whole second
        before ``since``, with Docker's timestamps, and the lines before ``since`` are dropped here.
        """
        options = {"stdout": True, "stderr": True}
        if since is not None:
            options.update(since=int(since), timestamps=True)
        if tail is not None:
            options["tail"] = tail
        try:
            text = self.client.containers.get(name).logs(**options).decode("utf-8", errors="replace")
        except self.errors.NotFound:
            raise EngineError("container %s does not exist" % name) from None
        except self.errors.DockerException as exc:
            raise EngineError("could not read the log of container %s: %s" % (name, exc)) from None
        return text if since is None else lines_since(text, since)

    def logs_tail(self, name: str, lines: int = 5) -> str:
        """The last lines of the log, or "" when it cannot be read (for error messages)."""
        try:
            return self.logs(name, tail=lines).strip()
        except EngineError:
            return ""

    def signal(self, name: str, signal: str) -> str:
        """Send ``signal`` (``SIGHUP``, ``USR1``...) to the running container's main process. Returns "" when
        it went by kill(2) on this host, else why it went through the engine's kill endpoint (for a warning).

        Docker marks a container it was asked to signal through its API as stopped by hand, whatever the
        signal: from then on neither a crash nor a reboot brings it back (restart policies ``always`` and
        ``unless-stopped`` alike; moby issue 41302). When the engine runs on this host, the signal goes to
        the main process itself: a pidfd is opened on the PID Docker reports, and the signal is sent through
        it only once that process is checked to be the container's (its cgroup names the container, it is
        PID 1 of its namespace, and Docker still reports that PID): a PID reused meanwhile is never
        signalled. The restart policy stays whole. A remote engine gets the API's kill.
        """
        number = signal_number(signal)
        container = self._running(name, signal)
        why = "the Docker engine is not on this host"
        if self.local:
            pid = int((container.attrs.get("State") or {}).get("Pid") or 0)
            why = self._kill(container, pid, number)
            if not why:
                return ""
        try:
            container.kill(signal=number)
        except self.errors.APIError as exc:
            raise EngineError("could not send %s to container %s: %s" % (signal, name, exc.explanation or exc)) from exc
        return why

    def _running(self, name: str, signal: str):
        try:
            container = self.client.containers.get(name)
        except self.errors.NotFound:
            raise EngineError("container %s does not exist" % name) from None
        if not (container.attrs.get("State") or {}).get("Running"):
            raise EngineError("could not send %s to container %s: it is not running" % (signal, name))
        return container

    def _kill(self, container, pid: int, number: int) -> str:
        """kill(2) of the container's main process through a pidfd; "" when sent, else why not."""
        try:
            pidfd = os.pidfd_open(pid) if pid > 0 else -1
        except (OSError, AttributeError) as exc:  # gone, not root, or no pidfd (kernel < 5.3)
            return "its main process %d could not be opened here: %s" % (pid, exc)
        if pidfd < 0:
            return "Docker reports no process for it"
        try:
            container.reload()
            if int((container.attrs.get("State") or {}).get("Pid") or 0) != pid \
                    or not process_in_container(pid, container.id) or not namespace_init(pid):
                return "process %d on this host is not the container's main process" % pid
            signals.pidfd_send_signal(pidfd, number)
            return ""
        except self.errors.DockerException as exc:
            return "the container could not be read again: %s" % exc
        except OSError as exc:
            return "kill(2) of process %d failed: %s" % (pid, exc)
        finally:
            os.close(pidfd)

    def run_in(self, name: str, argv: list) -> tuple:
        """Run ``argv`` in the running container ``name`` (as its user); ``(exit code, output)``."""
        try:
            code, output = self.client.containers.get(name).exec_run(argv, stdout=True, stderr=True)
        except self.errors.NotFound:
            raise EngineError("container %s does not exist" % name) from None
        except self.errors.APIError as exc:
            raise EngineError("could not run %s in container %s: %s" % (argv[0], name, exc.explanation or exc)) from exc
        return code, (output or b"").decode("utf-8", errors="replace")

    def run_once(self, image: str, argv: list, *, name: str, mounts: Optional[dict] = None,
                 read_only_mounts: Optional[dict] = None, environment: Optional[dict] = None, network: str = "bridge",
                 timeout: int = 300, memory: str = "256m", pids_limit: int = 128) -> tuple:
        """Run ``argv`` in a new container of ``image`` until it exits: ``(exit code, output)``.

        Hardened like every container of the collection (no capabilities, no new privileges,
        read-only root with a tmpfs /tmp, memory and pids limits); ``mounts`` and
        ``read_only_mounts`` map host paths to container paths. The container is removed
        afterwards, and first when an interrupted run left one of that name.
        """
        self.remove(name, timeout=5)
        self.image_id(image, pull=True)
        volumes = {source: {"bind": target, "mode": "rw"} for source, target in (mounts or {}).items()}
        volumes.update({source: {"bind": target, "mode": "ro"} for source, target in (read_only_mounts or {}).items()})
        try:
            container = self.client.containers.run(
                image, argv, name=name, detach=True, volumes=volumes, environment=environment or {},
                network_mode=network, cap_drop=["ALL"], security_opt=["no-new-privileges"], read_only=True,
                tmpfs={"/tmp": "size=64m,noexec,nosuid,nodev"}, mem_limit=memory, pids_limit=pids_limit,
                labels={"org.rotor.vps.managed-by": "rotor.vps"})
        except self.errors.APIError as exc:
            raise EngineError("could not run %s in a container of %s: %s"
                              % (argv[0] if argv else image, image, exc.explanation or exc)) from exc
        try:
            started = time.monotonic()
            try:
                code = int(container.wait(timeout=timeout).get("StatusCode", 1))
                late = ""
            except Exception as exc:  # the SDK raises its HTTP library's errors  # pylint: disable=broad-except
                try:
                    container.kill()
                except self.errors.APIError:
                    pass  # it ended meanwhile
                late = ("\n(stopped after %d s)" % timeout if time.monotonic() - started >= timeout - 1
                        else "\n(the engine stopped answering: %s)" % exc)
                code = 124
            return code, container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace") + late
        except self.errors.APIError as exc:
            raise EngineError("could not read the output of container %s: %s" % (name, exc.explanation or exc)) from exc
        finally:
            try:
                container.remove(force=True)
            except self.errors.APIError:
                pass

    def signal_stop(self, name: str) -> None:
        """Send the container its stop signal (the image's STOPSIGNAL, SIGTERM by default) and return.

        It shuts down while the caller goes on; ``remove`` then waits for it.
        """
        try:
            container = self.client.containers.get(name)
            if container.status == "running":
                container.kill(signal=container.attrs.get("Config", {}).get("StopSignal") or "SIGTERM")
        except self.errors.NotFound:
            return
        except self.errors.APIError as exc:
            raise EngineError("could not signal container %s to stop: %s" % (name, exc.explanation or exc)) from exc

    def remove(self, name: str, *, timeout: int) -> None:
        """Stop (with the image's stop signal, then SIGKILL after ``timeout`` s) and remove."""
        try:
            container = self.client.containers.get(name)
        except self.errors.NotFound:
            return
        try:
            if container.status == "running":
                container.stop(timeout=timeout)
            container.remove(v=True, force=True)
        except self.errors.NotFound:
            return
        except self.errors.APIError as exc:
            raise EngineError("could not remove container %s: %s" % (name, exc.explanation or exc)) from exc


def lines_since(text: str, since: float) -> str:
    """The lines of a log read with Docker's timestamps (RFC 3339, nanoseconds) at ``since`` or later,
    without their timestamps."""
    kept = []
    for line in text.splitlines(keepends=True):
        stamp, _space, rest = line.partition(" ")
        if _epoch(stamp) >= since:
            kept.append(rest)
    return "".join(kept)


def _epoch(stamp: str) -> float:
    """Seconds since the epoch of Docker's ``2026-12-01T04:05:01.123456789Z``; 0 when it is not one."""
    try:
        whole, _dot, fraction = stamp.rstrip("Z").partition(".")
        seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0
    digits = "".join(ch for ch in fraction if ch.isdigit())
    return seconds + (int(digits) / 10 ** len(digits) if digits else 0.0)
