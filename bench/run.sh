#!/usr/bin/env bash
# Benchmark: synchronous POST /saga with wrk against sagad (webhook bus, then
# NATS JetStream on a local nats-server) and, in the same run on the same
# stubs and load, the tuned Python peer (shared/reference).
# Prints requests/s, latency, sagad's peak RSS, and the ratio.
#
#   bench/run.sh                 # 64 connections, 10 s each
#   CONNS=256 DURATION=20 bench/run.sh
#   PEER=none bench/run.sh       # sagad only
#   NATS=0 bench/run.sh          # without the run on NATS JetStream (--bus nats://)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
PEER=${PEER:-tuned}
REF=${REF:-$(cd .. && pwd)/shared/reference}
command -v wrk >/dev/null || ./scripts/deps.sh wrk

work=$(mktemp -d /tmp/sagad-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq ${2:-200}); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "not up: $1" >&2; return 1; }

sport=$(free_port)
"$BUILD/sta-stubs" --listen "127.0.0.1:$sport" --quiet >"$work/stubs.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$sport/healthz"
anon="http://127.0.0.1:$sport/anonymize" ai="http://127.0.0.1:$sport/process" bus="http://127.0.0.1:$sport/events"

run_wrk() { # name url
  local out
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s -s bench/post_saga.lua "$2/saga" >"$work/$1.wrk" 2>&1 || true
  out=$(grep RESULT "$work/$1.wrk" || echo "RESULT rps=0")
  echo "$1 $out"
}

gport=$(free_port)
"$BUILD/sagad" --listen "127.0.0.1:$gport" --db "$work/sagad.db" --anonymizer-url "$anon" \
  --ai-model-url "$ai" --bus "$bus" --log-level "${LOG_LEVEL:-info}" 2>"$work/sagad.log" &
gpid=$!
pids+=($gpid)
wait_http "http://127.0.0.1:$gport/healthz"
curl -fsS -o /dev/null -X POST "http://127.0.0.1:$gport/saga" -d '{"warm":1}'
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# CPU milliseconds per saga of the server process during the wrk run.
cpu_per_saga() { # before after result-line
  local n; n=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$3")
  python3 -c "t=($2-$1)*1000/$(getconf CLK_TCK); print('cpu_ms_per_saga=%.3f' % (t/max($n,1)))"
}
t0=$(ticks $gpid)
sag=$(run_wrk sagad "http://127.0.0.1:$gport")
t1=$(ticks $gpid)
rss=$(awk '/VmHWM/{print $2}' /proc/$gpid/status)
echo "$sag peak_rss_kb=$rss $(cpu_per_saga "$t0" "$t1" "$sag")"
kill -TERM $gpid; wait $gpid || true

# The same load with events on NATS JetStream (a real nats-server -js) instead
# of the webhook. NATS=0 skips it.
if [ "${NATS:-1}" != 0 ]; then
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || ./scripts/deps.sh nats-server
  nport=$(free_port)
  "$(command -v nats-server || echo /usr/sbin/nats-server)" -js -a 127.0.0.1 -p "$nport" \
    -sd "$work/nats" >"$work/nats.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && break; sleep 0.05; done
  nsport=$(free_port)
  "$BUILD/sagad" --listen "127.0.0.1:$nsport" --db "$work/sagad-nats.db" --anonymizer-url "$anon" \
    --ai-model-url "$ai" --bus "nats://127.0.0.1:$nport" --log-level "${LOG_LEVEL:-info}" \
    2>"$work/sagad-nats.log" &
  npid=$!
  pids+=($npid)
  wait_http "http://127.0.0.1:$nsport/readyz"
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$nsport/saga" -d '{"warm":1}'
  t0=$(ticks $npid)
  nat=$(run_wrk sagad-nats "http://127.0.0.1:$nsport")
  t1=$(ticks $npid)
  rss=$(awk '/VmHWM/{print $2}' /proc/$npid/status)
  echo "$nat peak_rss_kb=$rss $(cpu_per_saga "$t0" "$t1" "$nat")"
  kill -TERM $npid; wait $npid || true
fi

if [ "$PEER" = tuned ] || [ "$PEER" = reference ]; then
  pport=$(free_port)
  REF_BASE_DIR="$work/ref" bash "$REF/run-$PEER.sh" "$pport" "$anon" "$ai" "$work/peer.db" "$bus" \
    >"$work/peer.log" 2>&1 &
  ppid=$!
  pids+=($ppid)
  if wait_http "http://127.0.0.1:$pport/docs" 3000; then
    t0=$(ticks $ppid)
    peer=$(run_wrk "$PEER" "http://127.0.0.1:$pport")
    t1=$(ticks $ppid)
    echo "$peer $(cpu_per_saga "$t0" "$t1" "$peer")"
    a=$(sed -n 's/.*rps=\([0-9.]*\).*/\1/p' <<<"$sag")
    b=$(sed -n 's/.*rps=\([0-9.]*\).*/\1/p' <<<"$peer")
    python3 -c "a,b=float('$a'),float('$b'); print('ratio sagad/$PEER = %.1fx' % (a/b if b else float('inf')))"
  else
    echo "peer $PEER did not start; see $work/peer.log" >&2
    tail -20 "$work/peer.log" >&2 || true
  fi
fi
