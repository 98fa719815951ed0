#!/usr/bin/env bash
# Installs the Debian packages sagad needs to build and test, if missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libmicrohttpd-dev libcurl4-openssl-dev libuv1-dev
      libsqlite3-dev libjansson-dev libcmocka-dev uthash-dev python3 curl clang clang-format
      libclang-rt-14-dev libnats-dev nats-server libprotobuf-c-dev protobuf-c-compiler libssl-dev openssl
      libhiredis-dev redis-server libpq-dev postgresql systemd groff-base chromium
      python3-jsonschema "$@")
# The Pulsar tests' broker runs on Node.js (tests/pulsar). A machine whose
# nodejs package already brings npm (NodeSource's) must not get Debian's npm,
# which conflicts with it: ask for each only when its command is missing.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q "${missing[@]}" >&2 || {
    $SUDO apt-get update -q >&2
    $SUDO apt-get install -y -q "${missing[@]}" >&2
  }
fi
# The dashboard's browser test (tests/ui) drives chromium with playwright-core
# at the version its package-lock.json pins: npm ci when that is not there.
ui="$(cd "$(dirname "$0")/.." && pwd)/tests/ui"
want=$(node -p "require('$ui/package.json').dependencies['playwright-core']")
have=$(node -p "try { require('$ui/node_modules/playwright-core/package.json').version } catch (e) { '' }")
if [ "$want" != "$have" ]; then
  echo "npm ci in tests/ui (playwright-core $want)" >&2
  (cd "$ui" && npm ci --no-audit --no-fund >&2)
fi
