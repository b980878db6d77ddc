"""Benchmark: pgbench straight to PostgreSQL versus through PgBouncer, on one lab VPS, in one run.

A disposable lab VPS is converged with bench/pgbouncer/converge.yml (docker_host, networks,
postgres, pgbouncer roles, then a bench tenant: database and role `bench`, registered in PgBouncer
with rotor.vps.pgbouncer_tenant). pgbench runs in a container of its own on the data network, as a
tenant's API would (or, with --client postgres, inside rotor-postgres), against
  direct     rotor-postgres:5432
  pgbouncer  rotor-pgbouncer:6432 (pool_mode transaction, so the simple query protocol), which
             reaches PostgreSQL through its unix socket, as the pgbouncer role sets it up
             (--postgres-via tcp: over the data network to rotor-postgres:5432 instead)
for the select-only (-S) and the TPC-B-like (default) scripts, each with persistent connections and
with a new connection per transaction (-C), with the same clients and threads. It prints TPS,
average latency, the ratio PgBouncer/direct per case against the targets (persistent >= 0.8,
-C >= 5), and the CPU each side spent per transaction (pgbench, PgBouncer, PostgreSQL).
Every pgbench run is bounded in time (-T). Not a pass/fail test.

    make bench-pgbouncer        (or: python3 bench/pgbouncer/run.py --help)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = str(ROOT / "tests" / "lab" / "lab")
BIN = Path(sys.executable).parent
PLAYBOOK = ROOT / "bench" / "pgbouncer" / "converge.yml"
LAB_VARS = ROOT / "inventories" / "lab" / "group_vars" / "vps.yml"
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
import _scram  # noqa: E402  (standard library only)

POSTGRES = "rotor-postgres"
PGBOUNCER = "rotor-pgbouncer"
# With --client container: a pgbench container of the benchmark's own on the data network.
CLIENT = "rotor-bench-client"
TARGETS = {"direct": (POSTGRES, 5432), "pgbouncer": (PGBOUNCER, 6432)}
SCRIPTS = (("select-only", ["-S"]), ("TPC-B-like", []))
CONNECTIONS = (("persistent", [], 0.8), ("-C", ["-C"], 5.0))
TENANT = "bench"


def log(message: str) -> None:
    print("[bench] %s" % message, flush=True)


@dataclass
class Lab:
    """A lab VPS and the bench tenant's password; runs commands in the VPS and in its containers."""

    vps: str
    password: str
    # The container pgbench and psql run in: rotor-postgres, or CLIENT.
    client: str = POSTGRES
    # CPU each container uses when no pgbench runs (health checks, background processes), ns/s.
    idle_ns_per_s: dict[str, float] = field(default_factory=dict)

    def sh(self, command: str, *, timeout: float = 120, check: bool = True) -> str:
        """Run a shell command on the VPS host. PGPASSWORD is passed by name, never on a command line."""
        proc = subprocess.run(["docker", "exec", "-e", "PGPASSWORD", self.vps, "sh", "-c", command],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              env=dict(os.environ, PGPASSWORD=self.password))
        if check and proc.returncode:
            raise RuntimeError("%s on %s failed (%d): %s" % (command, self.vps, proc.returncode,
                                                             (proc.stderr or proc.stdout).strip()[-2000:]))
        return proc.stdout

    def in_client(self, command: str, **kwargs) -> str:
        """Run a shell command in the client container (as its user, 999)."""
        return self.sh("docker exec -e PGPASSWORD %s sh -c %s" % (self.client, shlex.quote(command)), **kwargs)

    def start_client(self) -> None:
        """Start CLIENT: PostgreSQL's own image (it ships pgbench and psql), idle, on the data network."""
        image = self.sh("docker inspect -f '{{.Config.Image}}' %s" % POSTGRES).strip()
        network = self.sh("docker inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' %s"
                          % POSTGRES).split()[0]
        self.sh("docker rm -f %s >/dev/null 2>&1; docker run -d --name %s --network %s --user 999:999 "
                "--entrypoint sleep %s infinity >/dev/null" % (CLIENT, CLIENT, network, image))
        self.client = CLIENT

    def measure_idle(self, seconds: float) -> None:
        """CPU rate of each container while nothing runs against it, to subtract from the cases."""
        before = {c: self.cpu_ns(c) for c in (POSTGRES, PGBOUNCER)}
        started = time.monotonic()
        time.sleep(seconds)
        after = {c: self.cpu_ns(c) for c in (POSTGRES, PGBOUNCER)}
        wall = time.monotonic() - started
        self.idle_ns_per_s = {c: (after[c] - before[c]) / wall for c in before}

    def cpu_ns(self, container: str) -> int:
        """CPU time the container's cgroup has used so far, in ns (cgroup v2 or v1)."""
        out = self.sh("docker exec %s sh -c 'cat /sys/fs/cgroup/cpu.stat 2>/dev/null "
                      "|| cat /sys/fs/cgroup/cpuacct/cpuacct.usage'" % container)
        match = re.search(r"^usage_usec (\d+)", out, re.M)
        return int(match.group(1)) * 1000 if match else int(out.split()[0])


