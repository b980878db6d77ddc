"""Benchmark: zero-downtime rotation through HAProxy versus a naive stop-start-reload.

A disposable lab VPS runs the edge (docker_host, networks, haproxy roles) and a 2-replica demo
service. Fixed-rate load goes to the VPS's HAProxy (a container this benchmark created) while
  A. haproxy_rotate (state=rotated, through ansible) replaces both replicas, again and again:
     at least --rotations times and until --requests requests were sent;
  B. the same service is rotated the naive way (stop old, start new, rewrite the backend, reload
     HAProxy) --naive times.
It prints failed requests and latency for both, rotation wall time p50/p95 per replacement, and
the ratio of each replacement's wall time to its new container's own start-to-healthy time.
With --crash-every N, a serving replica is killed for good (SIGKILL, no restart) at a random moment
of every Nth rotation: the rotation's end-of-run check or the next run replaces it, and HAProxy
retries the requests it had on the other replica.

--soak is A alone at soak scale: at least 1,000,000 requests over at least 500 rotations, a crash
every 10th rotation, bounded by an hour (outside `make test`: about 30 minutes).
Every load loop is bounded in count and time. Not a pass/fail test.

    make bench-rotation            (or: python3 bench/rotation/run.py --help)
    make bench-rotation ARGS=--soak
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lab"))
import loadgen  # noqa: E402

LAB = str(ROOT / "tests" / "lab" / "lab")
BIN = Path(sys.executable).parent
HOST = "bench.lab.test"
OBSERVABILITY = ("prometheus", "alertmanager", "node_exporter", "cadvisor", "blackbox", "postgres_exporter",
                 "pgbouncer_exporter", "grafana", "loki", "alloy", "collector")
SERVICE = {
    "name": "bench",
    "image": "rotor-lab/demo-web:1",
    "replicas": 2,
    "port": 8080,
    "health_path": "/healthz",
    "tmpfs": [{"path": "/tmp", "size": "16m", "uid": 1000}, {"path": "/scratch", "size": "16m", "uid": 1000}],
    "hosts": [HOST],
}


def log(message: str) -> None:
    print("[bench] %s" % message, flush=True)


def sh(vps: str, command: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", "exec", vps, "sh", "-c", command], capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode:
        raise RuntimeError("%s: %s" % (command, proc.stderr.strip()))
    return proc.stdout.strip()


def env() -> dict:
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_LOAD_CALLBACK_PLUGINS="1")


def converge(inventory: Path, extra: Path) -> None:
    log("converging the edge and the bench service (docker_host, networks, haproxy, rotation)")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), "-e",
                           "@%s" % (ROOT / "inventories" / "lab" / "group_vars" / "vps.yml"), "-e", "@%s" % extra,
                           str(ROOT / "playbooks" / "site.yml")], capture_output=True, text=True, env=env(), cwd=ROOT,
                          check=False)
    if proc.returncode:
        sys.exit("converge failed:\n%s" % proc.stdout[-3000:])


def rotate(inventory: Path) -> dict:
    args = {k: v for k, v in SERVICE.items() if k not in ("name", "hosts")}
    args.update(service="bench", backend="bench", state="rotated", routes=[HOST])
    proc = subprocess.run([str(BIN / "ansible"), "all", "-i", str(inventory), "-m", "rotor.vps.haproxy_rotate",
                           "-a", json.dumps(args)], capture_output=True, text=True, cwd=ROOT,
                          env=dict(env(), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json"), check=False)
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]
    return next(iter(result.values()))


def naive_rotate(vps: str) -> None:
    """Stop the old container, start a new one, point the backend at it, reload HAProxy."""
    for old in sh(vps, "docker ps -q --filter label=org.rotor.bench.naive=1 --filter label=org.rotor.vps.service=bench "
                       "| head -n 2").split() or sh(vps, "docker ps -q --filter label=org.rotor.vps.service=bench").split():
        name = sh(vps, "docker inspect -f '{{.Name}}' %s" % old).lstrip("/")
        sh(vps, "docker stop -t 10 %s >/dev/null && docker rm %s >/dev/null" % (old, old))
        new = "bench-naive-%s" % os.urandom(3).hex()
        sh(vps, "docker run -d --name %s --hostname %s --network app --read-only --tmpfs /tmp:size=16m,uid=1000 "
                "--tmpfs /scratch:size=16m,uid=1000 --label org.rotor.vps.service=bench --label org.rotor.bench.naive=1 "
                "rotor-lab/demo-web:1 >/dev/null" % (new, new))
        ip = sh(vps, "docker inspect -f '{{(index .NetworkSettings.Networks \"app\").IPAddress}}' %s" % new)
        sh(vps, "sed -i 's/^    server %s .*/    server %s %s:8080 check inter 2s rise 2 fall 2/' "
                "/etc/rotor/haproxy/conf.d/bench.cfg" % (name, new, ip))
        sh(vps, "pid=$(docker inspect -f '{{.State.Pid}}' rotor-haproxy) && [ \"$pid\" -gt 0 ] && kill -s USR2 \"$pid\"")


def crash_one_replica(vps: str, delay: float, crashed: list) -> None:
    """After ``delay`` seconds, kill one running replica of the bench service for good (as a crash)."""
    time.sleep(delay)
    names = sh(vps, "docker ps -q --filter label=org.rotor.vps.service=bench --filter status=running", check=False).split()
    if names:
        victim = random.choice(names)
        sh(vps, "docker update --restart=no %s >/dev/null; docker kill %s >/dev/null" % (victim, victim), check=False)
        crashed.append(victim)


def pct(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description="rotation benchmark (see the module docstring)")
    parser.add_argument("--rotations", type=int, default=50, help="minimum rotations of both replicas (A)")
    parser.add_argument("--requests", type=int, default=100_000, help="minimum requests during A")
    parser.add_argument("--rate", type=float, default=700, help="requests per second")
    parser.add_argument("--naive", type=int, default=10, help="naive rotations (B)")
    parser.add_argument("--max-seconds", type=float, default=600, help="hard bound on phase A")
    parser.add_argument("--crash-every", type=int, default=0, help="kill a serving replica in every Nth rotation (A)")
    parser.add_argument("--soak", action="store_true",
                        help="A alone: >= 1,000,000 requests, >= 500 rotations, a crash every 10th, at most an hour")
    parser.add_argument("--keep", action="store_true", help="keep the VPS afterwards")
    args = parser.parse_args()
    if args.soak:
        args.rotations, args.requests, args.naive = max(args.rotations, 500), max(args.requests, 1_000_000), 0
        args.crash_every, args.max_seconds = args.crash_every or 10, max(args.max_seconds, 3600)

    vps = "rotor-bench-rotation"
    subprocess.run([LAB, "vps-rm", vps], capture_output=True, check=False)
    subprocess.run([LAB, "vps-run", vps, "trixie"], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-rotation-"))
    inventory = tmp / "hosts.yml"
    inventory.write_text("vps:\n  hosts:\n    %s:\n      ansible_connection: community.docker.docker\n"
                         "      ansible_python_interpreter: /usr/bin/python3\n" % vps)
    extra = tmp / "vars.json"
    extra.write_text(json.dumps(dict({
        "rotation_mode": "external", "rotation_services": [SERVICE],
        "haproxy_backends": [{"name": "bench", "health_path": "/healthz"}],
        "haproxy_rate_limit_exempt_networks": ["0.0.0.0/0"],
        # The edge and the bench service only: no tenant, no certificate, no observability stack.
        "rotor_tenants": [], "certbot_sites": []},
        **{"observability_%s_enabled" % c: False for c in OBSERVABILITY})))
    try:
        converge(inventory, extra)
        address = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                                  vps], capture_output=True, text=True, check=True).stdout.split()[0]
        target = "%s:80" % address

        log("A: haproxy_rotate under %d req/s: >= %d rotations and >= %d requests"
            % (args.rate, args.rotations, args.requests))
        records, rotations, walls, crashed, crashes = [], 0, [], [], []
        started = time.monotonic()
        with loadgen.Background(target, host=HOST, rate=args.rate, duration=args.max_seconds,
                                count=int(args.rate * args.max_seconds)) as load:
            time.sleep(2)
            while load.running and (rotations < args.rotations or load.result.sent < args.requests):
                t = time.monotonic()
                if args.crash_every and rotations % args.crash_every == args.crash_every - 1:
                    crash = threading.Thread(target=crash_one_replica, args=(vps, random.uniform(0, 3), crashed))
                    crash.start()
                    crashes.append(crash)
                result = rotate(inventory)
                walls.append(time.monotonic() - t)
                if result.get("failed"):
                    log("rotation failed: %s" % result.get("msg"))
                records += result.get("replacements", [])
                rotations += 1
                if rotations % 10 == 0:
                    log("  %d rotations, %d requests, %d failed, %.0f s" % (
                        rotations, load.result.sent, load.result.failed, time.monotonic() - started))
            for crash in crashes:
                crash.join(timeout=10)
            time.sleep(1)
        a = load.result
        b = None
        if args.naive:
            log("B: naive stop/start/reload under %d req/s, %d rotations" % (args.rate, args.naive))
            with loadgen.Background(target, host=HOST, rate=args.rate, duration=args.max_seconds,
                                    count=int(args.rate * 600)) as naive:
                time.sleep(2)
                for _rotation in range(args.naive):
                    naive_rotate(vps)
                    time.sleep(1)
            b = naive.result
    finally:
        if not args.keep:
            subprocess.run([LAB, "vps-rm", vps], capture_output=True, check=False)
    report(args, records, rotations, walls, crashed, a, b)


def report(args, records: list, rotations: int, walls: list, crashed: list, a, b) -> None:
    """Print the figures of phase A (and of B, when it ran)."""
    ok = [r for r in records if r.get("result") == "ok" and r.get("start_to_healthy")]
    durations = [r["duration"] for r in ok]
    ratios = [r["duration"] / r["start_to_healthy"] for r in ok]
    phases = {}
    for r in ok:
        for phase, seconds in r["durations"].items():
            phases.setdefault(phase, []).append(seconds)
    repaired = [r for r in records if r.get("reason", "").startswith("end-of-run check")]
    failed = [r for r in records if r.get("result") != "ok"]
    retired = [r for r in records if r.get("action") == "retire"]
    print()
    print("rotation benchmark (2 replicas, demo-web, %d req/s)" % args.rate)
    print("  A. haproxy_rotate: %d rotations (%d container changes: %d replacements or starts, %d crashed ones retired; "
          "%d failed); %d serving replicas crashed, %d changes by an end-of-run check" % (
              rotations, len(records), len(records) - len(retired), len(retired), len(failed), len(crashed),
              len(repaired)))
    print("     requests: %d sent, %d failed %s; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
        a.sent, a.failed, dict(a.errors) or "", a.latency(0.5), a.latency(0.99), a.latency(1.0)))
    print("     replacement wall time: p50 %.3f s, p95 %.3f s (new started -> old out of HAProxy and stopping)" % (
        pct(durations, 0.5), pct(durations, 0.95)))
    print("     old container stop, overlapping the next replacement: p50 %.3f s, p95 %.3f s" % (
        pct(phases.get("stop", []), 0.5), pct(phases.get("stop", []), 0.95)))
    print("     new container start-to-healthy: p50 %.3f s, p95 %.3f s" % (
        pct([r["start_to_healthy"] for r in ok], 0.5), pct([r["start_to_healthy"] for r in ok], 0.95)))
    print("     ratio replacement / start-to-healthy: p50 %.2f, p95 %.2f (target <= 1.5)" % (
        pct(ratios, 0.5), pct(ratios, 0.95)))
    print("     phases p50 (s): %s" % ", ".join("%s %.3f" % (k, statistics.median(v)) for k, v in phases.items()))
    print("     whole rotation of 2 replicas, including ansible's own start: p50 %.2f s, p95 %.2f s" % (
        pct(walls, 0.5), pct(walls, 0.95)))
    if b is not None:
        print("  B. naive stop/start/reload: %d rotations" % args.naive)
        print("     requests: %d sent, %d failed %s; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
            b.sent, b.failed, dict(b.errors) or "", b.latency(0.5), b.latency(0.99), b.latency(1.0)))


if __name__ == "__main__":
    main()
