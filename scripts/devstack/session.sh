# shellcheck shell=bash
# `devstack.sh with COMMAND...`: the devstack for the length of one command, the way `make test` uses it.
# A devstack that already answers is used as it is and left running, untouched. Otherwise `up` starts what
# is missing, and what it started is stopped once COMMAND has ended and no other `with` on the same state
# directory still runs: concurrent sessions share what the first one started, and the last one out stops it.

sessions_dir() { echo "${STATE_DIR}/sessions"; }
# What sessions started and nobody has stopped yet, one server a line (vault, mongodb, redis:PORT).
sessions_started() { echo "$(sessions_dir)/started"; }

# Every service the tests reach listens, and Vault takes the dev token and holds the live backend's secrets.
devstack_answers() {
  local port path
  vault_healthy && vault_token_valid || return 1
  for path in "${VAULT_SECRET_PATHS[@]}"; do
    [[ -n "$(vault_secret_json "$path" 2>/dev/null)" ]] || return 1
  done
  for port in "$POSTGRES_PORT" "$MYSQL_PORT" "$RABBITMQ_PORT" "$MONGODB_PORT" "${REDIS_CLUSTER_PORTS[@]}"; do
    port_open "$port" || return 1
  done
}

join_session() {
  mkdir -p "$(sessions_dir)"
  echo $$ >"$(sessions_dir)/$$.pid"
}

# A session killed before it could leave (SIGKILL) stops counting once its process is gone.
other_sessions_alive() {
  local pidfile alive=1
  for pidfile in "$(sessions_dir)"/*.pid; do
    [[ -e "$pidfile" ]] || continue
    if pid_alive "$pidfile" devstack.sh; then
      alive=0
    else
      rm -f "$pidfile"
    fi
  done
  return "$alive"
}

stop_started_servers() {
  local file entry t
  local -a servers jobs=()
  file=$(sessions_started)
  [[ -s "$file" ]] || return 0
  mapfile -t servers < <(sort -u "$file")
  t=$(now_ms)
  for entry in "${servers[@]}"; do
    case $entry in
      vault) stop_pidfile "$(vault_pidfile)" bao & ;;
      mongodb) stop_pidfile "$(mongodb_pidfile)" secantusd-py & ;;
      redis:*) stop_pidfile "$(redis_node_pidfile "${entry#redis:}")" redis-server & ;;
      *) continue ;;
    esac
    jobs+=($!)
  done
  for entry in "${jobs[@]}"; do
    wait "$entry"
  done
  rm -f "$file"
  report devstack "stopped what sessions started" "${servers[*]}" "$t"
}

leave_session() {
  local status=$?
  trap - EXIT INT TERM
  take_lock
  rm -f "$(sessions_dir)/$$.pid"
  if other_sessions_alive; then
    note "another 'devstack.sh with' still runs on this devstack: the last one to end stops what sessions started"
  else
    stop_started_servers
  fi
  exit "$status"
}

cmd_with() {
  (($# > 0)) || {
    usage
    exit 2
  }
  take_lock
  join_session
  trap leave_session EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if devstack_answers; then
    note "already running (Vault on ${VAULT_ADDR_LOCAL} holds the secrets, every port listens): this run starts nothing"
    # A devstack started before the PKI step existed gets it now; it starts nothing either.
    ensure_pki
  else
    STARTED_LIST=$(sessions_started)
    bring_up
    STARTED_LIST=""
  fi
  # The lock is for starting and stopping; the command may run for minutes.
  exec 9>&-
  # The addresses only: COLIMA_BACKEND=live would change what an in-memory test builds.
  local -a addresses
  mapfile -t addresses < <(cmd_env | sed -n 's/^export //p' | grep -v '^COLIMA_BACKEND=')
  env "${addresses[@]}" "$@"
}
