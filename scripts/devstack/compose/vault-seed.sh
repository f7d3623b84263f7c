#!/bin/sh
# compose.yaml's seed job: writes the secrets the app reads, with the passwords the services were
# created with. `key=@file` makes bao read a value from a file, so no password is in argv.
set -eu
s=${DEVSECRETS_DIR:-/run/devsecrets}
export BAO_ADDR="${BAO_ADDR:-http://vault:8200}" BAO_TOKEN="${BAO_TOKEN:-root}"
bao kv put -mount=secret postgres user=dev_admin password="@$s/postgres" database=dev_database \
  host=postgres port=5432
bao kv put -mount=secret mysql user=dev_admin password="@$s/mysql" database=dev_database \
  host=mysql port=3306
bao kv put -mount=secret mongodb user=dev_admin password="@$s/mongodb" database=dev_database \
  host=mongodb port=27017
bao kv put -mount=secret redis-1 user=dev_admin password="@$s/redis" host=redis-1 port=6379
bao kv put -mount=secret rabbitmq user=dev_admin password="@$s/rabbitmq" host=rabbitmq port=5672 \
  vhost=dev_vhost
echo "vault-seed: five secrets written under secret/"
