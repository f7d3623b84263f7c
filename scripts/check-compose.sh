#!/usr/bin/env bash
# Validates compose.yaml offline: no Docker engine runs on our machines, but Debian's docker-compose 1.29
# parses and normalises the file without one.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v docker-compose >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
  elif [ "${CI:-}" = true ]; then
    echo "check-compose: docker-compose is missing and cannot be installed here" >&2
    exit 1
  else
    echo "check-compose: skipped, docker-compose is not installed (apt-get install docker-compose)"
    exit 0
  fi
fi
docker-compose -f compose.yaml config -q
echo "check-compose: compose.yaml is valid"
