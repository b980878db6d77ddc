"""Kill PgBouncer at a chosen moment of a pgbouncer_tenant run, from inside a lab VPS.

    python3 pgbouncer_fault.py <config_dir> <moment> <tenant> <container> <seconds>

Moments: ``write`` (a new file appears in <config_dir>/backup: the module is about to replace the
tenant files), ``reload`` (databases.ini lists <tenant>: the files are written and the RELOAD comes
next). The fault: SIGKILL to the container's main process, a crash (Docker's restart policy starts
PgBouncer again, on whatever files are there then). Prints one JSON object (moment, seconds from
start to the kill); exits 1 when the moment did not come within ``seconds``.
"""

import json
import os
import re
import signal
import sys
import time

import docker


def backups(directory):
    try:
        return set(os.listdir(directory))
    except FileNotFoundError:
        return set()


def listed(path, tenant):
    try:
        with open(path, encoding="utf-8") as handle:
            return re.search(r"^%s = " % re.escape(tenant), handle.read(), re.M) is not None
    except OSError:
        return False


def main(argv):
    config_dir, moment, tenant, container, seconds = argv[1], argv[2], argv[3], argv[4], float(argv[5])
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=30)
    pid = client.api.inspect_container(container)["State"]["Pid"]
    backup_dir = os.path.join(config_dir, "backup")
    before = backups(backup_dir)
    start = time.monotonic()
    while time.monotonic() < start + seconds:
        if moment == "write" and backups(backup_dir) - before or \
                moment == "reload" and listed(os.path.join(config_dir, "databases.ini"), tenant):
            os.kill(pid, signal.SIGKILL)
            print(json.dumps({"moment": moment, "after": round(time.monotonic() - start, 3)}))
            return 0
        time.sleep(0.001)
    print(json.dumps({"moment": moment, "after": None}))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
