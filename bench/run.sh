#!/usr/bin/env bash
# The benchmark (`make bench` builds, then runs this). One run measures, on
# the same stubs and machine:
#   - the stubs alone (wrk straight at /anonymize): the ceiling they impose;
#   - sagad, synchronous POST /saga and asynchronous (Prefer: respond-async,
#     counted when completed end to end), at each of CONNS connections, a
#     fresh sagad and database per row;
#   - the tuned Python peer (../shared/reference/run-tuned.sh), synchronous;
#   - 10,000 async sagas in flight behind an AI model answering after 1 s;
#   - optionally sagad with NATS JetStream as the bus, and a perf profile;
# and prints one markdown table, also written to bench/results/<UTC time>.md
# (and bench/results/latest.md). docs/benchmark.md explains every column.
#
# Knobs (environment):
#   DURATION=10        seconds per wrk run
#   CONNS="1 16 64 256 1024"   connection counts of the matrix
#   MODES="sync async" which sagad rows (MODES="" for none)
#   THREADS=2          wrk threads (at most the connection count)
#   STUBS=nginx        nginx from Debian with fixed answers (installed through
#                      scripts/deps.sh when missing); STUBS=sta-stubs instead
#   PEER=tuned         the tuned Python peer; PEER=reference (the seed as
#                      written) or PEER=none
#   PEER_CONNS="64"    the peer's connection counts (it is slow)
#   INFLIGHT=1         the 10,000-in-flight row (INFLIGHT_N=10000,
#                      INFLIGHT_CONNS=256, INFLIGHT_DELAY_MS=1000); 0 skips it
#   TMPFS=1            a synchronous row at each of TMPFS_CONNS ("1 64") with
#                      the database on /dev/shm, where fsync costs nothing:
#                      sagad's own latency, apart from the disk's (diagnostic,
#                      not a target row; skipped without /dev/shm)
#   NATS=0             1 adds a synchronous row at NATS_CONNS (64) with
#                      --bus nats:// on a local nats-server -js
#   PROFILE=0          1: perf record -g on sagad during the synchronous row at
#                      PROFILE_CONNS (64); per-thread top symbols in the report
#   LOG_LEVEL=info     sagad's --log-level (info is its default)
#   SAGAD_ARGS=""      extra sagad flags, e.g. "--threads 4"
#   STORE=sqlite       sagad's store: a SQLite file per row; STORE=postgres or
#                      STORE=redis start one local server (PostgreSQL as
#                      nobody when root; Redis with appendfsync always) and
#                      give each row a fresh database; the store column is
#                      then read through sagad's GET /sagas
#   BUILD=build        where sagad and sta-stubs are
#   BENCH_TMPDIR=/tmp  where the databases go (must be a disk, not tmpfs)
#   DRAIN_TIMEOUT=300  seconds to wait for the sagas in flight to finish
#   KEEP=0             1 keeps the temp dir (databases, logs, wrk output)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DURATION=${DURATION:-10}
CONNS=${CONNS:-1 16 64 256 1024}
MODES=${MODES-sync async}
THREADS=${THREADS:-2}
STUBS=${STUBS:-nginx}
PEER=${PEER:-tuned}
PEER_CONNS=${PEER_CONNS:-64}
INFLIGHT=${INFLIGHT:-1}
INFLIGHT_N=${INFLIGHT_N:-10000}
INFLIGHT_CONNS=${INFLIGHT_CONNS:-256}
INFLIGHT_DELAY_MS=${INFLIGHT_DELAY_MS:-1000}
NATS=${NATS:-0}
TMPFS=${TMPFS:-1}
TMPFS_CONNS=${TMPFS_CONNS:-1 64}
NATS_CONNS=${NATS_CONNS:-64}
PROFILE=${PROFILE:-0}
PROFILE_CONNS=${PROFILE_CONNS:-64}
LOG_LEVEL=${LOG_LEVEL:-info}
SAGAD_ARGS=${SAGAD_ARGS:-}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}
REF=${REF:-$(cd .. && pwd)/shared/reference}
# shellcheck source=bench/lib/common.sh
. bench/lib/common.sh

if [ ! -x "$BUILD/sagad" ] || [ ! -x "$BUILD/sta-stubs" ]; then
  die "no $BUILD/sagad or $BUILD/sta-stubs: run make bench (or make build)"
