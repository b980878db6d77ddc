"""Inject one fault into a rotation at a chosen moment, from inside a lab VPS.

    python3 rotation_fault.py <backend> <service> <known,names> <moment> <fault> <seconds>

(The service is on the network ``app`` and listens on 8080, haproxy_rotate's defaults.)

Runs next to HAProxy's runtime socket and the VPS's Docker engine (python3-docker, which the roles
install), watching them while haproxy_rotate replaces the ``known`` containers. Moments:

- ``started``: a new container of the service is running and has not answered its health check
  (this host's connections to the service's port are refused until then; HAProxy's are not);
- ``added``: HAProxy has a server that is not one of the known ones;
- ``drain``: a known server is leaving HAProxy (out of the backend file, in DRAIN or MAINT, or gone)
  while a new one is there.

Faults: ``kill-new`` (the new container crashes for good: restart policy off, then SIGKILL to its
process), ``kill-haproxy`` (SIGKILL to HAProxy's main process: Docker's restart policy starts it again,
from its files), ``restart-docker`` (``systemctl restart docker``: live-restore keeps the containers
running). Prints one JSON object (moment, fault, the new container, seconds from start to the fault,
how long the fault took); exits 1 when the moment did not come within ``seconds``.
"""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import docker

SOCKET = "/var/lib/rotor/haproxy/run/admin.sock"
BACKEND_DIR = "/etc/rotor/haproxy/conf.d"
HAPROXY = "rotor-haproxy"


def servers(backend):
    """name -> status of the backend's servers (show stat); {} while HAProxy does not answer."""
    conn = socket.socket(socket.AF_UNIX)
    try:
        conn.connect(SOCKET)
        conn.sendall(b"show stat\n")
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        return {}
    finally:
        conn.close()
    found = {}
    for line in data.decode(errors="replace").splitlines():
        fields = line.split(",")
        if len(fields) > 17 and fields[0] == backend and fields[1] not in ("BACKEND", "FRONTEND"):
            found[fields[1]] = fields[17]
    return found


def file_servers(backend):
    try:
        with open(os.path.join(BACKEND_DIR, backend + ".cfg"), encoding="utf-8") as handle:
            return {line.split()[1] for line in handle if line.strip().startswith("server ")}
    except OSError:
        return set()


def wait_started(client, service, deadline):
    """The first new container of the service, killed-ready: (name, pid) once its process runs."""
    events = queue.Queue()

    def follow():
        for event in client.events(decode=True, filters={"type": "container", "event": "create",
                                                         "label": "org.rotor.vps.service=%s" % service}):
            events.put(event)

    threading.Thread(target=follow, daemon=True).start()
    while time.monotonic() < deadline:
        try:
            event = events.get(timeout=0.2)
        except queue.Empty:
            continue
        name = event["Actor"]["Attributes"]["name"]
        while time.monotonic() < deadline:
            pid = client.api.inspect_container(name)["State"]["Pid"]
            if pid:
                return name, pid
            time.sleep(0.002)
    return None, 0


def wait_added(backend, known, deadline):
    while time.monotonic() < deadline:
        new = [name for name in servers(backend) if name not in known]
        if new:
            return new[0]
        time.sleep(0.005)
    return None


def wait_drain(backend, known, deadline):
    while time.monotonic() < deadline:
        live = servers(backend)
        new = [name for name in live if name not in known]
        if new:
            listed = file_servers(backend)
            if any(name not in listed or name not in live or live[name].startswith(("DRAIN", "MAINT")) for name in known):
                return new[0]
        time.sleep(0.002)
    return None


def main(argv):
    backend, service, known, moment, fault, seconds = argv[1], argv[2], set(argv[3].split(",")), argv[4], argv[5], float(argv[6])
    network, port = "app", "8080"  # the service's first network and port (haproxy_rotate's defaults)
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=30)
    start = time.monotonic()
    deadline = start + seconds
    pid = 0
    if moment == "started":
        # The module's health probes (from this host) are refused while we wait, so that the new
        # container is killed before it has answered one, however fast it starts.
        subnet = client.networks.get(network).attrs["IPAM"]["Config"][0]["Subnet"]
        rule = ["OUTPUT", "-p", "tcp", "-d", subnet, "--dport", port, "-j", "REJECT", "--reject-with", "tcp-reset"]
        subprocess.run(["iptables", "-I"] + rule, check=True)
        try:
            new, pid = wait_started(client, service, deadline)
            if new is not None:
                client.api.update_container(new, restart_policy={"Name": "no"})
                os.kill(pid, signal.SIGKILL)
        finally:
            subprocess.run(["iptables", "-D"] + rule, check=True)
    elif moment == "added":
        new = wait_added(backend, known, deadline)
    else:
        new = wait_drain(backend, known, deadline)
    if new is None:
        print(json.dumps({"moment": moment, "fault": fault, "new": None}))
        return 1
    at = time.monotonic()
    if fault == "kill-new":
        if not pid:  # (killed above at "started")
            # No restart policy: it stays dead, as a replica that crashed for good.
            client.api.update_container(new, restart_policy={"Name": "no"})
            os.kill(client.api.inspect_container(new)["State"]["Pid"], signal.SIGKILL)
    elif fault == "kill-haproxy":
        os.kill(client.api.inspect_container(HAPROXY)["State"]["Pid"], signal.SIGKILL)
    elif fault == "restart-docker":
        subprocess.run(["systemctl", "restart", "docker"], check=True, timeout=120)
    else:
        raise SystemExit("unknown fault %s" % fault)
    print(json.dumps({"moment": moment, "fault": fault, "new": new, "after": round(at - start, 3),
                      "took": round(time.monotonic() - at, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
