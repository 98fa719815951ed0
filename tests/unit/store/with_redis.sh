#!/usr/bin/env bash
# Runs a store unit test against a real redis-server of its own:
#   with_redis.sh TEST_BINARY [ARGS...]
# Starts redis-server on a free port in a temporary directory (AOF on,
# fsync always, as sagad requires), exports SG_TEST_STORE_URL for the test
# (tests/unit/store/helpers.h gives each test its own database number)
# and stops the server afterwards, also on failure or interrupt.
set -euo pipefail
dir=$(mktemp -d /tmp/sg-redis-unit-XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
  --appendfsync always --save '' --databases 4096 --logfile "$dir/redis.log" &
pid=$!
for _ in $(seq 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis-cli -p "$port" ping >/dev/null || { cat "$dir/redis.log" >&2; exit 1; }
export SG_TEST_STORE_URL="redis://127.0.0.1:$port"
export SG_TEST_REDIS_PORT="$port"
"$@"
