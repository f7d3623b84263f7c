# shellcheck shell=bash
# SecantusDB (MongoDB wire protocol) with SCRAM enforced, so a rotated password really locks the old one out.
# SecantusDB only provisions users on a server without --auth, so the first start is a short
# bootstrap run on the persistent storage directory, then a restart with --auth.

mongodb_dir() { echo "${STATE_DIR}/mongodb"; }
mongodb_pidfile() { echo "$(mongodb_dir)/secantusd.pid"; }
mongodb_logfile() { echo "$(mongodb_dir)/secantusd.log"; }

mongodb_accounts() {
  local mode=$1
  DEVSTACK_MONGODB_PASSWORD=${PASSWORD[mongodb]} \
    DEVSTACK_MONGODB_ROOT_PASSWORD=${PASSWORD[mongodb_root]} \
    "${VENV_BIN}/python" "${DEVSTACK_ROOT}/scripts/devstack/mongodb_accounts.py" "$MONGODB_PORT" "$mode"
}

start_secantusd() {
  local -a flags=("$@")
  start_detached "$(mongodb_pidfile)" "$(mongodb_logfile)" \
    "${VENV_BIN}/secantusd-py" --host "$LOOPBACK" --port "$MONGODB_PORT" \
    --storage-path "$(mongodb_dir)/data" --log-level WARNING "${flags[@]}"
  note_started mongodb
  if ! wait_until 20 "SecantusDB on port ${MONGODB_PORT}" port_open "$MONGODB_PORT"; then
    show_log_tail "$(mongodb_logfile)"
    die "SecantusDB did not start"
  fi
}

bootstrap_mongodb() {
  start_secantusd
  mongodb_accounts bootstrap || die "creating the MongoDB users failed; see $(mongodb_logfile)"
  stop_pidfile "$(mongodb_pidfile)" secantusd-py
  touch "$(mongodb_dir)/provisioned"
}

# Sets MONGODB_STATE for the caller's report line.
ensure_mongodb() {
  mkdir -p "$(mongodb_dir)"
  if pid_alive "$(mongodb_pidfile)" secantusd-py; then
    MONGODB_STATE="running (devstack)"
  elif port_open "$MONGODB_PORT"; then
    MONGODB_STATE="running (external)"
  else
    [[ -f "$(mongodb_dir)/provisioned" ]] || bootstrap_mongodb
    start_secantusd --auth
    MONGODB_STATE="started (auth)"
  fi
  local status=0
  mongodb_accounts apply || status=$?
  case $status in
    0) ;;
    3) die "the MongoDB on port ${MONGODB_PORT} refuses devstack's root login (not provisioned by devstack?)" ;;
    *) die "converging the MongoDB users failed; see $(mongodb_logfile)" ;;
  esac
}
