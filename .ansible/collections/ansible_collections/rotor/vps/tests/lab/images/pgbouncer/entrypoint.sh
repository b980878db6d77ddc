#!/bin/sh
# Environment contract of edoburu/pgbouncer: a mounted
# /etc/pgbouncer/pgbouncer.ini is used as is; without one, it is generated
# from DATABASE_URL or DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD and the
# upper-case names of pgbouncer.ini settings (POOL_MODE, MAX_CLIENT_CONN, ...).
# Credentials given in the environment are appended to the auth file.
set -e

PG_CONFIG_DIR=/etc/pgbouncer
CONFIG_FILE="$PG_CONFIG_DIR/pgbouncer.ini"
_AUTH_FILE="${AUTH_FILE:-$PG_CONFIG_DIR/userlist.txt}"

# DATABASE_URL=postgres://user:pass@host:port/dbname
if [ -n "$DATABASE_URL" ]; then
  url="${DATABASE_URL#*://}"
  case "$url" in
    *@*) userpass="${url%@*}"; url="${url##*@}" ;;
    *) userpass= ;;
  esac
  if [ -n "$userpass" ]; then
    case "$userpass" in
      *:*) DB_USER="${userpass%%:*}"; DB_PASSWORD="${userpass#*:}" ;;
      *) DB_USER="$userpass" ;;
    esac
  fi
  hostport="${url%%/*}"
  case "$url" in
    */*) DB_NAME="${url#*/}" ;;
  esac
  case "$hostport" in
    *:*) DB_HOST="${hostport%%:*}"; DB_PORT="${hostport#*:}" ;;
    *) DB_HOST="$hostport" ;;
  esac
fi

# add_user NAME PASSWORD: append to the auth file unless the user is listed.
# Hashed as md5 unless AUTH_TYPE is plain or scram-sha-256 (pgbouncer needs
# the clear text to answer SCRAM itself).
add_user() {
  [ -n "$1" ] && [ -n "$2" ] || return 0
  [ -e "$_AUTH_FILE" ] || touch "$_AUTH_FILE" 2>/dev/null || true
  if grep -q "^\"$1\"" "$_AUTH_FILE" 2>/dev/null; then
    return 0
  fi
  if [ ! -w "$_AUTH_FILE" ]; then
    echo "Not writing credentials for $1: $_AUTH_FILE is read-only" >&2
    return 0
  fi
  case "$AUTH_TYPE" in
    plain|scram-sha-256) pass="$2" ;;
    *) pass="md5$(printf '%s%s' "$2" "$1" | md5sum | cut -d' ' -f1)" ;;
  esac
  printf '"%s" "%s"\n' "$1" "$pass" >> "$_AUTH_FILE"
  echo "Wrote authentication credentials for $1 to $_AUTH_FILE"
}

[ -e "$_AUTH_FILE" ] || touch "$_AUTH_FILE" 2>/dev/null || true
add_user "$DB_USER" "$DB_PASSWORD"

# ADMIN_USERS/ADMIN_PASSWORDS and STATS_USERS/STATS_PASSWORDS: comma lists, pairwise.
add_users() {
  users="$1" passwords="$2"
  [ -n "$passwords" ] || return 0
  while [ -n "$users" ] && [ -n "$passwords" ]; do
    add_user "${users%%,*}" "${passwords%%,*}"
    case "$users" in *,*) users="${users#*,}" ;; *) users= ;; esac
    case "$passwords" in *,*) passwords="${passwords#*,}" ;; *) passwords= ;; esac
  done
}
add_users "${ADMIN_USERS:-postgres}" "${ADMIN_PASSWORDS:-$ADMIN_PASSWORD}"
add_users "$STATS_USERS" "$STATS_PASSWORDS"

# opt VAR key: print "key = $VAR" when VAR is set and not empty.
opt() {
  eval "val=\${$1:-}"
  if [ -n "$val" ]; then
    printf '%s = %s\n' "$2" "$val"
  fi
}

