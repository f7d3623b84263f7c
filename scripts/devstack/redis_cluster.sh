# shellcheck shell=bash
# A 3-master + 3-replica Redis Cluster on ports 7001-7006 (DEVSTACK_REDIS_FIRST_PORT moves them) from
# Debian's redis-server.
# Each node has the ACL user dev_admin and the same password on the default user, so clients that send
# a password only (AUTH <password>) and clients that send user + password both log in.

redis_node_dir() { echo "${STATE_DIR}/redis/$1"; }
redis_node_pidfile() { echo "$(redis_node_dir "$1")/redis.pid"; }

# redis_cli PORT ARGS...: REDISCLI_AUTH keeps the password out of the argument list.
redis_cli() {
  local port=$1
  shift
  REDISCLI_AUTH=${PASSWORD[redis]} redis-cli --no-auth-warning --user "$DEV_USER" \
    -h "$LOOPBACK" -p "$port" "$@"
}

write_redis_config() {
  local port=$1 dir
  dir=$(redis_node_dir "$port")
  mkdir -p "$dir"
  (
    umask 077
    cat >"${dir}/redis.conf" <<EOF
port ${port}
bind ${LOOPBACK}
protected-mode yes
daemonize yes
pidfile ${dir}/redis.pid
logfile ${dir}/redis.log
dir ${dir}
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 5000
# A master that is down stops only its own slots: with the default (yes) every node refuses every
# command until a replica takes over, and keys on the healthy masters would fail with it.
cluster-require-full-coverage no
save ""
appendonly no
repl-diskless-sync yes
repl-diskless-sync-delay 0
# Replicas join CLUSTER SLOTS only once a non-zero offset is gossiped; a ping a second gets there fast.
repl-ping-replica-period 1
requirepass ${PASSWORD[redis]}
user ${DEV_USER} on >${PASSWORD[redis]} ~* &* +@all
masteruser ${DEV_USER}
masterauth ${PASSWORD[redis]}
EOF
  )
}

# Starts the nodes that are not running; sets REDIS_STARTED to how many it started.
start_redis_nodes() {
  local port
  REDIS_STARTED=0
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    if pid_alive "$(redis_node_pidfile "$port")" redis-server; then
      continue
    fi
    port_open "$port" && die "port ${port} is taken by a process devstack did not start"
    write_redis_config "$port"
    redis-server "$(redis_node_dir "$port")/redis.conf" 9>&- ||
      die "redis-server on port ${port} did not start; see $(redis_node_dir "$port")/redis.log"
    note_started "redis:${port}"
    REDIS_STARTED=$((REDIS_STARTED + 1))
  done
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    wait_until 10 "redis-server on port ${port}" redis_answers "$port" ||
      die "redis-server on port ${port} does not answer an authenticated PING"
  done
}

redis_answers() {
  [[ "$(redis_cli "$1" PING 2>/dev/null)" == PONG ]]
}

redis_cluster_field() {
  local port=$1 field=$2
  redis_cli "$port" CLUSTER INFO | tr -d '\r' | sed -n "s/^${field}://p"
}

# A node never joined to a cluster knows only itself and serves no slot.
redis_node_is_blank() {
  [[ "$(redis_cluster_field "$1" cluster_known_nodes)" == 1 &&
    "$(redis_cluster_field "$1" cluster_slots_assigned)" == 0 ]]
}

redis_all_blank() {
  local port
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    redis_node_is_blank "$port" || return 1
  done
}

redis_cluster_healthy() {
  local port replication
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    [[ "$(redis_cluster_field "$port" cluster_state)" == ok ]] || return 1
    [[ "$(redis_cluster_field "$port" cluster_known_nodes)" == "${#REDIS_CLUSTER_PORTS[@]}" ]] || return 1
    # CLUSTER SLOTS is what clients discover the cluster from, and it leaves out a replica until
    # its replication offset has been gossiped: until then a client sees only the three masters.
    [[ "$(redis_cli "$port" CLUSTER SLOTS | tr -d '\r' | grep -cx "$LOOPBACK")" == "${#REDIS_CLUSTER_PORTS[@]}" ]] ||
      return 1
    replication=$(redis_cli "$port" INFO replication | tr -d '\r') || return 1
    if grep -qx 'role:slave' <<<"$replication"; then
      grep -qx 'master_link_status:up' <<<"$replication" || return 1
    fi
  done
}

create_redis_cluster() {
  local -a addresses=()
  local port
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    addresses+=("${LOOPBACK}:${port}")
  done
  # The first three addresses become the masters, so redis-1..3 map to 7001-7003 on a fresh cluster.
  redis_cli "${REDIS_CLUSTER_PORTS[0]}" --cluster create "${addresses[@]}" \
    --cluster-replicas 1 --cluster-yes >"${STATE_DIR}/redis/cluster-create.log" 2>&1 ||
    {
      show_log_tail "${STATE_DIR}/redis/cluster-create.log"
      die "redis-cli --cluster create failed"
    }
}

redis_role() {
  redis_cli "$1" INFO replication | tr -d '\r' | sed -n 's/^role://p'
}

# After a master was stopped its replica takes over; the node comes back as a replica. A manual
# failover hands mastership back, so redis-1..3 (7001-7003) are the masters after every `up`.
restore_designed_masters() {
  local port
  for port in "${REDIS_CLUSTER_PORTS[@]:0:3}"; do
    if [[ "$(redis_role "$port")" == slave ]]; then
      note "redis ${port} came back as a replica; failing over to make it a master again"
      redis_cli "$port" CLUSTER FAILOVER >/dev/null
      wait_until 15 "redis ${port} to become a master" redis_is_master "$port" ||
        die "redis ${port} did not take over as master"
    fi
  done
}

redis_is_master() {
  [[ "$(redis_role "$1")" == master ]]
}

# Sets REDIS_STATE for the caller's report line.
ensure_redis_cluster() {
  start_redis_nodes
  if redis_all_blank; then
    create_redis_cluster
    REDIS_STATE="started (cluster created)"
  elif ((REDIS_STARTED > 0)); then
    REDIS_STATE="started ${REDIS_STARTED} node(s), rejoined"
  else
    REDIS_STATE="running (devstack)"
  fi
  wait_until 30 "cluster_state:ok on every node and master_link_status:up on replicas" \
    redis_cluster_healthy ||
    die "the Redis Cluster is not healthy; 'scripts/devstack.sh down && scripts/devstack.sh up' rebuilds it"
  restore_designed_masters
  wait_until 30 "cluster_state:ok after the failover" redis_cluster_healthy ||
    die "the Redis Cluster is not healthy after handing mastership back"
}

# All at once: a master delays its own shutdown while it waits for its replicas to catch up.
stop_redis_nodes() {
  local port job
  local -a jobs=()
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    stop_pidfile "$(redis_node_pidfile "$port")" redis-server &
    jobs+=($!)
  done
  for job in "${jobs[@]}"; do
    wait "$job"
  done
}

# For `status`: up when every node answers and the cluster reports ok.
redis_cluster_status() {
  local port answering=0
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    redis_answers "$port" && answering=$((answering + 1))
  done
  if ((answering == ${#REDIS_CLUSTER_PORTS[@]})) && redis_cluster_healthy; then
    echo "up (6 nodes, cluster ok)"
  elif ((answering > 0)); then
    echo "degraded (${answering}/6 nodes)"
  else
    echo down
  fi
}
