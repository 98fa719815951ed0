#!/usr/bin/env bash
# Where a saga's cost goes (issue 9, "find where the time goes"): runs sagad
# (BUILD) against sta-stubs at CONNS connections, synchronous POST /saga,
# three times for DURATION seconds each, and prints per saga:
#   1. syscalls, by name and in all (strace -c -f on sagad);
#   2. allocations (malloc, calloc, realloc) by thread, through an
#      LD_PRELOAD counter (bench/lib/count_allocs.c);
#   3. the store writer's SQL statements, WAL pages and bytes per saga
#      (sagad logs them at exit when the store counts them);
#   4. CPU per saga by thread, from /proc.
# Sagas are counted in the store (COMPLETED), not from wrk's answers.
#
#   BUILD=build-rel CONNS=64 DURATION=5 bench/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CONNS=${CONNS:-64}
DURATION=${DURATION:-5}
THREADS=2 LOG_LEVEL=${LOG_LEVEL:-info} SAGAD_ARGS=${SAGAD_ARGS:-} KEEP=1
command -v wrk >/dev/null || ./scripts/deps.sh wrk
command -v strace >/dev/null || ./scripts/deps.sh strace
work=$(mktemp -d /tmp/sagad-profile.XXXXXX)
# shellcheck source=bench/lib/common.sh
. bench/lib/common.sh
trap 'stop_all; rm -rf "$work"' EXIT

completed() { # DB: sagas COMPLETED in the store
  python3 -c "import sqlite3,sys; c=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True); \
print(c.execute('select count(*) from sagas where status=1').fetchone()[0])" "$1"
}
thread_ticks() { # PID: "name ticks" per thread
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s:%s %s\n' "${t##*/}" "$(tr ' ' '_' <"$t/comm")" "$(awk '{print $14+$15}' "$t/stat")"
  done
}

cc -O2 -shared -fPIC -o "$work/count_allocs.so" bench/lib/count_allocs.c -ldl
start_sta_stubs "$work/stubs" "$(free_port)"
echo "# Where a saga's cost goes: $(git rev-parse --short HEAD), c=$CONNS, ${DURATION} s per pass"
echo

# 1. syscalls
start_sagad "$work/a" "$STUBS_URL"
before=$(completed "$work/a/sagad.db")
strace -c -f -q -o "$work/strace.txt" -p "$SAGAD_PID" &
spid=$!
sleep 0.5
wrk -t2 -c"$CONNS" -d"${DURATION}s" -s bench/post_saga.lua "$SAGAD_URL/saga" >"$work/a.wrk" 2>&1
kill -INT "$spid"
wait "$spid" 2>/dev/null || true
n=$(($(completed "$work/a/sagad.db") - before))
stop_sagad
echo "## Syscalls per saga (strace -c -f; $n sagas, slowed down by strace)"
echo
echo '```'
python3 - "$work/strace.txt" "$n" <<'PY'
import sys
rows, n = [], max(int(sys.argv[2]), 1)
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls = int(f[3]); rows.append((calls, f[-1]))
total = sum(c for c, _ in rows)
for c, name in sorted(rows, reverse=True)[:15]:
    print("%-16s %6.2f" % (name, c / n))
print("%-16s %6.2f" % ("all", total / n))
PY
echo '```'
echo

# 2. allocations, 3. store counts, 4. CPU by thread
d="$work/b"
mkdir -p "$d"
port=$(free_port)
COUNT_ALLOCS_OUT="$d/allocs.txt" LD_PRELOAD="$work/count_allocs.so" \
  "$BUILD/sagad" --listen "127.0.0.1:$port" --db "$d/sagad.db" \
  --anonymizer-url "$STUBS_URL/anonymize" --ai-model-url "$STUBS_URL/process" \
  --bus "$STUBS_URL/events" --log-level "$LOG_LEVEL" 2>"$d/sagad.log" &
SAGAD_PID=$!
pids+=("$SAGAD_PID")
wait_http "http://127.0.0.1:$port/readyz" 400
thread_ticks "$SAGAD_PID" >"$d/t0"
wrk -t2 -c"$CONNS" -d"${DURATION}s" -s bench/post_saga.lua "http://127.0.0.1:$port/saga" >"$d/wrk" 2>&1
thread_ticks "$SAGAD_PID" >"$d/t1"
n=$(completed "$d/sagad.db")
stop_sagad
echo "## Allocations per saga, by thread ($n sagas; malloc + calloc + realloc)"
echo
echo '```'
awk -v n="$n" '$3 > 0 {printf "%-16s %8.1f\n", $2, $3 / n; s += $3} END {printf "%-16s %8.1f\n", "all", s / n}' "$d/allocs.txt"
echo '```'
echo
echo "## CPU per saga, by thread (µs)"
echo
echo '```'
join <(sort "$d/t0") <(sort "$d/t1") 2>/dev/null | awk -v n="$n" -v hz="$(getconf CLK_TCK)" \
  '{split($1, nm, ":"); t[nm[2]] += ($3 - $2)} END {for (k in t) {printf "%-16s %8.1f\n", k, t[k] * 1e6 / hz / n; s += t[k]}
   printf "%-16s %8.1f\n", "all", s * 1e6 / hz / n}' | sort -k2 -nr
echo '```'
echo
if grep -q 'store: closed after' "$d/sagad.log"; then
  echo "## Store writer per saga"
  echo
  echo '```'
  grep 'store: closed after' "$d/sagad.log" | tail -1 | python3 -c "
import re, sys
n = max(int(sys.argv[1]), 1)
m = re.search(r'after ([0-9]+) transactions of ([0-9]+) writes: ([0-9]+) statements, ([0-9]+) pages \(([0-9]+) bytes\)', sys.stdin.read())
for name, v in zip(('transactions', 'writes', 'statements', 'WAL pages', 'WAL bytes'), m.groups()):
    print('%-16s %10.2f' % (name, int(v) / n))" "$n"
  echo '```'
fi
