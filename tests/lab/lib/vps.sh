# shellcheck shell=bash
# The lab VPS: a privileged container with systemd as PID 1 and no Docker, on the lab network
# (where the registry mirror is). Only its published ports are reachable, on 127.0.0.1.

LAB_VPS_HTTP_PORT=${LAB_VPS_HTTP_PORT:-8080}
LAB_VPS_HTTPS_PORT=${LAB_VPS_HTTPS_PORT:-8443}

vps_name() { printf '%s-vps-%s\n' "$LAB_PREFIX" "$1"; }

# vps_run NAME SUITE [docker run options...]: start a lab VPS container and wait for systemd.
# LAB_VPS_IMAGE picks the image: vps (bare, the default) or vps-engine (the engine already installed).
vps_run() {
  local name=$1 suite=$2 image="rotor-lab/${LAB_VPS_IMAGE:-vps}:$2" state _
  shift 2
  docker image inspect "$image" >/dev/null 2>&1 \
    || die "no image $image" "run 'make lab' (tests/lab/lab images) first"
  docker run -d --name "$name" --hostname "$name" --network "$LAB_NETWORK" \
    --privileged --tmpfs /run --tmpfs /run/lock \
    -v "$name-docker:/var/lib/docker" \
    --label "org.rotor.lab.role=${VPS_ROLE:-vps}" "$@" "$image" >/dev/null
  for _ in $(seq 1 60); do
    state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
    case "$state" in
      running | degraded) vps_authorize "$name"; return 0 ;;
    esac
    sleep 0.5
  done
  die "the lab VPS $name did not finish booting (systemd says: ${state:-nothing})" \
    "look at 'docker logs $name' and 'docker exec $name systemctl --failed'"
}

# lab_ssh_key: the lab's own SSH key, made once under LAB_STATE_DIR; prints its path. The tests'
# ansible-playbook logs in to every lab VPS as root with it, as to a real server.
lab_ssh_key() {
  local dir=$LAB_STATE_DIR/ssh
  if [ ! -s "$dir/id_ed25519.pub" ]; then
    command -v ssh-keygen >/dev/null || apt_install openssh-client
    mkdir -p "$dir" && chmod 0700 "$dir"
    ( flock 9 && { [ -s "$dir/id_ed25519.pub" ] \
        || ssh-keygen -q -t ed25519 -N '' -C rotor-lab -f "$dir/id_ed25519" </dev/null; } ) 9>"$dir/.lock" \
      || die "could not make the lab's SSH key in $dir" "look at ssh-keygen's message above"
  fi
  printf '%s\n' "$dir/id_ed25519"
}

# vps_authorize NAME: root on the VPS accepts the lab's key; waits (bounded) until its SSH server listens.
vps_authorize() {
  local name=$1 key _
  key=$(lab_ssh_key)
  docker exec -i "$name" sh -c 'umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys' <"$key.pub" \
    || die "could not authorize the lab's key on $name" "look at 'docker exec $name ls -la /root/.ssh'"
  for _ in $(seq 1 40); do
    docker exec "$name" ss -Hltn 'sport = :22' 2>/dev/null | grep -q . && return 0
    sleep 0.25
  done
  die "the SSH server of the lab VPS $name does not listen" "look at 'docker exec $name systemctl status ssh'"
}

