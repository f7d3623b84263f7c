#!/usr/bin/env bash
# Installs the Swagger UI and ReDoc bundles pinned in package.json / package-lock.json and copies
# the few files /docs and /redoc load into the package, so the pages work offline (no CDN).
# The copies are build output: gitignored, never committed.
#
# Usage: scripts/fetch-docs-assets.sh [DEST]   (DEST defaults to src/colima_ref/http/static/vendor)
# Idempotent: when DEST already holds the files of this exact lockfile it returns at once.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/src/colima_ref/http/static/vendor}"
stamp="$dest/.package-lock.sha256"

# destination name <- path inside node_modules
assets=(
    "swagger-ui-bundle.js=swagger-ui-dist/swagger-ui-bundle.js"
    "swagger-ui.css=swagger-ui-dist/swagger-ui.css"
    "favicon-32x32.png=swagger-ui-dist/favicon-32x32.png"
    "swagger-ui-bundle.js.LICENSE.txt=swagger-ui-dist/swagger-ui-bundle.js.LICENSE.txt"
    "swagger-ui.LICENSE=swagger-ui-dist/LICENSE"
    "swagger-ui.NOTICE=swagger-ui-dist/NOTICE"
    "redoc.standalone.js=redoc/bundles/redoc.standalone.js"
    "redoc.standalone.js.LICENSE.txt=redoc/bundles/redoc.standalone.js.LICENSE.txt"
    "redoc.LICENSE=redoc/LICENSE"
)

say() { echo "fetch-docs-assets: $*" >&2; }

wanted="$(cat "$root/package.json" "$root/package-lock.json" | sha256sum | cut -d' ' -f1)"

up_to_date() {
    [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] || return 1
    local entry
    for entry in "${assets[@]}"; do
        [[ -s "$dest/${entry%%=*}" ]] || return 1
    done
}

if up_to_date; then
    say "up to date in $dest"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    # A fresh Debian machine with only Python: Debian's own Node.js 18 and npm are enough for npm ci.
    say "npm not found: installing Debian's nodejs and npm ..."
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if ! command -v npm >/dev/null 2>&1; then
    say "npm not found: install Node.js 18+ with npm (Debian: apt-get install nodejs npm), then run make docs-assets"
    exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/colima-ref-docs-assets.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp "$root/package.json" "$root/package-lock.json" "$work/"

# --ignore-scripts: swagger-ui-dist pulls in @scarf/scarf, whose install script phones home.
# --legacy-peer-deps: redoc.standalone.js bundles React and friends, so redoc's peers are not
# needed, and the lockfile was written without them.
say "npm ci (swagger-ui-dist, redoc) ..."
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --legacy-peer-deps --loglevel=error >&2)

mkdir -p "$dest"
rm -f "$stamp"
for entry in "${assets[@]}"; do
    name="${entry%%=*}"
    source="$work/node_modules/${entry#*=}"
    if [[ ! -s "$source" ]]; then
        say "the installed packages have no ${entry#*=}: package.json pins a layout this script does not know"
        exit 1
    fi
    install -m 0644 "$source" "$dest/$name"
done
# Written last, so an interrupted run is redone rather than trusted.
echo "$wanted" >"$stamp"
say "copied ${#assets[@]} files into $dest"
