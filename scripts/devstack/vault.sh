# shellcheck shell=bash
# OpenBao dev server (in memory, KV v2 mounted at secret/) and the secrets the live backend reads.

# The live backend's secrets, one per service (Redis: the first node's).
readonly VAULT_SECRET_PATHS=(postgres mysql mongodb redis-1 rabbitmq)

vault_pidfile() { echo "${STATE_DIR}/vault.pid"; }
vault_logfile() { echo "${STATE_DIR}/vault.log"; }

# /v1/sys/health answers 200 only for an initialised, unsealed, active server.
vault_healthy() {
  curl -fs -m 2 -o /dev/null "${VAULT_ADDR_LOCAL}/v1/sys/health"
}

vault_token_valid() {
  curl -fsS -m 2 -o /dev/null -H "X-Vault-Token: ${VAULT_DEV_TOKEN}" \
    "${VAULT_ADDR_LOCAL}/v1/auth/token/lookup-self"
}

# Sets VAULT_STATE to what happened, for the caller's report line.
ensure_vault() {
  if pid_alive "$(vault_pidfile)" bao; then
    wait_until 20 "Vault to report healthy" vault_healthy || die "Vault (devstack) is not healthy; see $(vault_logfile)"
    VAULT_STATE="running (devstack)"
    return 0
  fi
  if port_open "$VAULT_PORT"; then
    vault_healthy || die "port ${VAULT_PORT} is taken by something that is not a healthy Vault"
    vault_token_valid || die "the Vault on port ${VAULT_PORT} was not started by devstack and rejects token '${VAULT_DEV_TOKEN}'"
    VAULT_STATE="running (external)"
    return 0
  fi
  # -dev-no-store-token: the dev server would otherwise write ~/.vault-token, outside the project.
  start_detached "$(vault_pidfile)" "$(vault_logfile)" \
    "${VENV_BIN}/bao" server -dev -dev-root-token-id="$VAULT_DEV_TOKEN" \
    -dev-listen-address="${LOOPBACK}:${VAULT_PORT}" -dev-no-store-token
  note_started vault
  if ! wait_until 30 "Vault to report healthy" vault_healthy; then
    show_log_tail "$(vault_logfile)"
    die "Vault did not start"
  fi
  VAULT_STATE="started"
}

# vault_secret_json PATH: the KV v2 data at PATH, keys sorted, or nothing when the path is missing.
vault_secret_json() {
  local path=$1 body
  body=$(curl -sS -m 5 -H "X-Vault-Token: ${VAULT_DEV_TOKEN}" "${VAULT_ADDR_LOCAL}/v1/secret/data/${path}")
  jq -S -c '.data.data // empty' <<<"$body"
}

# vault_put_if_changed PATH JSON: writes only a changed secret, so a second `up` adds no KV version.
# The JSON travels on stdin: a password never appears in a process's argument list.
vault_put_if_changed() {
  local path=$1 desired current
  desired=$(jq -S -c . <<<"$2")
  current=$(vault_secret_json "$path")
  [[ "$current" == "$desired" ]] && return 1
  jq -c '{data: .}' <<<"$desired" |
    curl -fsS -m 5 -o /dev/null -H "X-Vault-Token: ${VAULT_DEV_TOKEN}" \
      -H 'Content-Type: application/json' --data-binary @- \
      "${VAULT_ADDR_LOCAL}/v1/secret/data/${path}" ||
    die "writing secret/${path} to Vault failed"
  return 0
}

# Every value is a string, as `bao kv put` writes them and as the specification shows ("port": "5432").
seed_vault() {
  local written=0
  local -A documents=(
    [postgres]="$(DEVSTACK_PW=${PASSWORD[postgres]} jq -n --arg host "$LOOPBACK" --arg port "$POSTGRES_PORT" \
      --arg user "$DEV_USER" --arg db "$DEV_DATABASE" \
      '{user: $user, password: env.DEVSTACK_PW, database: $db, host: $host, port: $port}')"
    [mysql]="$(DEVSTACK_PW=${PASSWORD[mysql]} jq -n --arg host "$LOOPBACK" --arg port "$MYSQL_PORT" \
      --arg user "$DEV_USER" --arg db "$DEV_DATABASE" \
      '{user: $user, password: env.DEVSTACK_PW, database: $db, host: $host, port: $port}')"
    [mongodb]="$(DEVSTACK_PW=${PASSWORD[mongodb]} jq -n --arg host "$LOOPBACK" --arg port "$MONGODB_PORT" \
      --arg user "$DEV_USER" --arg db "$DEV_DATABASE" \
      '{user: $user, password: env.DEVSTACK_PW, database: $db, host: $host, port: $port}')"
    [redis-1]="$(DEVSTACK_PW=${PASSWORD[redis]} jq -n --arg host "$LOOPBACK" \
      --arg port "${REDIS_CLUSTER_PORTS[0]}" --arg user "$DEV_USER" \
      '{user: $user, password: env.DEVSTACK_PW, host: $host, port: $port}')"
    [rabbitmq]="$(DEVSTACK_PW=${PASSWORD[rabbitmq]} jq -n --arg host "$LOOPBACK" --arg port "$RABBITMQ_PORT" \
      --arg user "$DEV_USER" --arg vhost "$DEV_VHOST" \
      '{user: $user, password: env.DEVSTACK_PW, host: $host, port: $port, vhost: $vhost}')"
  )
  local path
  for path in "${VAULT_SECRET_PATHS[@]}"; do
    if vault_put_if_changed "$path" "${documents[$path]}"; then
      written=$((written + 1))
    fi
  done
  VAULT_SECRETS_WRITTEN=$written
}
