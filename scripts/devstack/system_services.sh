# shellcheck shell=bash
# PostgreSQL, MariaDB and RabbitMQ are started by the machine, not by devstack. `up` starts one only
# when it is down (with the machine's own start command), records no pid for it, and `down` leaves it alone.
# On top of them it converges the dev_admin accounts, dev_database and dev_vhost (idempotent).

psql_admin() {
  psql -h "$LOOPBACK" -p "$POSTGRES_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

mariadb_admin() {
  mariadb -h "$LOOPBACK" -P "$MYSQL_PORT" -u root --batch --skip-column-names "$@"
}

rabbitmq_answers() {
  rabbitmqctl -q list_vhosts >/dev/null 2>&1
}

postgres_answers() { psql_admin -c 'SELECT 1' >/dev/null 2>&1; }
mariadb_answers() { mariadb_admin -e 'SELECT 1' >/dev/null 2>&1; }

start_postgres() {
  local version
  version=$(ls /etc/postgresql)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
}

start_mariadb() {
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
}

start_rabbitmq() {
  RABBITMQ_NODE_IP_ADDRESS=$LOOPBACK ERL_EPMD_ADDRESS=$LOOPBACK rabbitmq-server -detached
}

# ensure_system_service NAME PORT PROBE STARTER: sets SYSTEM_STATE for the caller's report line.
ensure_system_service() {
  local name=$1 port=$2 probe=$3 starter=$4
  if "$probe"; then
    SYSTEM_STATE="running (machine)"
    return 0
  fi
  if ! port_open "$port"; then
    note "${name} is down; starting it with the machine's own command (devstack will not stop it)"
    "$starter" >&2 || die "starting ${name} failed"
    SYSTEM_STATE="started (machine's)"
  else
    SYSTEM_STATE="running (machine)"
  fi
  # RabbitMQ's node takes several seconds to accept rabbitmqctl after its port opens.
  wait_until 60 "${name} to answer" "$probe" || die "${name} does not answer on port ${port}"
}

apply_postgres_accounts() {
  psql_admin >/dev/null <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${DEV_USER}') THEN
    CREATE ROLE ${DEV_USER} LOGIN;
  END IF;
END
\$\$;
ALTER ROLE ${DEV_USER} WITH LOGIN PASSWORD '${PASSWORD[postgres]}';
SELECT 'CREATE DATABASE ${DEV_DATABASE} OWNER ${DEV_USER}'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '${DEV_DATABASE}')\gexec
ALTER DATABASE ${DEV_DATABASE} OWNER TO ${DEV_USER};
SQL
}

apply_mariadb_accounts() {
  local host
  {
    echo "CREATE DATABASE IF NOT EXISTS ${DEV_DATABASE};"
    for host in 127.0.0.1 localhost; do
      echo "CREATE USER IF NOT EXISTS '${DEV_USER}'@'${host}' IDENTIFIED BY '${PASSWORD[mysql]}';"
      echo "ALTER USER '${DEV_USER}'@'${host}' IDENTIFIED BY '${PASSWORD[mysql]}';"
      echo "GRANT ALL PRIVILEGES ON ${DEV_DATABASE}.* TO '${DEV_USER}'@'${host}';"
    done
  } | mariadb_admin
}

apply_rabbitmq_accounts() {
  local vhosts users permissions
  # Captured first: `grep -q` closing a pipe early would make rabbitmqctl fail under pipefail.
  vhosts=$(rabbitmqctl -q list_vhosts)
  users=$(rabbitmqctl -q list_users | cut -f1)
  if ! grep -qx "$DEV_VHOST" <<<"$vhosts"; then
    rabbitmqctl -q add_vhost "$DEV_VHOST" >/dev/null
  fi
  # Without a password argument rabbitmqctl reads it from stdin, which keeps it out of `ps`.
  if ! grep -qx "$DEV_USER" <<<"$users"; then
    printf '%s' "${PASSWORD[rabbitmq]}" | rabbitmqctl -q add_user "$DEV_USER" >/dev/null
  elif ! printf '%s' "${PASSWORD[rabbitmq]}" | rabbitmqctl -q authenticate_user "$DEV_USER" >/dev/null 2>&1; then
    printf '%s' "${PASSWORD[rabbitmq]}" | rabbitmqctl -q change_password "$DEV_USER" >/dev/null
  fi
  permissions=$(rabbitmqctl -q list_user_permissions "$DEV_USER")
  if ! grep -qxF "${DEV_VHOST}"$'\t.*\t.*\t.*' <<<"$permissions"; then
    rabbitmqctl -q set_permissions -p "$DEV_VHOST" "$DEV_USER" '.*' '.*' '.*' >/dev/null
  fi
}

# rabbitmqctl boots an Erlang VM per call (about half a second each), so `up` runs this in the
# background while the other services come up.
ensure_rabbitmq() {
  ensure_system_service rabbitmq "$RABBITMQ_PORT" rabbitmq_answers start_rabbitmq
  apply_rabbitmq_accounts
  echo "${SYSTEM_STATE}|$(now_ms)"
}