@dataclass
class Result:
    tps: float
    latency_ms: float
    transactions: int
    failed: int
    connection_ms: float | None
    cpu_s: dict[str, float] = field(default_factory=dict)

    def cpu_ms_per_transaction(self, side: str) -> float:
        return 1000.0 * self.cpu_s[side] / self.transactions if self.transactions else float("nan")


def parse_pgbench(output: str) -> Result:
    """The figures of one pgbench run from its report (PostgreSQL 15+ wording)."""

    def number(pattern: str) -> float | None:
        match = re.search(pattern, output, re.M)
        return float(match.group(1)) if match else None

    tps = number(r"^tps = ([\d.]+)")
    if tps is None:
        raise RuntimeError("pgbench printed no tps line:\n%s" % output[-2000:])
    return Result(tps=tps, latency_ms=number(r"^latency average = ([\d.]+) ms") or float("nan"),
                  transactions=int(number(r"^number of transactions actually processed: (\d+)") or 0),
                  failed=int(number(r"^number of failed transactions: (\d+)") or 0),
                  connection_ms=number(r"^average connection time = ([\d.]+) ms"))


def times_children(output: str) -> float:
    """User + system seconds of the shell's children, from the second line of `times`."""
    values = re.findall(r"(\d+)m([\d.]+)s", output.strip().splitlines()[-1])
    return sum(60 * int(m) + float(s) for m, s in values)


def pgbench(lab: Lab, target: str, options: list[str], args: argparse.Namespace, seconds: float) -> Result:
    """One bounded pgbench run (-T seconds) in the client container; CPU of each side measured around it."""
    host, port = TARGETS[target]
    command = ("pgbench -n -h %s -p %d -U %s -c %d -j %d -T %d %s %s 2>&1; echo; times"
               % (host, port, TENANT, args.clients, args.threads, seconds, " ".join(options), TENANT))
    before = {c: lab.cpu_ns(c) for c in (POSTGRES, PGBOUNCER)}
    started = time.monotonic()
    output = lab.in_client(command, timeout=seconds + 120)
    wall = time.monotonic() - started
    after = {c: lab.cpu_ns(c) for c in (POSTGRES, PGBOUNCER)}
    result = parse_pgbench(output)
    used = {c: max(0.0, (after[c] - before[c] - lab.idle_ns_per_s.get(c, 0.0) * wall) / 1e9) for c in before}
    client = times_children(output)
    # pgbench in rotor-postgres runs in its cgroup: the server's share is the rest of it.
    server = used[POSTGRES] - client if lab.client == POSTGRES else used[POSTGRES]
    result.cpu_s = {"pgbench": client, "pgbouncer": used[PGBOUNCER], "postgres": max(0.0, server)}
    return result


def prepare(lab: Lab) -> None:
    """Same start for every case: fresh statistics on the small tables, an empty history table."""
    lab.in_client("psql -X -q -v ON_ERROR_STOP=1 -h %s -U %s -d %s "
                  "-c \"VACUUM pgbench_branches\" -c \"VACUUM pgbench_tellers\" -c \"TRUNCATE pgbench_history\""
                  % (POSTGRES, TENANT, TENANT))


def versions(lab: Lab) -> dict[str, str]:
    return {
        "postgres": lab.in_client("psql -X -A -t -h %s -U %s -d %s -c \"SHOW server_version\""
                                  % (POSTGRES, TENANT, TENANT)).strip(),
        "pgbouncer": lab.sh("docker exec %s pgbouncer --version" % PGBOUNCER).splitlines()[0].strip(),
        "pgbench": lab.in_client("pgbench --version").strip(),
        "pool": lab.sh("docker exec %s sh -c 'grep -h -E \"^(pool_mode|auth_type|max_client_conn|default_pool_size)"
                       "[[:space:]]*=|^%s[[:space:]]*=\" /etc/pgbouncer/*.ini'" % (PGBOUNCER, TENANT),
                       check=False).strip(),
    }


