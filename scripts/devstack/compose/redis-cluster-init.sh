#!/bin/sh
# compose.yaml's cluster-init job: joins redis-1..redis-6 into 3 masters + 3 replicas, once.
# CLUSTER MEET takes IP addresses only, so the service names are resolved first.
set -eu
REDISCLI_AUTH=$(cat /run/devsecrets/redis)
export REDISCLI_AUTH
cli() { redis-cli --no-auth-warning --user dev_admin "$@"; }

if cli -h redis-1 CLUSTER INFO | grep -q '^cluster_state:ok'; then
  echo "redis-cluster-init: the cluster already exists"
  exit 0
fi
addresses=""
for n in 1 2 3 4 5 6; do
  ip=$(getent hosts "redis-$n" | awk '{print $1}')
  [ -n "$ip" ] || { echo "redis-cluster-init: cannot resolve redis-$n" >&2; exit 1; }
  addresses="$addresses $ip:6379"
done
# shellcheck disable=SC2086 # one word per node address
cli --cluster create $addresses --cluster-replicas 1 --cluster-yes
for n in 1 2 3 4 5 6; do
  until cli -h "redis-$n" CLUSTER INFO | grep -q '^cluster_state:ok'; do sleep 0.5; done
done
echo "redis-cluster-init: cluster_state:ok on all six nodes"