if [ ! -f "$CONFIG_FILE" ]; then
  echo "Create pgbouncer config in $PG_CONFIG_DIR"
  : "${DB_HOST:?Setup pgbouncer config error! You must set DB_HOST env}"
  {
    echo '################## Auto generated ##################'
    echo '[databases]'
    echo "${DB_NAME:-*} = host=$DB_HOST port=${DB_PORT:-5432} auth_user=${DB_USER:-postgres}"
    opt CLIENT_ENCODING client_encoding
    echo
    echo '[pgbouncer]'
    echo "listen_addr = ${LISTEN_ADDR:-0.0.0.0}"
    echo "listen_port = ${LISTEN_PORT:-5432}"
    echo "unix_socket_dir = ${UNIX_SOCKET_DIR:-}"
    echo 'user = postgres'
    echo "auth_file = $_AUTH_FILE"
    opt AUTH_HBA_FILE auth_hba_file
    echo "auth_type = ${AUTH_TYPE:-md5}"
    opt AUTH_USER auth_user
    opt AUTH_QUERY auth_query
    opt AUTH_DBNAME auth_dbname
    opt POOL_MODE pool_mode
    opt MAX_CLIENT_CONN max_client_conn
    opt POOL_SIZE pool_size
    opt DEFAULT_POOL_SIZE default_pool_size
    opt MIN_POOL_SIZE min_pool_size
    opt RESERVE_POOL_SIZE reserve_pool_size
    opt RESERVE_POOL_TIMEOUT reserve_pool_timeout
    opt MAX_DB_CONNECTIONS max_db_connections
    opt MAX_USER_CONNECTIONS max_user_connections
    opt SERVER_ROUND_ROBIN server_round_robin
    echo "ignore_startup_parameters = ${IGNORE_STARTUP_PARAMETERS:-extra_float_digits}"
    opt DISABLE_PQEXEC disable_pqexec
    opt APPLICATION_NAME_ADD_HOST application_name_add_host
    opt TIMEZONE timezone
    opt MAX_PREPARED_STATEMENTS max_prepared_statements
    echo
    echo '# Log settings'
    opt LOG_CONNECTIONS log_connections
    opt LOG_DISCONNECTIONS log_disconnections
    opt LOG_POOLER_ERRORS log_pooler_errors
    opt LOG_STATS log_stats
    opt STATS_PERIOD stats_period
    opt VERBOSE verbose
    echo "admin_users = ${ADMIN_USERS:-postgres}"
    opt STATS_USERS stats_users
    opt LOGFILE logfile
    echo
    echo '# Connection sanity checks, timeouts'
    opt SERVER_RESET_QUERY server_reset_query
    opt SERVER_RESET_QUERY_ALWAYS server_reset_query_always
    opt SERVER_CHECK_DELAY server_check_delay
    opt SERVER_CHECK_QUERY server_check_query
    opt SERVER_LIFETIME server_lifetime
    opt SERVER_IDLE_TIMEOUT server_idle_timeout
    opt SERVER_CONNECT_TIMEOUT server_connect_timeout
    opt SERVER_LOGIN_RETRY server_login_retry
    opt CLIENT_LOGIN_TIMEOUT client_login_timeout
    opt AUTODB_IDLE_TIMEOUT autodb_idle_timeout
    opt DNS_MAX_TTL dns_max_ttl
    opt DNS_NXDOMAIN_TTL dns_nxdomain_ttl
    echo
    echo '# TLS settings'
    opt CLIENT_TLS_SSLMODE client_tls_sslmode
    opt CLIENT_TLS_KEY_FILE client_tls_key_file
    opt CLIENT_TLS_CERT_FILE client_tls_cert_file
    opt CLIENT_TLS_CA_FILE client_tls_ca_file
    opt CLIENT_TLS_PROTOCOLS client_tls_protocols
    opt CLIENT_TLS_CIPHERS client_tls_ciphers
    opt CLIENT_TLS_ECDHCURVE client_tls_ecdhcurve
    opt CLIENT_TLS_DHEPARAMS client_tls_dheparams
    opt SERVER_TLS_SSLMODE server_tls_sslmode
    opt SERVER_TLS_CA_FILE server_tls_ca_file
    opt SERVER_TLS_KEY_FILE server_tls_key_file
    opt SERVER_TLS_CERT_FILE server_tls_cert_file
    opt SERVER_TLS_PROTOCOLS server_tls_protocols
    opt SERVER_TLS_CIPHERS server_tls_ciphers
    echo
    echo '# Dangerous timeouts'
    opt QUERY_TIMEOUT query_timeout
    opt QUERY_WAIT_TIMEOUT query_wait_timeout
    opt CLIENT_IDLE_TIMEOUT client_idle_timeout
    opt IDLE_TRANSACTION_TIMEOUT idle_transaction_timeout
    opt PKT_BUF pkt_buf
    opt MAX_PACKET_SIZE max_packet_size
    opt LISTEN_BACKLOG listen_backlog
    opt SBUF_LOOPCNT sbuf_loopcnt
    opt SUSPEND_TIMEOUT suspend_timeout
    opt TCP_DEFER_ACCEPT tcp_defer_accept
    opt TCP_KEEPALIVE tcp_keepalive
    opt TCP_KEEPCNT tcp_keepcnt
    opt TCP_KEEPIDLE tcp_keepidle
    opt TCP_KEEPINTVL tcp_keepintvl
    opt TCP_USER_TIMEOUT tcp_user_timeout
    echo '################## end file ##################'
  } > "$CONFIG_FILE"
  cat "$CONFIG_FILE"
  echo "Starting $*..."
fi

exec "$@"