vps_up() {
  local suite=$1 name
  name=$(vps_name "$suite")
  docker image inspect "rotor-lab/vps:$suite" >/dev/null 2>&1 \
    || die "no image rotor-lab/vps:$suite" "run 'make lab' (tests/lab/lab images) first"
  if [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" = true ]; then
    log "lab VPS $name is running"
    return 0
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  log "starting lab VPS $name (HTTP 127.0.0.1:$LAB_VPS_HTTP_PORT, HTTPS 127.0.0.1:$LAB_VPS_HTTPS_PORT)"
  vps_run "$name" "$suite" --restart unless-stopped \
    -p "127.0.0.1:$LAB_VPS_HTTP_PORT:80" -p "127.0.0.1:$LAB_VPS_HTTPS_PORT:443"
}

vps_remove() {
  local name=$1
  docker container inspect "$name" >/dev/null 2>&1 || return 0
  log "removing lab VPS $name"
  docker rm -f -v "$name" >/dev/null
  docker volume rm "$name-docker" >/dev/null 2>&1 || true
}

vps_down() {
  local name
  for name in $(docker ps -a --filter label=org.rotor.lab.role=vps --format '{{.Names}}'); do
    vps_remove "$name"
  done
}

# Disposable test VPS containers left behind by an interrupted test run.
vps_clean_tests() {
  local name
  for name in $(docker ps -a --filter label=org.rotor.lab.role=test --format '{{.Names}}'); do
    vps_remove "$name"
  done
}

# The host names HAProxy routes on a VPS, with a command that reaches each from this machine.
vps_routes() {
  local name=$1 http https host backend secure
  http=$(docker port "$name" 80/tcp 2>/dev/null | head -n 1)
  https=$(docker port "$name" 443/tcp 2>/dev/null | head -n 1)
  # Names with their certificate (maps/https.map): plain HTTP redirects, so show HTTPS only.
  secure=" $(docker exec "$name" cut -d' ' -f1 /etc/rotor/haproxy/maps/https.map 2>/dev/null | tr '\n' ' ') "
  docker exec "$name" cat /etc/rotor/haproxy/maps/hosts.map 2>/dev/null | while read -r host backend; do
    case $host in ''|'#'*) continue ;; esac
    if [ -n "$https" ] && [ "${secure#* "$host" }" != "$secure" ]; then
      printf '  %s -> backend %s:  curl -k --resolve %s:%s:127.0.0.1 https://%s:%s/   (its own certificate; HTTP redirects)\n' \
        "$host" "$backend" "$host" "${https##*:}" "$host" "${https##*:}"
    elif [ -n "$http" ]; then
      printf '  %s -> backend %s:  curl -H "Host: %s" http://%s/   (HTTPS: curl -k --resolve %s:%s:127.0.0.1 https://%s:%s/)\n' \
        "$host" "$backend" "$host" "$http" "$host" "${https##*:}" "$host" "${https##*:}"
    else
      printf '  %s -> backend %s\n' "$host" "$backend"
    fi
  done
}

vps_status() {
  local name
  printf '%-26s %-10s %-22s %s\n' WHAT STATE WHERE DETAIL
  printf '%-26s %-10s %-22s %s\n' "registry mirror" \
    "$(docker inspect -f '{{.State.Status}}' "$LAB_REGISTRY_NAME" 2>/dev/null || echo absent)" \
    "127.0.0.1:$LAB_REGISTRY_PORT" \
    "$(curl -fsS "http://127.0.0.1:$LAB_REGISTRY_PORT/v2/_catalog" 2>/dev/null | tr -cd ',' | wc -c | awk '{print $1 + 1 " repositories"}')"
  for name in $(docker ps -a --filter label=org.rotor.lab.role=vps --format '{{.Names}}'); do
    printf '%-26s %-10s %-22s %s\n' "$name" \
      "$(docker exec "$name" systemctl is-system-running 2>/dev/null || docker inspect -f '{{.State.Status}}' "$name")" \
      "$(docker port "$name" 80/tcp 2>/dev/null | head -n 1 || true)" \
      "docker $(docker exec "$name" systemctl is-active docker 2>/dev/null || echo absent)"
    docker exec "$name" sh -c 'command -v docker >/dev/null && docker ps --format "  {{.Names}}\t{{.Image}}\t{{.Status}}"; command -v docker >/dev/null && docker network ls --filter label=org.rotor.vps.managed-by --format "  network {{.Name}}"' 2>/dev/null || true
    vps_routes "$name"
  done
}

