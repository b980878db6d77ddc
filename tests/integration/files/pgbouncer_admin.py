# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one command on PgBouncer's admin console and print the rows, tab-separated.

    PGPASSWORD=... pgbouncer_admin.py --socket-dir /var/lib/rotor/pgbouncer/run --user pgbouncer_admin RELOAD

The password comes from PGPASSWORD (never the command line). --wait retries the connection until
the deadline (a container that just started has no socket yet). --expect NAME=VALUE, after the
command, polls SHOW CONFIG until setting NAME has VALUE and fails, naming what PgBouncer shows,
when it does not by then: RELOAD answers before a bad file is noticed, so the check is what tells.
A test tool: the integration tests observe PgBouncer with it from inside the lab VPS (the role
uses the rotor.vps.pgbouncer_command module). Runs with the system python3 and python3-psycopg.
"""

import argparse
import sys
import time

import psycopg


def connect(args):
    """Connect to the admin console, retrying until --wait seconds have passed."""
    deadline = time.monotonic() + args.wait
    delay = 0.1
    while True:
        try:
            # autocommit and no parameters: the admin console speaks the simple query protocol only.
            return psycopg.connect(host=args.socket_dir, port=args.port, user=args.user, dbname="pgbouncer",
                                   autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            if time.monotonic() + delay > deadline:
                raise SystemExit("Could not reach PgBouncer's admin console in %s as %s: %s"
                                 % (args.socket_dir, args.user, str(exc).strip()))
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def run(conn, command):
    cur = conn.execute(command)
    return cur.fetchall() if cur.description else []


def config(conn):
    """SHOW CONFIG as {key: value}."""
    return {row[0]: row[1] for row in run(conn, "SHOW CONFIG")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket-dir", required=True, help="directory of PgBouncer's unix socket")
    parser.add_argument("--port", type=int, default=6432)
    parser.add_argument("--user", required=True, help="an admin_users member")
    parser.add_argument("--wait", type=float, default=0, help="seconds to keep retrying the connection")
    parser.add_argument("--expect", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting SHOW CONFIG must show after the command (repeatable)")
    parser.add_argument("--expect-wait", type=float, default=5, help="seconds to wait for --expect")
    parser.add_argument("command", nargs="+", help="the command, e.g. SHOW CONFIG")
    args = parser.parse_args(argv)
    command = " ".join(args.command)

    with connect(args) as conn:
        try:
            rows = run(conn, command)
        except psycopg.Error as exc:
            sys.stderr.write("PgBouncer refused %r: %s\n" % (command, str(exc).strip()))
            return 1
        for row in rows:
            sys.stdout.write("\t".join("" if value is None else str(value) for value in row) + "\n")
        if not args.expect:
            return 0
        wanted = dict(item.partition("=")[::2] for item in args.expect)
        deadline = time.monotonic() + args.expect_wait
        while True:
            shown = config(conn)
            wrong = {key: shown.get(key) for key, value in wanted.items() if shown.get(key) != value}
            if not wrong:
                return 0
            if time.monotonic() > deadline:
                sys.stderr.write("After %r PgBouncer shows %s, not %s: the new configuration did not take "
                                 "(see `docker logs` of the container)\n"
                                 % (command, wrong, {key: wanted[key] for key in wrong}))
                return 1
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
