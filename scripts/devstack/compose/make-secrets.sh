#!/bin/sh
# compose.yaml's first job: one random password per service, written once into the `devsecrets`
# volume and reused on every later `docker compose up` (the same rule as scripts/devstack.sh).
# busybox sh: no bash, no openssl. Hex only, so no consumer needs quoting.
set -eu
dir=${DEVSECRETS_DIR:-/run/devsecrets}
for name in postgres mysql mysql_root mongodb mongodb_root redis rabbitmq; do
  if [ ! -s "$dir/$name" ]; then
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/$name.tmp"
    mv "$dir/$name.tmp" "$dir/$name"
  fi
done
# Every server image runs as its own uid; readable by all is the price of one shared dev volume.
chmod 0444 "$dir"/*
pw=$(cat "$dir/redis")
cat >"$dir/redis.conf" <<CONF
requirepass $pw
user dev_admin on >$pw ~* &* +@all
masteruser dev_admin
masterauth $pw
CONF
chmod 0444 "$dir/redis.conf"
echo "make-secrets: passwords ready in the devsecrets volume"
