"""Kill the first server of a backend that is not one of the known ones, as soon as HAProxy has it UP.

Runs inside a lab VPS, next to HAProxy's runtime socket and Docker: a replica that dies right after
its switch. Prints the container's name; exits 1 when none came within the time given.

    python3 kill_new_server.py <backend> <known,names> <seconds>
"""

import socket
import subprocess
import sys
import time

SOCKET = "/var/lib/rotor/haproxy/run/admin.sock"


def stat() -> list:
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(SOCKET)
    conn.sendall(b"show stat\n")
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    conn.close()
    return [line.split(",") for line in data.decode().splitlines()]


def main() -> int:
    backend, known, seconds = sys.argv[1], set(sys.argv[2].split(",")), float(sys.argv[3])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for fields in stat():
            if len(fields) > 17 and fields[0] == backend and fields[1] not in known | {"BACKEND", "FRONTEND"} \
                    and fields[17] == "UP":
                # No restart policy: it stays dead, as a replica that crashed for good.
                subprocess.run(["docker", "update", "--restart=no", fields[1]], capture_output=True, check=False)
                subprocess.run(["docker", "kill", fields[1]], capture_output=True, check=False)
                print(fields[1])
                return 0
        time.sleep(0.05)
    return 1


if __name__ == "__main__":
    sys.exit(main())
