# shellcheck shell=bash
# The lab's ACME CA: Pebble (the ACME test server of Let's Encrypt) and pebble-challtestsrv as its
# DNS server, both on the lab network, from the lab's pebble image.
#
# challtestsrv answers A queries with the address its management API (port 8055) was given, per
# name (POST /add-a; 127.0.0.1 by default), so that Pebble can validate HTTP-01 at a lab VPS's
# HAProxy on port 80, and it serves the TXT records a dns-01 hook publishes there. Pebble is reachable as https://pebble:14000/dir (its
# listener certificate names "pebble"; its CA is copied to $LAB_STATE_DIR/pebble-ca.pem). Pebble
# makes new roots, and forgets every account, whenever it starts.

LAB_PEBBLE_NAME=${LAB_PEBBLE_NAME:-$LAB_PREFIX-pebble}
LAB_CHALLTESTSRV_NAME=${LAB_CHALLTESTSRV_NAME:-$LAB_PREFIX-challtestsrv}
LAB_PEBBLE_IMAGE=${LAB_PEBBLE_IMAGE:-$LAB_PREFIX/pebble:latest}

# acme_up [VALIDITY_SECONDS]: (re)start Pebble when it is missing or its certificates' validity
# differs (default 90 days, as Let's Encrypt's); challtestsrv is started once and kept.
acme_up() {
  local validity=${1:-7776000} config="$LAB_STATE_DIR/pebble-config.json" running started
  ensure_lab_network
  docker image inspect "$LAB_PEBBLE_IMAGE" >/dev/null 2>&1 \
    || die "the image $LAB_PEBBLE_IMAGE is missing" "run 'make lab' (tests/lab/lab images) first"
  if [ "$(docker inspect -f '{{.State.Running}}' "$LAB_CHALLTESTSRV_NAME" 2>/dev/null || true)" != true ]; then
    docker rm -f "$LAB_CHALLTESTSRV_NAME" >/dev/null 2>&1 || true
    log "starting pebble-challtestsrv ($LAB_CHALLTESTSRV_NAME): DNS on :8053, management on :8055"
    docker run -d --name "$LAB_CHALLTESTSRV_NAME" --network "$LAB_NETWORK" --network-alias challtestsrv \
      --restart unless-stopped --entrypoint /usr/bin/pebble-challtestsrv "$LAB_PEBBLE_IMAGE" \
      -dns01 :8053 -management :8055 -http01 "" -https01 "" -tlsalpn01 "" -doh "" \
      -defaultIPv4 127.0.0.1 -defaultIPv6 "" >/dev/null
  fi
  mkdir -p "$LAB_STATE_DIR"
  # httpPort 80: HTTP-01 goes to HAProxy's port 80, as a real CA's does.
  cat > "$config.new" <<EOF
{"pebble": {"listenAddress": "0.0.0.0:14000", "managementListenAddress": "0.0.0.0:15000",
  "certificate": "test/certs/localhost/cert.pem", "privateKey": "test/certs/localhost/key.pem",
  "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": false,
  "certificateValidityPeriod": $validity, "retryAfter": {"authz": 1, "order": 1}}}
EOF
  running=$(docker inspect -f '{{.State.Running}}' "$LAB_PEBBLE_NAME" 2>/dev/null || true)
  if [ "$running" != true ] || ! cmp -s "$config.new" "$config"; then
    mv "$config.new" "$config"
    docker rm -f "$LAB_PEBBLE_NAME" >/dev/null 2>&1 || true
    log "starting Pebble ($LAB_PEBBLE_NAME, certificates valid ${validity}s) as https://pebble:14000/dir"
    # No validation sleep; nonces are still rejected at Pebble's default 5% (clients retry).
    docker run -d --name "$LAB_PEBBLE_NAME" --network "$LAB_NETWORK" --network-alias pebble \
      --restart unless-stopped -e PEBBLE_VA_NOSLEEP=1 -v "$config:/test/config/lab.json:ro" "$LAB_PEBBLE_IMAGE" \
      -config /test/config/lab.json -dnsserver challtestsrv:8053 >/dev/null
  else
    rm -f "$config.new"
  fi
  docker cp "$LAB_PEBBLE_NAME:/test/certs/pebble.minica.pem" "$LAB_STATE_DIR/pebble-ca.pem" >/dev/null
  started=$(docker inspect -f '{{.State.StartedAt}}' "$LAB_PEBBLE_NAME")
  for _ in $(seq 1 40); do
    docker logs --since "$started" "$LAB_PEBBLE_NAME" 2>&1 | grep -q "ACME directory available" && return 0
    sleep 0.25
  done
  die "Pebble does not answer on pebble:14000: $(docker logs --tail 5 "$LAB_PEBBLE_NAME" 2>&1 | tr '\n' ' ')" \
    "see 'docker logs $LAB_PEBBLE_NAME'"
}

acme_down() {
  docker rm -f "$LAB_PEBBLE_NAME" "$LAB_CHALLTESTSRV_NAME" >/dev/null 2>&1 || true
}

# container_ip NAME: the container's address on the lab network.
container_ip() {
  docker inspect -f "{{with index .NetworkSettings.Networks \"$LAB_NETWORK\"}}{{.IPAddress}}{{end}}" "$1" 2>/dev/null
}

# acme_dns VPS NAME...: challtestsrv answers NAME with the lab VPS container's address, so that Pebble
# validates HTTP-01 for NAME at that VPS's HAProxy (port 80).
acme_dns() {
  local vps=$1 address server name
  shift
  address=$(container_ip "$vps")
  [ -n "$address" ] || die "the lab VPS $vps is not on the lab network" "run 'make up' first"
  server=$(container_ip "$LAB_CHALLTESTSRV_NAME")
  [ -n "$server" ] || die "pebble-challtestsrv does not run" "run 'tests/lab/lab acme-up' first"
  for name in "$@"; do
    # add-a adds to what a name had: clear it first (a VPS of an earlier run may have had another address).
    curl -fsS -o /dev/null -X POST -d "{\"host\": \"$name\"}" "http://$server:8055/clear-a" \
      && curl -fsS -o /dev/null -X POST -d "{\"host\": \"$name\", \"addresses\": [\"$address\"]}" \
        "http://$server:8055/add-a" \
      || die "challtestsrv did not take the address of $name" "see 'docker logs $LAB_CHALLTESTSRV_NAME'"
  done
  log "challtestsrv: $* -> $vps ($address)"
}

# acme_roots: Pebble's current root certificate (it makes a new one on every start), which the
# certificates it issued chain to, in $LAB_STATE_DIR/pebble-root.pem.
acme_roots() {
  local server
  server=$(container_ip "$LAB_PEBBLE_NAME")
  [ -n "$server" ] || die "Pebble does not run" "run 'tests/lab/lab acme-up' first"
  curl -fsS --cacert "$LAB_STATE_DIR/pebble-ca.pem" --resolve "pebble:15000:$server" \
    -o "$LAB_STATE_DIR/pebble-root.pem" https://pebble:15000/roots/0 \
    || die "Pebble's management API did not give its root" "see 'docker logs $LAB_PEBBLE_NAME'"
}
