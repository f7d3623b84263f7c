#!/usr/bin/env bash
# The local devstack for COLIMA_BACKEND=live: starts on 127.0.0.1 what is not already running (OpenBao
# dev server, SecantusDB, a 6-node Redis Cluster), converges the dev_admin accounts on the machine's
# PostgreSQL, MariaDB and RabbitMQ, and writes the matching secrets to Vault. See docs/devstack.md.
#
#   scripts/devstack.sh up                 start what is missing, converge accounts and secrets
#   scripts/devstack.sh down [--keep-data] stop only what `up` started; remove .devstack/ unless --keep-data
#   scripts/devstack.sh status             one line per service
#   scripts/devstack.sh env                export lines for the live backend: eval "$(scripts/devstack.sh env)"
#   scripts/devstack.sh pki                (re)converge the PKI engine, CA and role on the running Vault
#   scripts/devstack.sh with COMMAND...    run COMMAND on the devstack (started if missing, then stopped)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DEVSTACK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly DEVSTACK_ROOT
HELPERS="${DEVSTACK_ROOT}/scripts/devstack"
# shellcheck source=devstack/common.sh
source "${HELPERS}/common.sh"
# shellcheck source=devstack/passwords.sh
source "${HELPERS}/passwords.sh"
# shellcheck source=devstack/vault.sh
source "${HELPERS}/vault.sh"
# shellcheck source=devstack/pki.sh
source "${HELPERS}/pki.sh"
# shellcheck source=devstack/mongodb.sh
source "${HELPERS}/mongodb.sh"
# shellcheck source=devstack/redis_cluster.sh
source "${HELPERS}/redis_cluster.sh"
# shellcheck source=devstack/system_services.sh
source "${HELPERS}/system_services.sh"
# shellcheck source=devstack/session.sh
source "${HELPERS}/session.sh"

usage() {
  sed -n '6,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
}

# Several engineers (and their test runs) share one machine: two `up`s at once would race to start
# the same servers, so `up` and `down` hold a lock for their whole run.
take_lock() {
  mkdir -p "$STATE_DIR"
  chmod 700 "$STATE_DIR"
  exec 9>"${STATE_DIR}/.lock"
  flock -w 120 9 || die "another devstack up/down has held ${STATE_DIR}/.lock for 2 minutes"
}

# A plain `up` adopts whatever a `with` session started: the developer asked for it to keep running.
cmd_up() {
  take_lock
  bring_up
  rm -f "$(sessions_started)"
}

bring_up() {
  local total_start t
  total_start=$(now_ms)
  ensure_commands
  ensure_venv_tools
  ensure_passwords

  local rabbitmq_start rabbitmq_job rabbitmq_state rabbitmq_end
  rabbitmq_start=$(now_ms)
  ensure_rabbitmq >"${STATE_DIR}/rabbitmq.state" &
  rabbitmq_job=$!

  t=$(now_ms)
  ensure_system_service postgres "$POSTGRES_PORT" postgres_answers start_postgres
  apply_postgres_accounts
  report postgres "$SYSTEM_STATE" "${LOOPBACK}:${POSTGRES_PORT}" "$t"

  t=$(now_ms)
  ensure_system_service mariadb "$MYSQL_PORT" mariadb_answers start_mariadb
  apply_mariadb_accounts
  report mysql "$SYSTEM_STATE" "${LOOPBACK}:${MYSQL_PORT}" "$t"


  t=$(now_ms)
  ensure_mongodb
  report mongodb "$MONGODB_STATE" "${LOOPBACK}:${MONGODB_PORT}" "$t"

  t=$(now_ms)
  ensure_redis_cluster
  report redis-cluster "$REDIS_STATE" "$REDIS_PORT_RANGE" "$t"

  t=$(now_ms)
  ensure_vault
  seed_vault
  report vault "${VAULT_STATE}; wrote ${VAULT_SECRETS_WRITTEN} secret(s)" "$VAULT_ADDR_LOCAL" "$t"

  t=$(now_ms)
  ensure_pki
  report vault-pki "$PKI_STATE" "${VAULT_ADDR_LOCAL}/v1/${PKI_MOUNT}" "$t"

  wait "$rabbitmq_job" || die "RabbitMQ could not be prepared (see the message above)"
  IFS='|' read -r rabbitmq_state rabbitmq_end <"${STATE_DIR}/rabbitmq.state"
  rm -f "${STATE_DIR}/rabbitmq.state"
  report rabbitmq "$rabbitmq_state" "${LOOPBACK}:${RABBITMQ_PORT} vhost ${DEV_VHOST}" \
    "$rabbitmq_start" "$rabbitmq_end"

  report total "up" "state in ${STATE_DIR}" "$total_start"
}