fi
command -v wrk >/dev/null || ./scripts/deps.sh wrk
if [ "$PROFILE" = 1 ] && ! command -v perf >/dev/null; then ./scripts/deps.sh linux-perf; fi
case $STUBS in
  nginx)
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    if [ ! -x "$NGINX" ]; then
      say "installing nginx (Debian)"
      ./scripts/deps.sh nginx
    fi ;;
  sta-stubs) ;;
  *) die "STUBS must be nginx or sta-stubs" ;;
esac
case $PEER in tuned | reference | none) ;; *) die "PEER must be tuned, reference or none" ;; esac
for m in $MODES; do
  case $m in sync | async) ;; *) die "MODES: sync and/or async (MODES=\"\" for none), not $m" ;; esac
done

work=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/sagad-bench.XXXXXX")
ok=0
cleanup() {
  stop_all
  if [ "${KEEP:-0}" = 1 ] || [ $ok = 0 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
results=$work/results.jsonl
: >"$results"

# ---------------------------------------------------------------- stubs
sport=$(free_port)
if [ "$STUBS" = nginx ]; then
  start_nginx "$work/nginx" "$sport"
  stubs_desc="nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), worker_processes 1, keep-alive,"
  stubs_desc+=" fixed JSON answers (config: start_nginx in bench/lib/common.sh)"
else
  start_sta_stubs "$work/stubs" "$sport" --threads 2
  stubs_desc="sta-stubs --threads 2 --quiet"
fi
say "stubs ($STUBS) on $STUBS_URL, pids $STUBS_PIDS; results in $work"
STORE_DESC="SQLite (a file per row), synchronous=FULL"
start_store "$work"
say "store: $STORE_DESC"

# cell_end DIR KIND MODE CONNS NAME: one JSON line into the results.
cell_end() {
  bl cell "$@" >>"$results" || say "no result for $1"
  tidy_cell "$1"
}

# ---------------------------------------------------------------- disk alone
# What one durable commit costs the disk sagad's databases are on: an
# fdatasync after a write the size of a commit's WAL frames at c=1 (4
# frames) and c=64 (20), by how long the disk was idle before it.
disk_md=$work/disk.md
if [ -x "$BUILD/fsync-probe" ]; then
  say "disk alone (fsync-probe beside the databases)"
  {
    echo "Disk alone (\`fsync-probe\`, beside the databases): fdatasync after one write of a commit's WAL frames, by the idle gap before it (1,000 each)."
    for bytes in 16480 82400; do
      echo
      echo "$bytes bytes ($((bytes / 4120)) frames):"
      echo
      "$BUILD/fsync-probe" "$work" "$bytes" 1000
    done
  } >"$disk_md" || { say "fsync-probe failed"; rm -f "$disk_md"; }
fi

# ---------------------------------------------------------------- stubs alone
for c in $CONNS; do
  d=$work/stubs-$c && mkdir -p "$d"
  say "stubs alone, c=$c"
  bl snap "$d/snap0.json" "stubs=$STUBS_PIDS"
  run_wrk bench/post_saga.lua "$c" "$STUBS_URL/anonymize" "$d/wrk.out"
  bl snap "$d/snap1.json" "stubs=$STUBS_PIDS"
  cell_end "$d" stubs sync "$c" stubs
done

# ---------------------------------------------------------------- sagad
profile_md=$work/profile.md
# sagad_cell NAME MODE CONNS [BUS] [DIR]: a fresh sagad and database (in
# DIR, by default the run's temp dir).
sagad_cell() {
  local name=$1 mode=$2 c=$3 bus=${4:-} d script=bench/post_saga.lua t0 perfpid=""
  d=${5:-$work}/$name-$mode-$c
  [ "$mode" = async ] && script=bench/post_saga_async.lua
  say "$name $mode, c=$c"
  start_sagad "$d" "$STUBS_URL" "$bus"
  if [ "$PROFILE" = 1 ] && [ "$name" = sagad ] && [ "$mode" = sync ] && [ "$c" = "$PROFILE_CONNS" ]; then
    perf record -g -o "$d/perf.data" -p "$SAGAD_PID" -- sleep "$DURATION" >"$d/perf.log" 2>&1 &
    perfpid=$!
  fi
  t0=$(now_us)
  bl snap "$d/snap0.json" "server=$SAGAD_PID" "stubs=$STUBS_PIDS"
  run_wrk "$script" "$c" "$SAGAD_URL/saga" "$d/wrk.out"
  bl snap "$d/snap1.json" "server=$SAGAD_PID" "stubs=$STUBS_PIDS"
  bl drain "$SAGAD_URL" "$DRAIN_TIMEOUT" "$d/drain.json" "$SAGAD_PID"
  bl snap "$d/snap2.json" "server=$SAGAD_PID" "stubs=$STUBS_PIDS"
  store_check "$d" "$t0" "$d/store.json"
  if [ -n "$perfpid" ]; then
    wait "$perfpid" || true
    if [ -s "$d/perf.data" ]; then
      perf_profile "$d" "$SAGAD_PID" "$profile_md"
    else
      printf '## perf profile\n\nperf record failed (not allowed here?): %s\n' \
        "$(tail -2 "$d/perf.log" | tr '\n' ' ')" >"$profile_md"
    fi
  fi
  stop_sagad
  cell_end "$d" sagad "$mode" "$c" "$name"
}

for mode in $MODES; do
  for c in $CONNS; do sagad_cell sagad "$mode" "$c"; done
done

if [ "$PROFILE" = 1 ] && [ ! -f "$profile_md" ]; then
  printf '## perf profile\n\nNo synchronous sagad row at c=%s in this run (PROFILE_CONNS).\n' \
    "$PROFILE_CONNS" >"$profile_md"
fi

if [ "$NATS" = 1 ]; then
  NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
  [ -x "$NATS_SERVER" ] || ./scripts/deps.sh nats-server
  nport=$(free_port)
  mkdir -p "$work/nats"
  "$NATS_SERVER" -js -a 127.0.0.1 -p "$nport" -sd "$work/nats" >"$work/nats/nats.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && break; sleep 0.05; done
  for c in $NATS_CONNS; do sagad_cell nats sync "$c" "nats://127.0.0.1:$nport"; done
fi

if [ "$TMPFS" = 1 ] && [ "$STORE" = sqlite ] && [ -d /dev/shm ] && [ -n "$TMPFS_CONNS" ]; then
  shm=$(mktemp -d /dev/shm/sagad-bench.XXXXXX)
  for c in $TMPFS_CONNS; do sagad_cell tmpfs sync "$c" "" "$shm"; done
  rm -rf "$shm"
fi

# ---------------------------------------------------------------- peer
peer_desc=""
if [ "$PEER" != none ]; then
  d=$work/peer && mkdir -p "$d"
  pport=$(free_port)
  say "starting the $PEER Python peer (installs its Debian packages on first use)"
  start=$(now_us)
  REF_BASE_DIR="$work/ref" bash "$REF/run-$PEER.sh" "$pport" "$STUBS_URL/anonymize" \
    "$STUBS_URL/process" "$d/peer.db" "$STUBS_URL/events" >"$d/peer.log" 2>&1 &
  ppid_=$!
  pids+=("$ppid_")
  if wait_http "http://127.0.0.1:$pport/docs" 6000 &&
    curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
      "http://127.0.0.1:$pport/saga" -d '{"image_id":"warm-up","data":"datos de prueba"}'; then
    up=$(awk -v a="$start" -v b="$(now_us)" 'BEGIN{printf "%.1f", (b-a)/1e6}')
    if [ "$PEER" = tuned ]; then
      peer_desc="run-tuned.sh ($( (grep -o 'loop=[a-z]* http=[a-z0-9]*' "$d/peer.log" || true) | head -1)),"
      peer_desc+=" one process, WAL, synchronous=FULL"
    else
      peer_desc="run-reference.sh (the seed as written: uvicorn, asyncio + h11, a connection per call)"
    fi
    peer_desc+="; ready $up s after start"
    for c in $PEER_CONNS; do
      dc=$d/c$c && mkdir -p "$dc"
      say "peer $PEER, c=$c"
      bl peerstore "$d/peer.db" "$dc/peerstore0.json"
      bl snap "$dc/snap0.json" "server=$ppid_" "stubs=$STUBS_PIDS"
      run_wrk bench/post_saga.lua "$c" "http://127.0.0.1:$pport/saga" "$dc/wrk.out"
      bl snap "$dc/snap1.json" "server=$ppid_" "stubs=$STUBS_PIDS"
      bl peerdrain "$d/peer.db" 60 "$dc/drain.json"
      bl peerstore "$d/peer.db" "$dc/peerstore1.json"
      cell_end "$dc" peer sync "$c" "$PEER"
    done
  else
    say "peer $PEER did not start; see $d/peer.log"
    tail -20 "$d/peer.log" >&2 || true
    peer_desc="run-$PEER.sh did not start (its log: $(tail -1 "$d/peer.log"))"
  fi
  stop_pid "$ppid_"
fi

# ---------------------------------------------------------------- in flight
if [ "$INFLIGHT" = 1 ]; then
  d=$work/inflight && mkdir -p "$d"
  say "$INFLIGHT_N sagas in flight behind an AI model answering after $INFLIGHT_DELAY_MS ms"
  start_sta_stubs "$d/stubs" "$(free_port)" --threads 2 --ai-model "delay=$INFLIGHT_DELAY_MS"
  istubs=$STUBS_PIDS
  start_sagad "$d" "$STUBS_URL"
  t0=$(now_us)
  bl snap "$d/snap0.json" "server=$SAGAD_PID" "stubs=$istubs"
  TIMEFORMAT='%U %S'
  { time bl post "$SAGAD_URL/saga" "$INFLIGHT_N" "$INFLIGHT_CONNS" "$d/post.json"; } 2>"$d/post.json.time"
  bl drain "$SAGAD_URL" "$DRAIN_TIMEOUT" "$d/drain.json" "$SAGAD_PID"
  bl snap "$d/snap2.json" "server=$SAGAD_PID" "stubs=$istubs"
  store_check "$d" "$t0" "$d/store.json"
  stop_sagad
  stop_pid "${istubs%%,*}"
  cell_end "$d" inflight async "$INFLIGHT_CONNS" inflight
fi

# ---------------------------------------------------------------- report
stamp=$(date -u +%Y-%m-%dT%H-%M-%SZ)
bl machine "$work" "$work/machine.json"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
crash=$(sed -n 's/^SG_CRASH_POINTS:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
flags="DURATION=$DURATION CONNS=\"$CONNS\" MODES=\"$MODES\" THREADS=$THREADS STUBS=$STUBS PEER=$PEER"
flags+=" PEER_CONNS=\"$PEER_CONNS\" INFLIGHT=$INFLIGHT NATS=$NATS PROFILE=$PROFILE LOG_LEVEL=$LOG_LEVEL"
flags+=" SAGAD_ARGS=\"$SAGAD_ARGS\" STORE=$STORE"
export B_STORE_DESC=$STORE_DESC
export B_DATE B_COMMIT B_BUILD B_BUILD_TYPE B_WRK B_FLAGS B_STUBS B_STUBS_DESC B_PEER_DESC B_SAGAD_CMD
export B_INFLIGHT_DELAY_MS=$INFLIGHT_DELAY_MS
B_DATE=$(date -u '+%Y-%m-%d %H:%M UTC') B_COMMIT=$commit B_BUILD=$BUILD
B_BUILD_TYPE="${build_type:-?}, crash points ${crash:-?}"
B_WRK=$( (wrk --version 2>&1 || true) | awk 'NR == 1 {print $2}')
B_FLAGS="\`$flags\`" B_STUBS=$STUBS B_STUBS_DESC=$stubs_desc B_PEER_DESC=$peer_desc
B_SAGAD_CMD="sagad --log-level $LOG_LEVEL${SAGAD_ARGS:+ $SAGAD_ARGS}"
python3 -c '
import json, os, sys
m = {k[2:].lower(): v for k, v in os.environ.items() if k.startswith("B_")}
m["machine"] = json.load(open(sys.argv[2]))
json.dump(m, open(sys.argv[1], "w"))' "$work/meta.json" "$work/machine.json"
mkdir -p bench/results
out=bench/results/$stamp.md
sections=()
[ -f "$disk_md" ] && sections+=("$disk_md")
[ -f "$profile_md" ] && sections+=("$profile_md")
python3 bench/lib/report.py "$work/meta.json" "$results" "${sections[@]}" >"$out"
cp "$out" bench/results/latest.md
cat "$out"
echo
say "written to $out (and bench/results/latest.md)"
ok=1