# The demo tenant's data: after `make up` converged the demo tenant of the lab inventory (database
# "demo", schema "api"), a table with rows its anonymous role may read, as a tenant's migration would
# add it; then PostgREST reloads its schema cache. Idempotent.
vps_demo_tenant() {
  local suite=${1:-trixie} name password
  name=$(vps_name "$suite")
  password=$(awk '/^postgres_superuser_password:/ {print $2}' "$LAB_DIR/../../inventories/lab/group_vars/vps.yml")
  docker exec "$name" docker exec -e PGPASSWORD="$password" rotor-postgres \
    psql -X -q -v ON_ERROR_STOP=1 -h rotor-postgres -U postgres -d demo -c "
      CREATE TABLE IF NOT EXISTS api.items (id serial PRIMARY KEY, name text NOT NULL);
      GRANT SELECT ON api.items TO demo_anon;
      INSERT INTO api.items (name) SELECT n FROM unnest(ARRAY['first', 'second', 'third']) AS n
        WHERE NOT EXISTS (SELECT 1 FROM api.items);" \
    || die "could not add the demo tenant's table" "did the converge create the demo tenant? (rotor_tenants in inventories/lab)"
  docker exec "$name" sh -c 'for pid in $(docker inspect -f "{{.State.Pid}}" $(docker ps -q --filter label=org.rotor.vps.tenant=demo)); do [ "$pid" -gt 0 ] && kill -s USR1 "$pid"; done'
  log "demo tenant: a table api.items with three rows, at /items (through HAProxy, PostgREST and PgBouncer)"
}

# vps_https_info SUITE HOST[/PATH]...: how to reach each name over HTTPS on the lab VPS, checked
# against Pebble's current root, and that plain HTTP redirects there. Fails when a name's
# certificate does not verify (Pebble restarted since it was issued: a new root).
vps_https_info() {
  local target host url code failed=0
  shift
  acme_roots
  for target in "$@"; do
    host=${target%%/*}
    url="https://$host:$LAB_VPS_HTTPS_PORT/${target#"$host"/}"
    [ "$host" != "$target" ] || url="https://$host:$LAB_VPS_HTTPS_PORT/"
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$LAB_STATE_DIR/pebble-root.pem" \
      --resolve "$host:$LAB_VPS_HTTPS_PORT:127.0.0.1" "$url" || true)
    [ "$code" != 000 ] || { failed=1; log "$host: its certificate does not verify against Pebble's current root"; continue; }
    log "$host over HTTPS (HTTP $code; its certificate from the lab's Pebble, plain HTTP redirects to it):"
    log "  curl --cacert $LAB_STATE_DIR/pebble-root.pem --resolve $host:$LAB_VPS_HTTPS_PORT:127.0.0.1 $url"
  done
  return "$failed"
}

# Where Prometheus and Alertmanager answer on the lab VPS (through its HAProxy, behind the stats
# login), and how many of Prometheus's targets are up once each has been scraped (bounded wait).
vps_observability_info() {
  local name inventory user password targets summary i
  name=$(vps_name "${1:-trixie}")
  inventory="$LAB_DIR/../../inventories/lab/group_vars/vps.yml"
  user=$(sed -n 's/^haproxy_stats_user: *//p' "$inventory"); user=${user:-admin}
  password=$(sed -n 's/^haproxy_stats_password: *//p' "$inventory")
  for i in $(seq 1 30); do
    targets=$(docker exec "$name" curl -fsS --max-time 5 -u "$user:$password" http://127.0.0.1:9090/api/v1/targets 2>/dev/null) || targets=""
    summary=$(printf '%s' "$targets" | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
if any(t["health"] == "unknown" for t in targets):
    sys.exit(1)
down = sorted("%s %s" % (t["labels"]["job"], t["labels"]["instance"]) for t in targets if t["health"] != "up")
print("%d of %d Prometheus targets are up%s" % (len(targets) - len(down), len(targets),
      "; down: " + ", ".join(down) if down else ""))' 2>/dev/null) && break
    summary=""
    sleep 1
  done
  log "Prometheus http://127.0.0.1:9090/ and Alertmanager http://127.0.0.1:9093/ on the VPS $name, through its HAProxy"
  log "  (log in as $user with haproxy_stats_password of inventories/lab/group_vars/vps.yml); from this machine:"
  log "  docker exec $name curl -su $user:$password http://127.0.0.1:9090/api/v1/targets"
  log "  docker exec $name curl -su $user:$password http://127.0.0.1:9093/api/v2/alerts"
  log "  ${summary:-Prometheus did not answer with every target scraped within 30 s}"
  log "  Grafana, Loki and Alloy are off in the lab (no offline image): their configuration is only validated by tests."
  [ -n "$summary" ]
}
