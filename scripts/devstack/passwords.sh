# shellcheck shell=bash
# Per-devstack passwords: random on the first `up`, kept in .devstack/passwords.env (mode 600) so later runs
# reuse them. Hex only, so they can be embedded in SQL, redis.conf and URLs without any quoting.

readonly PASSWORD_NAMES=(postgres mysql mongodb mongodb_root redis rabbitmq)
declare -gA PASSWORD=()

passwords_file() {
  echo "${STATE_DIR}/passwords.env"
}

random_password() {
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

load_passwords() {
  local file name value
  file=$(passwords_file)
  [[ -f "$file" ]] || return 0
  while IFS='=' read -r name value; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    [[ "$value" =~ ^[0-9a-f]{32}$ ]] ||
      die "${file}: the entry for '${name}' is not 32 hex digits; delete the line to regenerate it"
    PASSWORD[$name]=$value
  done <"$file"
}

# Generates what is missing and appends it, so an existing password is never replaced.
ensure_passwords() {
  local file name
  file=$(passwords_file)
  load_passwords
  (
    umask 077
    for name in "${PASSWORD_NAMES[@]}"; do
      if [[ -z "${PASSWORD[$name]:-}" ]]; then
        echo "${name}=$(random_password)" >>"$file"
      fi
    done
  )
  chmod 600 "$file"
  load_passwords
}
