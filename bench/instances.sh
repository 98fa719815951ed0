#!/usr/bin/env bash
# Several sagad on one shared store (issue 10, docs/store.md "Several sagad
# on one database"): for each N of INSTANCES, a fresh database on one local
# PostgreSQL or Redis server (STORE), N sagad on it, and N wrk at once, each
# with CONNS/N connections to its own sagad (what a load balancer would
# spread), synchronous POST /saga against nginx stubs. Prints one row per N:
# sagas/s (2xx answers over the run), p99 of the slowest wrk, errors, sagad
# CPU ms per saga (all processes), and the sagas COMPLETED in the store (read
# through GET /sagas).
#
#   STORE=postgres INSTANCES="1 2" CONNS=64 DURATION=10 bench/instances.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
STORE=${STORE:-postgres}
INSTANCES=${INSTANCES:-1 2}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10}
THREADS=1
LOG_LEVEL=${LOG_LEVEL:-info}
SAGAD_ARGS=${SAGAD_ARGS:-}
# shellcheck source=bench/lib/common.sh
. bench/lib/common.sh
command -v wrk >/dev/null || ./scripts/deps.sh wrk
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || ./scripts/deps.sh nginx
[ "$STORE" = sqlite ] && die "STORE=postgres or redis: SQLite has one owner"
work=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/sagad-instances.XXXXXX")
trap 'stop_all; rm -rf "$work"' EXIT
pids=()
start_nginx "$work/nginx" "$(free_port)"
start_store "$work"
say "store: $STORE_DESC; stubs $STUBS_URL"

ticks() { # PID...: utime+stime of all, in clock ticks
  local p t=0
  for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo "$t"
}

printf '| instances | conns | sagas/s | p99 (worst) | errors | CPU ms/saga (all sagad) | COMPLETED in store |\n'
printf '|---:|---:|---:|---:|---:|---:|---|\n'
for n in $INSTANCES; do
  store_cell=$((store_cell + 1))
  db=$(store_url "$work" "$store_cell")
  spids=() urls=()
  for ((i = 0; i < n; i++)); do
    d=$work/n$n-$i && mkdir -p "$d"
    port=$(free_port)
    # shellcheck disable=SC2086 # SAGAD_ARGS: extra flags, split on spaces
    "$BUILD/sagad" --listen "127.0.0.1:$port" --db "$db" \
      --anonymizer-url "$STUBS_URL/anonymize" --ai-model-url "$STUBS_URL/process" \
      --bus "$STUBS_URL/events" --log-level "$LOG_LEVEL" $SAGAD_ARGS 2>"$d/sagad.log" &
    spids+=($!) && pids+=($!)
    urls+=("http://127.0.0.1:$port")
    wait_http "http://127.0.0.1:$port/readyz" 400 || { tail "$d/sagad.log" >&2; die "sagad did not start"; }
  done
  t0=$(now_us)
  c0=$(ticks "${spids[@]}")
  wpids=()
  for ((i = 0; i < n; i++)); do
    wrk -t1 -c$((CONNS / n)) -d"${DURATION}s" --timeout 10s -s bench/post_saga.lua \
      "${urls[$i]}/saga" >"$work/n$n-$i/wrk.out" 2>&1 &
    wpids+=($!)
  done
  for p in "${wpids[@]}"; do wait "$p" || true; done
  c1=$(ticks "${spids[@]}")
  bl drain "${urls[0]}" 120 "$work/n$n-drain.json"
  bl store-api "${urls[0]}" "$t0" "$work/n$n-store.json"
  python3 - "$n" "$CONNS" "$DURATION" "$((c1 - c0))" "$(getconf CLK_TCK)" "$work" <<'EOF'
import json, sys
n, conns, dur, ticks, hz, work = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
ok = err = 0
p99 = 0.0
for i in range(n):
    txt = open("%s/n%d-%d/wrk.out" % (work, n, i)).read()
    r = json.loads(txt.split("RESULT ", 1)[1].splitlines()[0])
    ok += r["ok"]
    err += r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    p99 = max(p99, r["p99_us"] / 1000.0)
st = json.load(open("%s/n%d-store.json" % (work, n)))
cpu = ticks / hz * 1000.0 / ok if ok else 0
mark = "✓" if st["completed"] >= ok and not st["failed"] and not st["in_progress"] else "✗"
print("| %d | %d | %s | %.1f ms | %d | %.3f | %s %s |" % (n, conns, format(round(ok / dur), ","), p99, err, cpu, format(st["completed"], ","), mark))
EOF
  for p in "${spids[@]}"; do stop_pid "$p"; done
done
