# shellcheck shell=bash
# Offline images: Debian base images made with debootstrap, component images built FROM them with
# Debian packages, and a local registry that serves them under their upstream names, so roles keep
# upstream image references and the lab VPS pulls them through its registry-mirrors setting.

LAB_SUITES=(trixie bookworm)
# Engine-ready VPS images (tests/lab/infra/vps-engine) for the integration tests, which run on trixie.
LAB_ENGINE_SUITES=(trixie)
LAB_HASH_LABEL=org.rotor.lab.recipe-hash
LAB_REGISTRY_HOSTPORT="127.0.0.1:$LAB_REGISTRY_PORT"

image_label() { docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

ensure_lab_network() {
  docker network inspect "$LAB_NETWORK" >/dev/null 2>&1 && return 0
  log "creating docker network $LAB_NETWORK"
  docker network create "$LAB_NETWORK" >/dev/null
}

# build_base SUITE: rotor-lab/debian:SUITE from debootstrap (minbase), rebuilt only when its
# recipe changes. The mirror is the one this host's apt already uses.
build_base() {
  local suite=$1 tag="rotor-lab/debian:$1" hash dir start mirror
  hash=$(printf 'debootstrap minbase main %s v1\n' "$suite" | sha256sum | cut -c1-16)
  if [ "$(image_label "$tag" "$LAB_HASH_LABEL")" = "$hash" ]; then
    log "image $tag: up to date"
    return 0
  fi
  apt_install debootstrap
  mirror=$(apt_mirror)
  start=$(date +%s)
  dir=$(mktemp -d /var/tmp/rotor-lab-rootfs.XXXXXX)
  log "image $tag: debootstrap $suite (about 40 s)"
  if ! debootstrap --variant=minbase --components=main "$suite" "$dir" "$mirror" >"$LAB_LOG_DIR/debootstrap-$suite.log" 2>&1; then
    rm -rf "$dir"
    die "debootstrap of $suite failed: $(tail -n 3 "$LAB_LOG_DIR/debootstrap-$suite.log" | tr '\n' ' ')" \
      "read $LAB_LOG_DIR/debootstrap-$suite.log; an old debian-archive-keyring on the host is a common cause"
  fi
  # Keep images small: no documentation or man pages from later apt-get installs.
  printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n' \
    >"$dir/etc/dpkg/dpkg.cfg.d/01-rotor-lab-nodoc"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | docker import \
    --change "LABEL $LAB_HASH_LABEL=$hash org.opencontainers.image.source=debootstrap-$suite-minbase" \
    --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
  rm -rf "$dir"
  log "image $tag: built in $(( $(date +%s) - start ))s"
}

# recipe_hash DIR [--build-arg K=V]...: the build context's content, the build arguments and the
# IDs of the images it builds FROM (with build arguments substituted in FROM lines).
recipe_hash() {
  local dir=$1 from froms kv pattern
  shift
  froms=$(awk 'toupper($1) == "FROM" {print $2}' "$dir/Dockerfile")
  for kv in "$@"; do
    [[ $kv == *=* ]] || continue
    pattern="\${${kv%%=*}}"
    froms=${froms//"$pattern"/${kv#*=}}
  done
  {
    (cd "$dir" && find . -type f ! -name '*.tgz' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    printf '%s\n' "$@"
    for from in $froms; do
      docker image inspect -f '{{.Id}}' "$from" 2>/dev/null || echo "missing $from"
    done
  } | sha256sum | cut -c1-16
}

# build_image DIR TAG [BUILD-ARG...]: docker build DIR as TAG unless its recipe hash is unchanged.
build_image() {
  local dir=$1 tag=$2 hash start
  shift 2
  [ -x "$dir/prepare" ] && "$dir/prepare" "$dir"
  hash=$(recipe_hash "$dir" "$@")
  if [ "$(image_label "$tag" "$LAB_HASH_LABEL")" = "$hash" ]; then
    log "image $tag: up to date"
    return 0
  fi
  start=$(date +%s)
  log "image $tag: building from ${dir#"$LAB_DIR/"}"
  if ! docker build -q --label "$LAB_HASH_LABEL=$hash" -t "$tag" "$@" "$dir" >"$LAB_LOG_DIR/build-${tag//[\/:]/_}.log" 2>&1; then
    die "docker build of $tag failed: $(tail -n 5 "$LAB_LOG_DIR/build-${tag//[\/:]/_}.log" | tr '\n' ' ')" \
      "read $LAB_LOG_DIR/build-${tag//[\/:]/_}.log"
  fi
  log "image $tag: built in $(( $(date +%s) - start ))s"
}

registry_remove() {
  docker rm -f "$LAB_REGISTRY_NAME" >/dev/null 2>&1 || true
  docker volume rm "$LAB_REGISTRY_NAME-data" >/dev/null 2>&1 || true
  docker network rm "$LAB_NETWORK" >/dev/null 2>&1 || true
}

ensure_registry() {
  local image=rotor-lab/registry:latest running _
  build_image "$LAB_DIR/infra/registry" "$image"
  running=$(docker inspect -f '{{.State.Running}} {{.Image}}' "$LAB_REGISTRY_NAME" 2>/dev/null || true)
  if [ "$running" != "true $(docker image inspect -f '{{.Id}}' "$image")" ]; then
    docker rm -f "$LAB_REGISTRY_NAME" >/dev/null 2>&1 || true
    log "starting the lab registry $LAB_REGISTRY_NAME on $LAB_REGISTRY_HOSTPORT"
    docker run -d --name "$LAB_REGISTRY_NAME" --network "$LAB_NETWORK" --restart unless-stopped \
      -p "$LAB_REGISTRY_HOSTPORT:5000" -v "$LAB_REGISTRY_NAME-data:/var/lib/docker-registry" \
      "$image" >/dev/null
  fi
  for _ in $(seq 1 40); do
    curl -fsS "http://$LAB_REGISTRY_HOSTPORT/v2/" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  die "the lab registry does not answer on http://$LAB_REGISTRY_HOSTPORT/v2/: $(docker logs --tail 5 "$LAB_REGISTRY_NAME" 2>&1 | tr '\n' ' ')" \
    "check that port $LAB_REGISTRY_PORT on 127.0.0.1 is free, then run 'make lab' again"
}

# push_image LOCAL PATH:TAG: make the registry serve LOCAL as PATH:TAG; skipped when the
# registry already holds exactly that image.
push_image() {
  local local_tag=$1 ref=$2 remote="$LAB_REGISTRY_HOSTPORT/$2" want have
  docker tag "$local_tag" "$remote"
  # Either may be missing (never pushed, registry emptied): then they differ and we push.
  want=$(docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$remote" \
    | awk -F@ -v repo="$LAB_REGISTRY_HOSTPORT/${ref%:*}" '$1 == repo {print $2; exit}')
  have=$(curl -fsSI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$LAB_REGISTRY_HOSTPORT/v2/${ref%:*}/manifests/${ref##*:}" 2>/dev/null \
    | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}' || true)
  if [ -n "$want" ] && [ "$want" = "$have" ]; then
    return 0
  fi
  docker push -q "$remote" >/dev/null || die "docker push $remote failed" "check 'docker logs $LAB_REGISTRY_NAME'"
  log "registry: pushed $ref"
}

# The manifest lists component images: "<dir> <registry path>:<tag>" per line.
manifest_entries() { grep -vE '^[[:space:]]*(#|$)' "$LAB_DIR/images/manifest"; }

build_all_images() {
  local suite dir ref count=0 total
  mkdir -p "$LAB_LOG_DIR"
  ensure_lab_network
  for suite in "${LAB_SUITES[@]}"; do
    build_base "$suite"
  done
  ensure_registry
  for suite in "${LAB_SUITES[@]}"; do
    push_image "rotor-lab/debian:$suite" "library/debian:$suite"
  done
  # PostgREST's prepare step fetches its npm package on the host (containers cannot reach npm).
  command -v npm >/dev/null 2>&1 || apt_install npm
  total=$(manifest_entries | wc -l)
  while read -r dir ref; do
    count=$((count + 1))
    log "[$count/$total] $ref"
    build_image "$LAB_DIR/images/$dir" "rotor-lab/$dir:latest"
    push_image "rotor-lab/$dir:latest" "$ref"
  done < <(manifest_entries)
  for suite in "${LAB_SUITES[@]}"; do
    build_image "$LAB_DIR/infra/vps" "rotor-lab/vps:$suite" --build-arg "SUITE=$suite"
  done
  for suite in "${LAB_ENGINE_SUITES[@]}"; do
    build_image "$LAB_DIR/infra/vps-engine" "rotor-lab/vps-engine:$suite" --build-arg "SUITE=$suite" \
      --build-arg "PACKAGES=$(engine_packages "$suite")"
  done
}

# engine_packages SUITE: what the roles install on a VPS of SUITE from the distribution, read from
# their own files: the docker_host role's engine packages for the release, and every role's
# *_python_packages and *_ansible_packages default. The engine-ready image installs exactly these.
engine_packages() {
  python3 - "$LAB_DIR/../../roles" "$1" <<'PY'
import sys
from pathlib import Path

import yaml

roles, suite = Path(sys.argv[1]), sys.argv[2]
table = yaml.safe_load((roles / "docker_host" / "vars" / "main.yml").read_text())
by_release = table["__docker_host_packages_by_source"]["distribution"]
packages = list(by_release.get(suite, by_release["default"]))
for defaults in sorted(roles.glob("*/defaults/main.yml")):
    for name, value in (yaml.safe_load(defaults.read_text()) or {}).items():
        if name.endswith(("_python_packages", "_ansible_packages")):
            packages += [p for p in value if p not in packages]
print(" ".join(packages))
PY
}
