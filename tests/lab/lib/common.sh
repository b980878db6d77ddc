# shellcheck shell=bash
# Shared helpers for the lab scripts: logging, errors that name cause and fix,
# and facts read from the host (never hard-coded).

LAB_PREFIX=${LAB_PREFIX:-rotor-lab}
LAB_NETWORK=${LAB_NETWORK:-rotor-lab}
LAB_STATE_DIR=${LAB_STATE_DIR:-/var/lib/rotor-lab}
LAB_LOG_DIR=${LAB_LOG_DIR:-/var/log/rotor-lab}
# What every checkout on this machine can share, like the images: Python environments by the hash
# of their pins, ansible-test's wheelhouse and test environments.
LAB_CACHE_DIR=${LAB_CACHE_DIR:-/var/cache/rotor-lab}
LAB_REGISTRY_NAME=${LAB_REGISTRY_NAME:-rotor-lab-registry}
LAB_REGISTRY_PORT=${LAB_REGISTRY_PORT:-5000}

log() { printf '[lab] %s\n' "$*" >&2; }

# die CAUSE [FIX]: stop with a message that says what went wrong and what to do.
die() {
  printf '[lab] ERROR: %s\n' "$1" >&2
  [ -n "${2:-}" ] && printf '[lab] fix: %s\n' "$2" >&2
  exit 1
}

require_root() {
  [ "$(id -u)" -eq 0 ] || die "the lab needs root (it installs packages and runs dockerd)" \
    "run the make target as root, e.g. with sudo"
}

apt_updated=""
# apt_install PKG...: install Debian packages that are missing, updating the lists once.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [ -z "$apt_updated" ]; then
    apt-get update -qq || die "apt-get update failed" "check the host's apt sources"
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed" "run it by hand to see apt's message"
}

# apt_mirror: the Debian mirror this host already uses, read from its own apt configuration
# (deb822 .sources files or one-line sources.list). Security and update archives are skipped.
apt_mirror() {
  local uri
  uri=$(
    {
      grep -hE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -E 's/^[[:space:]]*URIs:[[:space:]]*//' | tr ' ' '\n'
      grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | sed -E 's/\[[^]]*\]//' | awk '{print $2}'
    } | grep -E '^https?://' | grep -v -- '-security' | head -n 1
  )
  [ -n "$uri" ] || die "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d" \
    "configure apt on this host first (the lab builds its images from the same mirror)"
  printf '%s\n' "${uri%/}"
}


# ensure_venv DIR REQUIREMENTS: the project's Python tools. The environment itself lives in
# $LAB_CACHE_DIR/venv/<hash of the pins and of python3>, built once per machine and pin set, and DIR
# links to it: a fresh checkout finds it ready, and a change of the pins builds a new one.
ensure_venv() {
  local dir=$1 reqs=$2 key target
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  key=$( { cat "$reqs"; python3 -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
  target="$LAB_CACHE_DIR/venv/$key"
  if [ ! -x "$target/bin/python" ] || [ ! -e "$target/.complete" ]; then
    log "creating the Python environment $target from $reqs (about 80 s on a fresh machine)"
    rm -rf "$target"
    mkdir -p "$(dirname "$target")"
    python3 -m venv "$target" || die "python3 -m venv $target failed" "install python3-venv (Debian) and retry"
    "$target/bin/pip" install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$target/bin/pip" install -q --disable-pip-version-check -r "$reqs" \
      || die "pip install -r $reqs failed" "read pip's message above; the pins live in $reqs"
    touch "$target/.complete"
  fi
  if [ "$(readlink "$dir" 2>/dev/null)" != "$target" ]; then
    [ -L "$dir" ] || [ ! -e "$dir" ] || rm -rf "$dir"  # an environment of an earlier layout
    ln -sfn "$target" "$dir"
    log "Python environment: $dir -> $target"
  fi
}

# ensure_host_tools: what tests run on this host besides the Python tools: testssl.sh checks the
# lab HAProxy's TLS configuration.
ensure_host_tools() {
  apt_install testssl.sh
}
