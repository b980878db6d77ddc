# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Send one command to an HAProxy CLI socket (runtime API or master CLI) and print the answer.

    haproxy_cli.py --socket /var/lib/rotor/haproxy/run/master.sock --expect '^Success=1' reload

--wait retries the connection (a container that just started has no socket yet, or a stale one)
until the deadline; --expect fails, printing HAProxy's answer, when the answer does not match.
A test tool: the integration tests observe HAProxy with it from inside the lab VPS (the roles use
the rotor.vps.haproxy_command module). Standard library only.
"""

import argparse
import re
import socket
import sys
import time


def ask(path, command, timeout):
    """Return HAProxy's whole answer to one command on the UNIX socket at path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        # Non-interactive mode: HAProxy answers and closes once our side is done writing.
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks).decode(errors="replace")
            chunks.append(chunk)
    finally:
        sock.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="path of the CLI socket")
    parser.add_argument("--wait", type=float, default=0, help="seconds to keep retrying the connection")
    parser.add_argument("--timeout", type=float, default=30, help="seconds to wait for the answer")
    parser.add_argument("--expect", help="regular expression the answer must match (multi-line)")
    parser.add_argument("command", nargs="+", help="the command, e.g. show info")
    args = parser.parse_args(argv)
    command = " ".join(args.command)

    deadline = time.monotonic() + args.wait
    delay = 0.1
    while True:
        try:
            answer = ask(args.socket, command, args.timeout)
            break
        except OSError as exc:
            if time.monotonic() + delay > deadline:
                sys.stderr.write("Could not send %r to HAProxy at %s: %s\n" % (command, args.socket, exc))
                return 1
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    sys.stdout.write(answer)
    if args.expect and not re.search(args.expect, answer, re.MULTILINE):
        sys.stderr.write("HAProxy's answer to %r at %s does not match %r:\n%s\n" % (command, args.socket, args.expect, answer))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