def converge(vps: str, tmp: Path, args: argparse.Namespace, passwords: dict[str, str]) -> None:
    inventory = tmp / "hosts.yml"
    inventory.write_text("vps:\n  hosts:\n    %s:\n      ansible_connection: community.docker.docker\n"
                         "      ansible_python_interpreter: /usr/bin/python3\n" % vps)
    extra = tmp / "vars.json"
    extra.touch(mode=0o600)
    variables = {
        "postgres_superuser_password": passwords["superuser"],
        "pgbouncer_admin_password": passwords["admin"],
        "bench_tenant": TENANT,
        "bench_password": passwords["bench"],
        "bench_pool_size": args.pool_size or args.clients,
        "bench_postgres_host": POSTGRES if args.postgres_via == "tcp" else "/var/run/postgresql",
    }
    if args.scram_iterations != _scram.DEFAULT_ITERATIONS:
        # PostgreSQL stores this verifier as it is; PgBouncer's userlist gets the same one.
        variables["bench_password_stored"] = _scram.make_verifier(passwords["bench"], iterations=args.scram_iterations)
    extra.write_text(json.dumps(variables))
    log("converging %s: docker_host, networks, postgres, pgbouncer, the bench tenant" % vps)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", "@%s" % LAB_VARS,
                           "-e", "@%s" % extra, str(PLAYBOOK)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800, check=False)
    if proc.returncode:
        raise SystemExit("converge failed:\n%s%s" % (proc.stdout[-4000:], proc.stderr[-2000:]))
    log("converged in %.0f s" % (time.monotonic() - started))


def run_cases(lab: Lab, args: argparse.Namespace) -> dict[tuple[str, str, str], list[Result]]:
    """Every case, direct and through PgBouncer back to back, in alternating order from round to round."""
    results: dict[tuple[str, str, str], list[Result]] = {}
    for round_ in range(args.rounds):
        for script, script_options in SCRIPTS:
            for connection, connection_options, _target in CONNECTIONS:
                order = ("direct", "pgbouncer") if round_ % 2 == 0 else ("pgbouncer", "direct")
                for target in order:
                    prepare(lab)
                    result = pgbench(lab, target, script_options + connection_options, args, args.duration)
                    results.setdefault((script, connection, target), []).append(result)
                    log("round %d/%d  %-11s %-10s %-9s  tps %9.1f  latency %7.2f ms  failed %d"
                        % (round_ + 1, args.rounds, script, connection, target, result.tps, result.latency_ms,
                           result.failed))
    return results


