# shellcheck shell=bash
# Vault's PKI secrets engine on the dev OpenBao: a root CA and the role `colima-ref serve --https-port`
# issues its certificate with. Converged on every `up` (and by `devstack.sh pki` alone), so it also
# runs against an OpenBao that is already up; the dev server keeps it in memory, so a restart loses it.

readonly PKI_MOUNT=pki
readonly PKI_ROLE=colima-ref
readonly PKI_CA_COMMON_NAME="colima_ref devstack CA"

pki_ca_file() { echo "${STATE_DIR}/pki-ca.pem"; }

# vault_api METHOD PATH [JSON]: the response body; fails on a status other than 2xx.
vault_api() {
  local method=$1 path=$2 body=${3:-}
  local -a data=()
  [[ -n "$body" ]] && data=(-H 'Content-Type: application/json' --data-binary "$body")
  curl -fsS -m 10 -X "$method" -H "X-Vault-Token: ${VAULT_DEV_TOKEN}" "${data[@]}" \
    "${VAULT_ADDR_LOCAL}/v1/${path}"
}

# Sets PKI_STATE to what happened, for the caller's report line.
ensure_pki() {
  local changed=()
  if ! vault_api GET sys/mounts | jq -e --arg m "${PKI_MOUNT}/" 'has($m)' >/dev/null; then
    vault_api POST "sys/mounts/${PKI_MOUNT}" '{"type": "pki", "config": {"max_lease_ttl": "87600h"}}' >/dev/null ||
      die "enabling the PKI engine at ${PKI_MOUNT}/ failed"
    changed+=("engine enabled")
  fi
  # An engine with no CA answers 204 with no body here.
  if [[ -z "$(vault_api GET "${PKI_MOUNT}/ca/pem" 2>/dev/null)" ]]; then
    vault_api POST "${PKI_MOUNT}/root/generate/internal" \
      "$(jq -n --arg cn "$PKI_CA_COMMON_NAME" '{common_name: $cn, ttl: "87600h"}')" >/dev/null ||
      die "generating the devstack root CA failed"
    changed+=("root CA generated")
  fi
  # Loopback names only; `not_before_duration` keeps Vault's default 30 s backdating for clock skew.
  local desired current
  desired='{"allowed_domains":["localhost"],"allow_bare_domains":true,"allow_subdomains":false,"allow_localhost":true,"allow_ip_sans":true,"server_flag":true,"client_flag":false,"key_type":"ec","key_bits":256,"max_ttl":"720h","ttl":"24h"}'
  current=$(vault_api GET "${PKI_MOUNT}/roles/${PKI_ROLE}" 2>/dev/null |
    jq -c --argjson d "$desired" '.data | with_entries(select(.key as $k | $d | has($k)))
      | .max_ttl |= (if type == "number" then "\(. / 3600 | floor)h" else . end)
      | .ttl |= (if type == "number" then "\(. / 3600 | floor)h" else . end)' 2>/dev/null || true)
  if [[ "$(jq -S -c . <<<"${current:-null}")" != "$(jq -S -c . <<<"$desired")" ]]; then
    vault_api POST "${PKI_MOUNT}/roles/${PKI_ROLE}" "$desired" >/dev/null ||
      die "writing the PKI role ${PKI_ROLE} failed"
    changed+=("role written")
  fi
  # Clients trust this file: curl --cacert .devstack/pki-ca.pem https://127.0.0.1:8443/
  local ca
  ca=$(vault_api GET "${PKI_MOUNT}/ca/pem") || die "reading the devstack CA certificate failed"
  if [[ "$ca" != "$(cat "$(pki_ca_file)" 2>/dev/null)" ]]; then
    printf '%s\n' "$ca" >"$(pki_ca_file)"
    changed+=("CA file written")
  fi
  if ((${#changed[@]})); then
    PKI_STATE=$(IFS=,; echo "${changed[*]}")
  else
    PKI_STATE="ready (role ${PKI_ROLE})"
  fi
}
