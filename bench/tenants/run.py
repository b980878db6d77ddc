"""Benchmark: 100 tenants on one lab VPS (the tenants role, postgrest_spawn, PgBouncer), in one run.

A disposable lab VPS is converged with playbooks/site.yml (the lab inventory's variables, a
connection budget and PgBouncer client limit sized for the run, no tenant yet). Then:
  1. provisioning: bench/tenants/tenants.yml (the tenants role alone) with 10 tenants, again with
     nothing changed, with 100 (90 added), again with nothing changed: wall times, changed counts,
     time per added tenant, and the unchanged re-run's ratio 100 vs 10 (target <= 4);
  2. the memory of every idle PostgREST container (target <= 35 MB each, 5 GB for all);
  3. postgrest_spawn start -> the tenant's first 200 through HAProxy (target p95 <= 2 s): a new
     tenant spawned again and again (an ad-hoc postgrest_spawn; its start is the task's start as
     the json callback records it, on the clock this host shares with the VPS), polled every 10 ms;
  4. whole playbooks/tenant.yml runs adding, then removing, a tenant (target p95 <= 10 s);
  5. PostgREST through PgBouncer vs PostgREST straight to PostgreSQL (a second container for the
     same tenant database, --db-uri to rotor-postgres:5432): fixed-rate load on the VPS's HAProxy,
     p99 latency ratio (target <= 1.3), then saturated throughput ratio (target >= 0.75);
  6. connection scaling: 20 pgbench clients per tenant (2,000 for 100 tenants, far over PostgreSQL's
     max_connections) through PgBouncer, then the same clients straight to PostgreSQL: failed
     transactions, and connections refused (pgbench's errors, PostgreSQL's own count).
Every load loop and pgbench run is bounded in count and time. Not a pass/fail test.

    make bench-tenants          (or: python3 bench/tenants/run.py --help)
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import re
import secrets
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lab"))
import loadgen  # noqa: E402

LAB = str(ROOT / "tests" / "lab" / "lab")
BIN = Path(sys.executable).parent
LAB_VARS = ROOT / "inventories" / "lab" / "group_vars" / "vps.yml"
TENANTS_PLAYBOOK = ROOT / "bench" / "tenants" / "tenants.yml"
DOMAIN = "bench.test"
POSTGRES, PGBOUNCER = "rotor-postgres", "rotor-pgbouncer"
CLIENT = "rotor-bench-client"
ROLE_DEFAULTS = yaml.safe_load((ROOT / "roles" / "tenants" / "defaults" / "main.yml").read_text())
POOL_SIZE = ROLE_DEFAULTS["tenants_defaults"]["pool_size"]  # a tenant's PgBouncer server connections
DB_POOL = ROLE_DEFAULTS["tenants_defaults"]["db_pool"]  # its PostgREST pool
PERF_TENANT, DIRECT = "t001", "t001direct"


def log(message: str) -> None:
    print("[bench] %s" % message, flush=True)


def pct(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def tenant_name(i: int) -> str:
    return "t%03d" % i


@dataclass
class Run:
    seconds: float
    changed: int
    output: str


class Vps:
    """The bench VPS: shell commands on it, playbooks and ad-hoc modules against it."""

    def __init__(self, name: str, tmp: Path, settings: dict):
        self.name, self.tmp, self.settings = name, tmp, settings
        self.inventory = tmp / "hosts.yml"
        self.inventory.write_text("vps:\n  hosts:\n    %s:\n      ansible_connection: community.docker.docker\n"
                                  "      ansible_python_interpreter: /usr/bin/python3\n"
                                  "      ansible_pipelining: true\n" % name)
        self.address = ""

    def sh(self, command: str, *, timeout: float = 120, check: bool = True, stdin: str | None = None,
           env: dict | None = None) -> str:
        """A shell command on the VPS; variables in ``env`` are passed by name, never on a command line."""
        names = [arg for name in (env or {}) for arg in ("-e", name)]
        interactive = ["-i"] if stdin is not None else []
        proc = subprocess.run(["docker", "exec", *interactive, *names, self.name, "sh", "-c", command],
                              input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
                              env=dict(os.environ, **(env or {})))
        if check and proc.returncode:
            raise RuntimeError("%s on %s failed (%d): %s" % (command[:200], self.name, proc.returncode,
                                                             (proc.stderr or proc.stdout).strip()[-2000:]))
        return proc.stdout

    def env(self, **extra: str) -> dict:
        return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                    **extra)

    def variables(self, name: str, values: dict) -> Path:
        """A 0600 extra-vars file in the run's directory (it holds passwords)."""
        path = self.tmp / ("%s.json" % name)
        path.touch(mode=0o600)
        path.write_text(json.dumps(dict(self.settings, **values)))
        return path

    def playbook(self, playbook: Path, values: dict, *args: str, timeout: float = 3600) -> Run:
        """One ansible-playbook run with the lab variables, the run's settings and ``values``; must succeed."""
        extra = self.variables("vars", values)
        started = time.monotonic()
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(self.inventory), "-e", "@%s" % LAB_VARS,
                               "-e", "@%s" % extra, *args, str(playbook)],
                              capture_output=True, text=True, env=self.env(), cwd=ROOT, timeout=timeout, check=False)
        seconds = time.monotonic() - started
        if proc.returncode:
            raise SystemExit("%s failed:\n%s%s" % (playbook.name, proc.stdout[-5000:], proc.stderr[-2000:]))
        recap = re.search(r"^%s\s*:.*changed=(\d+)" % re.escape(self.name), proc.stdout, re.M)
        return Run(seconds, int(recap.group(1)) if recap else -1, proc.stdout)

    def module(self, module: str, args: dict) -> tuple[dict, float, float]:
        """One ad-hoc module run: its result, the task's start (epoch seconds) and its duration."""
        extra = self.variables("module", {"bench_args": args})
        playbook = self.tmp / "module.yml"
        playbook.write_text(json.dumps([{"hosts": "vps", "gather_facts": False,
                                         "tasks": [{"name": module, module: "{{ bench_args }}"}]}]))
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(self.inventory), "-e", "@%s" % extra,
                               str(playbook)],
                              capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
                              env=self.env(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1"))
        try:
            task = json.loads(proc.stdout)["plays"][0]["tasks"][0]
        except (ValueError, KeyError, IndexError):
            raise SystemExit("%s printed no result:\n%s%s" % (module, proc.stdout[-3000:], proc.stderr[-2000:]))
        result = task["hosts"][self.name]
        if result.get("failed"):
            raise SystemExit("%s failed: %s" % (module, result.get("msg")))
        start, end = (epoch(task["task"]["duration"][key]) for key in ("start", "end"))
        return result, start, end - start

    def psql(self, database: str, sql: str) -> str:
        return self.sh("docker exec -e PGPASSWORD %s psql -X -A -t -q -v ON_ERROR_STOP=1 -U postgres -d %s -c %s"
                       % (POSTGRES, database, shlex.quote(sql)),
                       env={"PGPASSWORD": self.settings["postgres_superuser_password"]})


def epoch(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def first_200(address: str, host: str, stop: threading.Event, found: list, deadline: float = 60) -> None:
    """Poll HAProxy every 10 ms with the tenant's Host header; record when it first answers 200."""
    until = time.monotonic() + deadline
    while not stop.is_set() and time.monotonic() < until:
        try:
            conn = http.client.HTTPConnection(address, 80, timeout=1)
            conn.request("GET", "/", headers={"Host": host})
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                found.append(time.time())
                return
        except OSError:
            pass
        time.sleep(0.01)


# --- 1. provisioning ------------------------------------------------------------------------------

def provisioning(vps: Vps, tenants: list[dict], first: int) -> dict:
    figures = {}
    for count in (first, len(tenants)):
        added = count - (first if count != first else 0)
        log("tenants.yml with %d tenants (%d to add)" % (count, added))
        run = vps.playbook(TENANTS_PLAYBOOK, {"rotor_tenants": tenants[:count]})
        figures[count] = {"add": run, "added": added}
        log("  %.1f s, changed=%d; again with nothing changed" % (run.seconds, run.changed))
        again = vps.playbook(TENANTS_PLAYBOOK, {"rotor_tenants": tenants[:count]})
        figures[count]["again"] = again
        log("  %.1f s, changed=%d" % (again.seconds, again.changed))
    return figures


# --- 2. memory ------------------------------------------------------------------------------------

def memory(vps: Vps) -> list[float]:
    """Memory use (MiB) of every PostgREST container, as `docker stats` reports it."""
    out = vps.sh("docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' $(docker ps -q --filter name=^postgrest-)",
                 timeout=300)
    units = {"B": 1 / 2 ** 20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    values = []
    for line in out.splitlines():
        match = re.match(r"\S+ ([\d.]+)(B|KiB|MiB|GiB) /", line)
        if match:
            values.append(float(match.group(1)) * units[match.group(2)])
    return values


# --- 3. spawn -> first 200 ------------------------------------------------------------------------

def spawn_args(vps: Vps, tenant: str, database: str, password: str, route: str, **extra) -> dict:
    return dict({"tenant": tenant, "database": database, "authenticator": "%s_authenticator" % database,
                 "authenticator_password": password, "db_anon_role": "%s_anon" % database, "db_schemas": ["api"],
                 "image": vps.settings["tenants_postgrest_image"], "routes": [route]}, **extra)


def spawns(vps: Vps, tenants: list[dict], count: int) -> list[dict]:
    samples = []
    for n in range(count):
        base = tenants[n % len(tenants)]
        tenant, route = "spawn%02d" % n, "spawn%02d.%s" % (n, DOMAIN)
        stop, found = threading.Event(), []
        poller = threading.Thread(target=first_200, args=(vps.address, route, stop, found), daemon=True)
        poller.start()
        result, start, seconds = vps.module("rotor.vps.postgrest_spawn", spawn_args(
            vps, tenant, base["name"], base["authenticator_password"], route))
        poller.join(timeout=30)
        stop.set()
        if not found:
            raise SystemExit("spawn %s: no 200 through HAProxy within 30 s of the module's end" % tenant)
        samples.append({"tenant": tenant, "to_200": found[0] - start, "task": seconds, "changed": result.get("changed")})
        phases = ", ".join("%s %.2f" % (name, value) for replacement in result.get("replacements") or []
                           for name, value in (replacement.get("durations") or {}).items())
        log("  %s: first 200 %.2f s after postgrest_spawn started (task %.2f s; container %s)"
            % (tenant, found[0] - start, seconds, phases or "?"))
        vps.module("rotor.vps.postgrest_spawn", {"tenant": tenant, "state": "absent"})
    return samples


# --- 4. tenant.yml --------------------------------------------------------------------------------

def tenant_runs(vps: Vps, count: int) -> dict:
    times = {"add": [], "remove": []}
    for n in range(count):
        name = "extra%02d" % n
        add = vps.playbook(ROOT / "playbooks" / "tenant.yml", {
            "tenant_name": name, "tenant_hosts": "%s.%s" % (name, DOMAIN),
            "tenant_authenticator_password": secrets.token_urlsafe(18)})
        times["add"].append(add.seconds)
        remove = vps.playbook(ROOT / "playbooks" / "tenant.yml", {
            "tenant_name": name, "tenant_state": "absent", "tenant_purge": True})
        times["remove"].append(remove.seconds)
        log("  %s: add %.1f s, remove %.1f s" % (name, add.seconds, remove.seconds))
    return times


# --- 5. through PgBouncer vs direct ----------------------------------------------------------------

def pooled_vs_direct(vps: Vps, tenants: list[dict], args: argparse.Namespace) -> dict:
    perf = tenants[0]
    log("a table of 100 rows in %s; a second PostgREST (%s) straight to PostgreSQL" % (PERF_TENANT, DIRECT))
    vps.psql(PERF_TENANT, "CREATE TABLE IF NOT EXISTS api.items (id int PRIMARY KEY, name text NOT NULL); "
                          "INSERT INTO api.items SELECT i, 'item ' || i FROM generate_series(1, 100) i "
                          "ON CONFLICT DO NOTHING; GRANT SELECT ON api.items TO %s_anon" % PERF_TENANT)
    vps.module("rotor.vps.postgrest_spawn", {"tenant": PERF_TENANT, "state": "reloaded"})
    vps.module("rotor.vps.postgrest_spawn", spawn_args(
        vps, DIRECT, PERF_TENANT, perf["authenticator_password"], "%s.%s" % (DIRECT, DOMAIN),
        pgbouncer_host=POSTGRES, pgbouncer_port=5432))
    target = "%s:80" % vps.address
    paths = {"pgbouncer": perf["hosts"][0], "direct": "%s.%s" % (DIRECT, DOMAIN)}
    path = "/items?order=id&limit=20"
    for side, host in paths.items():  # warm both up: pools filled, caches loaded, at the measured rate
        loadgen.run(target, host=host, path=path, rate=args.rate, duration=5, count=5 * args.rate, connections=8)
    fixed = {side: loadgen.LoadResult() for side in paths}
    saturated = {side: [] for side in paths}
    # The fixed-rate rounds first, then the saturated ones (whose aftermath would weigh on the next
    # round's tail latency); each round alternates which side goes first.
    for round_ in range(args.rounds):
        for side in list(paths) if round_ % 2 == 0 else list(reversed(paths)):
            r = loadgen.run(target, host=paths[side], path=path, rate=args.rate, duration=args.load_seconds,
                            count=int(args.rate * args.load_seconds), connections=8)
            fixed[side].sent += r.sent
            fixed[side].failed += r.failed
            fixed[side].errors.update(r.errors)
            fixed[side].latencies += r.latencies
            log("  round %d %-9s %d req/s: %d sent, %d failed, p50 %.1f ms, p99 %.1f ms"
                % (round_ + 1, side, args.rate, r.sent, r.failed, r.latency(0.5), r.latency(0.99)))
    for round_ in range(args.rounds):
        for side in list(paths) if round_ % 2 == 0 else list(reversed(paths)):
            r = loadgen.run(target, host=paths[side], path=path, rate=100_000, duration=args.load_seconds,
                            count=100_000 * args.load_seconds, connections=args.connections)
            saturated[side].append({"rate": r.ok / r.seconds if r.seconds else 0.0, "failed": r.failed})
            log("  round %d %-9s saturated (%d connections): %.0f req/s, %d failed"
                % (round_ + 1, side, args.connections, saturated[side][-1]["rate"], r.failed))
    return {"fixed": fixed, "saturated": saturated, "path": path}


# --- 6. connection scaling -------------------------------------------------------------------------

def start_client(vps: Vps, tenants: list[dict]) -> None:
    """A pgbench container (PostgreSQL's own image) on the data network, with every tenant's password in
    its ~/.pgpass (through stdin, never on a command line) and a one-statement script."""
    image = vps.sh("docker inspect -f '{{.Config.Image}}' %s" % POSTGRES).strip()
    vps.sh("docker rm -f %s >/dev/null 2>&1; docker run -d --name %s --network data --user 999:999 "
           "--entrypoint sleep %s infinity >/dev/null" % (CLIENT, CLIENT, image))
    lines = "".join("*:*:%s:%s_authenticator:%s\n" % (t["name"], t["name"], t["authenticator_password"]) for t in tenants)
    vps.sh("docker exec -i %s sh -c 'umask 077; cat > /tmp/pgpass; echo \"SELECT 1;\" > /tmp/select1.sql'" % CLIENT,
           stdin=lines)


def pgbench_all(vps: Vps, tenants: list[dict], host: str, port: int, args: argparse.Namespace) -> dict:
    """``args.clients`` pgbench clients per tenant, every tenant at once; their reports added up."""
    since = int(time.time())
    runs = " ".join(t["name"] for t in tenants)
    script = ("cd /tmp && rm -rf runs && mkdir runs && for t in %s; do "
              "PGPASSFILE=/tmp/pgpass pgbench -n -h %s -p %d -U ${t}_authenticator -c %d -j 1 -T %d "
              "-f /tmp/select1.sql $t > runs/$t.out 2>&1 & done; wait; "
              "for f in runs/*.out; do echo \"=== $f\"; cat $f; done"
              % (runs, host, port, args.clients, args.pgbench_seconds))
    started = time.monotonic()
    out = vps.sh("docker exec %s sh -c %s" % (CLIENT, shlex.quote(script)), timeout=args.pgbench_seconds + 600)
    wall = time.monotonic() - started
    figures = {"runs": 0, "completed": 0, "refused_runs": 0, "transactions": 0, "failed": 0, "aborted": 0,
               "wall": wall}
    for report in out.split("=== ")[1:]:
        figures["runs"] += 1
        processed = re.search(r"^number of transactions actually processed: (\d+)", report, re.M)
        failed = re.search(r"^number of failed transactions: (\d+)", report, re.M)
        if processed:
            figures["completed"] += 1
            figures["transactions"] += int(processed.group(1))
            figures["failed"] += int(failed.group(1)) if failed else 0
        if re.search(r"too many clients|could not create connection|no more connections", report):
            figures["refused_runs"] += 1
        figures["aborted"] += len(re.findall(r"aborted", report))
    log_text = vps.sh("docker logs --since %d %s 2>&1" % (since, POSTGRES), timeout=120)
    figures["refused_by_postgres"] = log_text.count("sorry, too many clients already")
    figures["reserved_refusals"] = log_text.count("remaining connection slots are reserved")
    return figures


def connection_scaling(vps: Vps, tenants: list[dict], args: argparse.Namespace) -> dict:
    start_client(vps, tenants)
    max_connections = vps.psql("postgres", "SHOW max_connections").strip()
    results = {"max_connections": max_connections}
    for side, (host, port) in (("pgbouncer", (PGBOUNCER, 6432)), ("direct", (POSTGRES, 5432))):
        log("%d tenants x %d pgbench clients (%d), %d s, %s"
            % (len(tenants), args.clients, len(tenants) * args.clients, args.pgbench_seconds, side))
        results[side] = pgbench_all(vps, tenants, host, port, args)
        log("  %s" % results[side])
    return results


# --- the run --------------------------------------------------------------------------------------

def provisioning_report(prov: dict, n: int, first: int) -> None:
    print()
    print("1. provisioning with the tenants role (bench/tenants/tenants.yml)")
    total = prov[first]["add"].seconds + prov[n]["add"].seconds
    print("   %3d tenants from none: %6.1f s (%.2f s per tenant), changed=%d"
          % (first, prov[first]["add"].seconds, prov[first]["add"].seconds / first, prov[first]["add"].changed))
    print("   %3d more (to %d):      %6.1f s (%.2f s per added tenant), changed=%d"
          % (n - first, n, prov[n]["add"].seconds, prov[n]["add"].seconds / (n - first), prov[n]["add"].changed))
    print("   all %d: %.1f s, %.2f s per tenant" % (n, total, total / n))
    ratio = prov[n]["again"].seconds / prov[first]["again"].seconds
    print("   re-run, nothing changed: %d tenants %.1f s (changed=%d), %d tenants %.1f s (changed=%d); "
          "ratio %.2f (target <= 4: %s)" % (first, prov[first]["again"].seconds, prov[first]["again"].changed, n,
                                            prov[n]["again"].seconds, prov[n]["again"].changed, ratio,
                                            "met" if ratio <= 4 else "NOT met"))


def report(args: argparse.Namespace, found: dict) -> None:
    n, first = args.tenants, args.first
    print()
    print("tenants benchmark: %d tenants on one lab VPS (%d CPUs, host load average %.1f at the end)"
          % (n, os.cpu_count() or 0, os.getloadavg()[0]))
    print("  PostgREST image %s; PostgreSQL max_connections %s, memory %s; PgBouncer max_client_conn %d, pool %d "
          "per tenant" % (args.image, found["scaling"]["max_connections"] if "scaling" in found else "?",
                          args.postgres_memory, args.max_client_conn, POOL_SIZE))
    if "provisioning" in found:
        provisioning_report(found["provisioning"], n, first)
    if "memory" in found:
        mem = found["memory"]
        print()
        print("2. idle PostgREST memory (docker stats, %d containers): median %.1f MiB, max %.1f MiB, all %.0f MiB "
              "(targets <= 35 MB each: %s; <= 5 GB in all: %s)"
              % (len(mem), statistics.median(mem), max(mem), sum(mem), "met" if max(mem) * 1.048576 <= 35 else "NOT met",
                 "met" if sum(mem) * 1.048576 <= 5000 else "NOT met"))
    if "spawns" in found:
        spawned = found["spawns"]
        to_200 = [s["to_200"] for s in spawned]
        print()
        print("3. postgrest_spawn start -> first 200 through HAProxy, %d new tenants: p50 %.2f s, p95 %.2f s, max %.2f s "
              "(target p95 <= 2 s: %s); the module task itself p50 %.2f s"
              % (len(to_200), pct(to_200, 0.5), pct(to_200, 0.95), max(to_200), "met" if pct(to_200, 0.95) <= 2 else
                 "NOT met", pct([s["task"] for s in spawned], 0.5)))
    if "tenant_yml" in found:
        runs = found["tenant_yml"]
        print()
        print("4. playbooks/tenant.yml, whole ansible-playbook runs, %d each: add p50 %.1f s, p95 %.1f s; remove (purge) "
              "p50 %.1f s, p95 %.1f s (target p95 <= 10 s: %s)"
              % (len(runs["add"]), pct(runs["add"], 0.5), pct(runs["add"], 0.95), pct(runs["remove"], 0.5),
                 pct(runs["remove"], 0.95), "met" if max(pct(runs["add"], 0.95), pct(runs["remove"], 0.95)) <= 10
                 else "NOT met"))
    if "perf" in found:
        perf = found["perf"]
        fixed, sat = perf["fixed"], perf["saturated"]
        p99 = {side: fixed[side].latency(0.99) for side in fixed}
        rate = {side: statistics.median(r["rate"] for r in sat[side]) for side in sat}
        print()
        print("5. PostgREST through PgBouncer vs straight to PostgreSQL (GET %s through HAProxy, %d round(s))"
              % (perf["path"], args.rounds))
        for side in ("direct", "pgbouncer"):
            print("   %-9s %d req/s: %d sent, %d failed, p50 %.1f ms, p99 %.1f ms; saturated %.0f req/s (%d connections)"
                  % (side, args.rate, fixed[side].sent, fixed[side].failed, fixed[side].latency(0.5), p99[side],
                     rate[side], args.connections))
        p99_ratio = p99["pgbouncer"] / p99["direct"] if p99["direct"] else float("nan")
        rate_ratio = rate["pgbouncer"] / rate["direct"] if rate["direct"] else float("nan")
        print("   p99 ratio %.2f (target <= 1.3: %s); throughput ratio %.2f (target >= 0.75: %s)"
              % (p99_ratio, "met" if p99_ratio <= 1.3 else "NOT met", rate_ratio, "met" if rate_ratio >= 0.75 else "NOT met"))
    if "scaling" in found:
        scaling = found["scaling"]
        print()
        print("6. %d tenants x %d pgbench clients = %d client connections, %d s (PostgreSQL max_connections %s)"
              % (n, args.clients, n * args.clients, args.pgbench_seconds, scaling["max_connections"]))
        for side in ("pgbouncer", "direct"):
            s = scaling[side]
            print("   %-9s %3d of %d pgbench runs completed, %d transactions, %d failed; %d runs refused at connection "
                  "(PostgreSQL refused %d connections: too many clients)"
                  % (side, s["completed"], s["runs"], s["transactions"], s["failed"], s["refused_runs"],
                     s["refused_by_postgres"] + s["reserved_refusals"]))


def main() -> None:
    parser = argparse.ArgumentParser(description="tenants benchmark (see the module docstring)")
    parser.add_argument("--tenants", type=int, default=100, help="tenants on the VPS at the end")
    parser.add_argument("--first", type=int, default=10, help="tenants of the first provisioning run")
    parser.add_argument("--spawns", type=int, default=20, help="postgrest_spawn -> first 200 samples")
    parser.add_argument("--tenant-runs", type=int, default=10, help="tenant.yml add and remove runs")
    parser.add_argument("--rate", type=int, default=200, help="fixed-rate load, requests per second")
    parser.add_argument("--load-seconds", type=int, default=10, help="seconds of each load run")
    parser.add_argument("--connections", type=int, default=16, help="connections of the saturated runs")
    parser.add_argument("--rounds", type=int, default=6, help="load rounds, direct and pooled alternating")
    parser.add_argument("--clients", type=int, default=20, help="pgbench clients per tenant")
    parser.add_argument("--pgbench-seconds", type=int, default=15, help="pgbench -T")
    parser.add_argument("--parts", default="1,2,3,4,5,6",
                        help="the parts to measure, comma-separated (1 only on a new VPS, not with --reuse)")
    parser.add_argument("--vps", default="rotor-bench-tenants", help="name of the disposable lab VPS")
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="keep the VPS afterwards, and its tenants (passwords too) in DIR/tenants.json, 0600")
    parser.add_argument("--reuse", metavar="DIR", type=Path,
                        help="measure parts 2-6 on the VPS a --keep run left, with the tenants of DIR/tenants.json")
    args = parser.parse_args()
    try:
        parts = {int(part) for part in args.parts.split(",")}
    except ValueError:
        parser.error("--parts must be numbers from 1 to 6, comma-separated")
    if not parts <= set(range(1, 7)) or (1 in parts) == bool(args.reuse):
        parser.error("--parts must be numbers from 1 to 6; 1 (provisioning) always runs on a new VPS, never with --reuse")
    if not 1 <= args.first < args.tenants:
        parser.error("--first must be at least 1 and below --tenants")
    for name in ("spawns", "tenant_runs", "rate", "load_seconds", "connections", "rounds", "clients", "pgbench_seconds"):
        if getattr(args, name) < 1:
            parser.error("--%s must be at least 1" % name.replace("_", "-"))

    if args.reuse:
        tenants = json.loads((args.reuse / "tenants.json").read_text())
        args.tenants = len(tenants)
    # Pools that fit: every tenant's PgBouncer pool in PostgreSQL's budget, and PgBouncer clients for
    # every PostgREST pool twice (the tenants role's headroom) plus every pgbench client. PostgreSQL's
    # memory grows with it, above the postgres role's floor (shared_buffers, 6 MB per connection,
    # 64 MB): the default 1g ran out at about 145 connections (the kernel killed a backend,
    # PostgreSQL restarted, every connection dropped), which the role now refuses before it starts.
    budget = args.tenants * POOL_SIZE + 20
    args.max_client_conn = args.tenants * (2 * DB_POOL + args.clients) + 200
    args.postgres_memory = "%dm" % (512 + 8 * budget)
    settings = {"postgres_tenant_connection_budget": budget, "postgres_memory": args.postgres_memory,
                "pgbouncer_max_client_conn": args.max_client_conn,
                "haproxy_rate_limit_exempt_networks": ["0.0.0.0/0"]}
    lab = yaml.safe_load(LAB_VARS.read_text())
    settings["postgres_superuser_password"] = lab["postgres_superuser_password"]
    args.image = settings["tenants_postgrest_image"] = lab.get("tenants_postgrest_image",
                                                               ROLE_DEFAULTS["tenants_postgrest_image"])
    if not args.reuse:
        tenants = [{"name": tenant_name(i), "hosts": ["%s.%s" % (tenant_name(i), DOMAIN)],
                    "authenticator_password": secrets.token_urlsafe(18)} for i in range(1, args.tenants + 1)]
        # The tenant of part 5 gets as many PgBouncer server connections as its PostgREST pool, as the
        # container straight to PostgreSQL has: the comparison is then about the pooler, not its size.
        tenants[0]["pool_size"] = DB_POOL

    tmp = Path(tempfile.mkdtemp(prefix="bench-tenants-"))
    vps = Vps(args.vps, tmp, settings)
    if not args.reuse:
        subprocess.run([LAB, "vps-rm", args.vps], capture_output=True, check=False)
        subprocess.run([LAB, "vps-run", args.vps, "trixie"], check=True)
    if args.keep:
        args.keep.mkdir(mode=0o700, parents=True, exist_ok=True)
        (args.keep / "tenants.json").touch(mode=0o600)
        (args.keep / "tenants.json").write_text(json.dumps(tenants))
    found: dict = {}
    try:
        vps.address = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                                      args.vps], capture_output=True, text=True, check=True).stdout.split()[0]
        if not args.reuse:
            log("converging %s with playbooks/site.yml (no tenants yet)" % args.vps)
            base = vps.playbook(ROOT / "playbooks" / "site.yml", {"rotor_tenants": []})
            log("  %.0f s" % base.seconds)
            found["provisioning"] = provisioning(vps, tenants, args.first)
        if 2 in parts:
            log("idle PostgREST memory")
            time.sleep(5)
            found["memory"] = memory(vps)
        if 3 in parts:
            log("postgrest_spawn -> first 200, %d times" % args.spawns)
            found["spawns"] = spawns(vps, tenants, args.spawns)
        if 4 in parts:
            log("playbooks/tenant.yml, %d times add and remove" % args.tenant_runs)
            found["tenant_yml"] = tenant_runs(vps, args.tenant_runs)
        if 5 in parts:
            log("PostgREST through PgBouncer vs straight to PostgreSQL")
            found["perf"] = pooled_vs_direct(vps, tenants, args)
        if 6 in parts:
            found["scaling"] = connection_scaling(vps, tenants, args)
    finally:
        for path in tmp.iterdir():
            path.unlink()
        tmp.rmdir()
        if args.keep or args.reuse:
            log("kept the VPS %s (tests/lab/lab vps-rm %s removes it)" % (args.vps, args.vps))
        else:
            subprocess.run([LAB, "vps-rm", args.vps], capture_output=True, check=False)
    report(args, found)


if __name__ == "__main__":
    main()