cmd_down() {
  local keep_data=false
  case "${1:-}" in
    --keep-data) keep_data=true ;;
    "") ;;
    *) usage; exit 2 ;;
  esac
  [[ -d "$STATE_DIR" ]] || {
    echo "nothing to stop: ${STATE_DIR} does not exist"
    return 0
  }
  take_lock
  # The three stop in parallel: each takes about two seconds to shut down cleanly.
  local t job
  local -a jobs=()
  t=$(now_ms)
  { stop_pidfile "$(vault_pidfile)" bao && report vault stopped "$VAULT_ADDR_LOCAL" "$t"; } &
  jobs+=($!)
  { stop_pidfile "$(mongodb_pidfile)" secantusd-py && report mongodb stopped "${LOOPBACK}:${MONGODB_PORT}" "$t"; } &
  jobs+=($!)
  { stop_redis_nodes && report redis-cluster stopped "$REDIS_PORT_RANGE" "$t"; } &
  jobs+=($!)
  for job in "${jobs[@]}"; do
    wait "$job"
  done
  if [[ "$keep_data" == false ]]; then
    rm -rf "$STATE_DIR"
  else
    rm -f "$(sessions_started)"
  fi
  echo "PostgreSQL, MariaDB and RabbitMQ belong to the machine and were left running."
}

service_status() {
  if port_open "$1"; then echo up; else echo down; fi
}

cmd_status() {
  load_passwords
  report vault "$(vault_healthy && echo up || echo down)" "$VAULT_ADDR_LOCAL"
  report postgres "$(service_status "$POSTGRES_PORT")" "${LOOPBACK}:${POSTGRES_PORT}"
  report mysql "$(service_status "$MYSQL_PORT")" "${LOOPBACK}:${MYSQL_PORT}"
  report mongodb "$(service_status "$MONGODB_PORT")" "${LOOPBACK}:${MONGODB_PORT}"
  if [[ -n "${PASSWORD[redis]:-}" ]]; then
    report redis-cluster "$(redis_cluster_status)" "$REDIS_PORT_RANGE"
  else
    local port open=0
    for port in "${REDIS_CLUSTER_PORTS[@]}"; do
      port_open "$port" && open=$((open + 1))
    done
    # Without .devstack/passwords.env there is no password to ask the cluster for its state.
    report redis-cluster "${open}/6 ports open, state unknown" "$REDIS_PORT_RANGE"
  fi
  report rabbitmq "$(service_status "$RABBITMQ_PORT")" "${LOOPBACK}:${RABBITMQ_PORT}"
}

cmd_pki() {
  take_lock
  vault_healthy || die "Vault is not running at ${VAULT_ADDR_LOCAL}; run \`scripts/devstack.sh up\`"
  local t
  t=$(now_ms)
  ensure_pki
  report vault-pki "$PKI_STATE" "${VAULT_ADDR_LOCAL}/v1/${PKI_MOUNT}" "$t"
}

cmd_env() {
  local nodes
  nodes=$(printf "${LOOPBACK}:%s," "${REDIS_CLUSTER_PORTS[@]:0:3}")
  cat <<EOF
export COLIMA_BACKEND=live
export VAULT_ADDR=${VAULT_ADDR_LOCAL}
export VAULT_TOKEN=${VAULT_DEV_TOKEN}
export POSTGRES_HOST=${LOOPBACK}
export POSTGRES_PORT=${POSTGRES_PORT}
export MYSQL_HOST=${LOOPBACK}
export MYSQL_PORT=${MYSQL_PORT}
export MONGODB_HOST=${LOOPBACK}
export MONGODB_PORT=${MONGODB_PORT}
export REDIS_HOST=${LOOPBACK}
export REDIS_PORT=${REDIS_CLUSTER_PORTS[0]}
export REDIS_NODES=${nodes%,}
export RABBITMQ_HOST=${LOOPBACK}
export RABBITMQ_PORT=${RABBITMQ_PORT}
export VAULT_PKI_MOUNT=${PKI_MOUNT}
export VAULT_PKI_ROLE=${PKI_ROLE}
export TLS_COMMON_NAME=localhost
export TLS_ALT_NAMES=${LOOPBACK}
export DEVSTACK_CA_CERT=$(pki_ca_file)
EOF
}

main() {
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down "${@:2}" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    pki) cmd_pki ;;
    with) cmd_with "${@:2}" ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"
