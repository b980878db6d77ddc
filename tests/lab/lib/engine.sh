# shellcheck shell=bash
# Make sure a Docker engine answers on this host. One that already runs is used as it is;
# otherwise Debian's docker.io is installed and dockerd started in the background
# (a lab host has no systemd as PID 1, so there is no unit to start).

LAB_RUNTIME_NAME=rotor-lab-runc
LAB_RUNTIME_PATH=/usr/local/lib/rotor-lab/runc-wrapper

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

# The capability bounding set of some sandboxed hosts lacks CAP_SYS_RESOURCE (bit 24). runc then
# refuses every privileged container ("unable to apply caps"), and the lab VPS must be privileged.
host_lacks_sys_resource() {
  local bnd
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  [ $(( 0x$bnd >> 24 & 1 )) -eq 0 ]
}

# Install the runc wrapper and register it as the default runtime. Only on hosts that need it;
# a real VPS or workstation never does. Prints "changed" when daemon.json was rewritten.
ensure_runtime_workaround() {
  host_lacks_sys_resource || return 0
  install -D -m 0755 "$LAB_DIR/runc-wrapper" "$LAB_RUNTIME_PATH"
  mkdir -p /etc/docker
  /usr/bin/python3 - "$LAB_RUNTIME_NAME" "$LAB_RUNTIME_PATH" <<'PY'
import json, os, sys
name, path = sys.argv[1:3]
conf_path = "/etc/docker/daemon.json"
try:
    with open(conf_path) as f:
        conf = json.load(f)
except FileNotFoundError:
    conf = {}
want = dict(conf)
want.setdefault("runtimes", {})[name] = {"path": path}
want["default-runtime"] = name
if want != conf:
    tmp = conf_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(want, f, indent=2)
        f.write("\n")
    os.replace(tmp, conf_path)
    print("changed")
PY
}

ensure_engine() {
  local changed
  if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io
  fi
  # From Debian 13 on the client is its own package; before, docker.io carries it.
  if ! command -v docker >/dev/null 2>&1; then
    if apt-cache show docker-cli >/dev/null 2>&1; then apt_install docker-cli; else apt_install docker.io; fi
  fi
  changed=$(ensure_runtime_workaround)
  if engine_answers; then
    if [ "$changed" = changed ]; then
      log "registered the $LAB_RUNTIME_NAME runtime; asking the running dockerd to reload (SIGHUP)"
      pkill -HUP -x dockerd || true
      sleep 1
    fi
    log "Docker engine answers: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
    return 0
  fi
  mkdir -p "$LAB_LOG_DIR"
  log "no Docker engine answers on /var/run/docker.sock; starting dockerd (log: $LAB_LOG_DIR/dockerd.log)"
  # setsid: dockerd must outlive make and the shell that started it.
  setsid dockerd >>"$LAB_LOG_DIR/dockerd.log" 2>&1 </dev/null &
  local _
  for _ in $(seq 1 60); do
    engine_answers && { log "Docker engine started: $(docker version --format '{{.Server.Version}}')"; return 0; }
    sleep 0.5
  done
  die "no Docker engine answers on /var/run/docker.sock and dockerd failed to start: $(tail -n 5 "$LAB_LOG_DIR/dockerd.log" | tr '\n' ' ')" \
    "read $LAB_LOG_DIR/dockerd.log; a stale /var/run/docker.pid or another engine on the socket are the usual causes"
}