def median_result(results: list[Result]) -> Result:
    """The run with the median TPS (an odd number of rounds gives a real run)."""
    ordered = sorted(results, key=lambda r: r.tps)
    return ordered[(len(ordered) - 1) // 2]


def report(results: dict, args: argparse.Namespace, found: dict, lab_idle: dict[str, float]) -> None:
    print()
    print("pgbench direct to PostgreSQL vs through PgBouncer: scale %d, %d clients, %d threads, %d s per case, "
          "%d round(s)%s" % (args.scale, args.clients, args.threads, args.duration, args.rounds,
                             " (median by TPS)" if args.rounds > 1 else ""))
    print("  PostgreSQL %s; %s; %s, running in %s"
          % (found["postgres"], found["pgbouncer"], found["pgbench"], found["client"]))
    print("  PgBouncer: %s" % "; ".join(" ".join(line.split()) for line in found["pool"].splitlines()))
    print("  SCRAM-SHA-256 verifier of the bench role: %d iterations; host load average (1 min) before/after the "
          "runs: %.1f / %.1f on %d CPUs shared with whatever else runs here" % (
              args.scram_iterations, found["load_before"], found["load_after"], os.cpu_count() or 0))
    print()
    header = "  %-24s %10s %9s %10s %9s %7s %8s  %s" % (
        "case", "direct", "lat ms", "pgbouncer", "lat ms", "ratio", "target", "")
    print(header)
    print("  " + "-" * (len(header) - 2))
    for script, _options in SCRIPTS:
        for connection, _options, target in CONNECTIONS:
            direct = median_result(results[(script, connection, "direct")])
            pooled = median_result(results[(script, connection, "pgbouncer")])
            ratio = pooled.tps / direct.tps if direct.tps else float("nan")
            failed = direct.failed + pooled.failed
            print("  %-24s %10.1f %9.2f %10.1f %9.2f %7.2f %8s  %s%s" % (
                "%s, %s" % (script, connection), direct.tps, direct.latency_ms, pooled.tps, pooled.latency_ms,
                ratio, ">= %g" % target, "met" if ratio >= target else "NOT met",
                ", %d failed transactions" % failed if failed else ""))
    print()
    print("  CPU per transaction, ms: pgbench client / PgBouncer / PostgreSQL (idle use subtracted: PostgreSQL %.0f,"
          % (lab_idle.get(POSTGRES, 0) / 1e6))
    print("  PgBouncer %.0f ms/s); CPU ratio = direct total / PgBouncer total, the TPS ratio of a host whose CPUs only"
          % (lab_idle.get(PGBOUNCER, 0) / 1e6))
    print("  this work uses; connection time with -C.")
    for script, _options in SCRIPTS:
        for connection, _options, _target in CONNECTIONS:
            cells, totals = [], []
            for target in ("direct", "pgbouncer"):
                r = median_result(results[(script, connection, target)])
                split = [r.cpu_ms_per_transaction(side) for side in ("pgbench", "pgbouncer", "postgres")]
                totals.append(sum(split))
                cell = "%-9s %.3f / %.3f / %.3f" % (target, *split)
                if r.connection_ms is not None:
                    cell += ", connect %.1f ms" % r.connection_ms
                cells.append("%-50s" % cell)
            print("  %-24s %s CPU ratio %.2f" % ("%s, %s" % (script, connection), " ".join(cells),
                                                 totals[0] / totals[1] if totals[1] else float("nan")))
    print()
    print("  Reading -C: every transaction opens a new connection and logs in with SCRAM-SHA-256. Direct, PostgreSQL")
    print("  forks a backend and checks the login for each; through PgBouncer only PgBouncer checks the login and a")
    print("  pooled server connection is reused. pgbench, the client, computes the SCRAM proof (PBKDF2, %d"
          % args.scram_iterations)
    print("  iterations here) for every connection on both paths, on the same CPUs as the servers: that client cost,")
    print("  the first CPU column, bounds the -C ratio on a small host whatever the pooler saves (--scram-iterations")
    print("  shows the ratio with a cheaper login). Persistent: PgBouncer adds a hop and its own CPU per transaction.")


def main() -> None:
    parser = argparse.ArgumentParser(description="PgBouncer benchmark (see the module docstring)")
    parser.add_argument("--duration", type=int, default=15, help="seconds per case (pgbench -T)")
    parser.add_argument("--clients", type=int, default=8, help="pgbench -c, the same for every case")
    parser.add_argument("--threads", type=int, default=2, help="pgbench -j")
    parser.add_argument("--scale", type=int, default=10, help="pgbench -i -s")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every case; the median is reported")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of select-only load on each path first")
    parser.add_argument("--client", choices=("container", "postgres"), default="container",
                        help="where pgbench runs: in a container of its own on the data network (both paths cross "
                             "it, as a tenant's API does), or in rotor-postgres (the direct path then stays in its "
                             "network namespace)")
    parser.add_argument("--postgres-via", choices=("socket", "tcp"), default="socket",
                        help="how PgBouncer reaches PostgreSQL: the unix socket the pgbouncer role mounts (its "
                             "default), or TCP across the data network")
    parser.add_argument("--idle", type=float, default=9, help="seconds of measuring the containers' idle CPU use")
    parser.add_argument("--pool-size", type=int, default=0, help="the tenant's PgBouncer pool (default: --clients)")
    parser.add_argument("--scram-iterations", type=int, default=_scram.DEFAULT_ITERATIONS,
                        help="iterations of the bench role's SCRAM verifier (PostgreSQL's default: 4096); "
                             "fewer make each login cheaper for the client, to see what -C costs without it")
    parser.add_argument("--vps-prefix", default="rotor-bench-pg", help="name prefix of the disposable lab VPS")
    parser.add_argument("--keep", action="store_true", help="keep the VPS afterwards")
    args = parser.parse_args()
    for name in ("duration", "clients", "threads", "scale", "rounds", "scram_iterations"):
        if getattr(args, name) < 1:
            parser.error("--%s must be at least 1" % name.replace("_", "-"))

    vps = "%s-%s" % (args.vps_prefix, secrets.token_hex(3))
    passwords = {name: secrets.token_urlsafe(18) for name in ("superuser", "admin", "bench")}
    tmp = Path(tempfile.mkdtemp(prefix="bench-pgbouncer-"))
    subprocess.run([LAB, "vps-run", vps, "trixie"], check=True)
    try:
        converge(vps, tmp, args, passwords)
        lab = Lab(vps, passwords["bench"])
        if args.client == "container":
            lab.start_client()
        log("pgbench -i -s %d (database %s, from %s)" % (args.scale, TENANT, lab.client))
        lab.in_client("pgbench -i -q -s %d -h %s -U %s %s" % (args.scale, POSTGRES, TENANT, TENANT), timeout=600)
        found = versions(lab)
        found["client"] = lab.client
        if args.warmup:
            for target in TARGETS:
                pgbench(lab, target, ["-S"], args, args.warmup)
        lab.measure_idle(args.idle)
        started = time.monotonic()
        found["load_before"] = os.getloadavg()[0]
        results = run_cases(lab, args)
        found["load_after"] = os.getloadavg()[0]
        log("%d pgbench runs in %.0f s" % (sum(len(v) for v in results.values()), time.monotonic() - started))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if args.keep:
            log("kept the VPS %s (tests/lab/lab vps-rm %s removes it)" % (vps, vps))
        else:
            subprocess.run([LAB, "vps-rm", vps], capture_output=True, check=False)
    report(results, args, found, lab.idle_ns_per_s)


if __name__ == "__main__":
    main()
