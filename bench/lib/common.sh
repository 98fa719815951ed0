# shellcheck shell=bash
# shellcheck disable=SC2034 # STUBS_*, SAGAD_*: set here for bench/run.sh
# Helpers of bench/run.sh (sourced): processes, ports, the stubs, sagad, wrk.
# Expects: $work (the run's temp dir), $BUILD, $THREADS, $DURATION, $LOG_LEVEL,
# $SAGAD_ARGS, $KEEP, $PROFILE_CONNS.

pids=()

say() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }
bl() { python3 bench/lib/benchlib.py "$@"; }
now_us() { local t=${EPOCHREALTIME/./}; echo "${t/,/}"; }

free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# wait_http URL [TRIES]: 50 ms apart.
wait_http() {
  local i
  for ((i = 0; i < ${2:-200}; i++)); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  say "not up: $1"
  return 1
}

# stop_pid PID [SIGNAL]: signal, wait up to 15 s, then SIGKILL.
stop_pid() {
  local p=$1 i
  kill -"${2:-TERM}" "$p" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

stop_all() {
  local p
  for p in "${pids[@]}"; do stop_pid "$p"; done
  pids=()
}

# ---------------------------------------------------------------- stubs

# The answers sta-stubs gives (docs/stubs.md) for the benchmark's body
# {"image_id":"img_123","data":"datos de prueba"} (47 bytes).
ANON_BODY='{"anonymized": true, "image_id": "img_123", "bytes": 47}'
AI_BODY='{"result": "processed", "label": "cat", "score": 0.97}'
BUS_BODY='{"ack": true}'

# start_nginx DIR PORT: nginx from Debian, one worker, fixed JSON answers.
# Sets STUBS_PIDS (master,worker) and STUBS_URL.
start_nginx() {
  local d=$1 port=$2 user=""
  mkdir -p "$d/tmp"
  # As root, nginx's workers would switch to nobody: keep the current user.
  [ "$(id -u)" -eq 0 ] && user="user $(id -un) $(id -gn);"
  cat >"$d/nginx.conf" <<EOF
# Written by bench/run.sh; nginx -p $d -c $d/nginx.conf
$user
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  keepalive_timeout 600s;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:$port backlog=4096;
    default_type application/json;
    location = /anonymize { return 200 '$ANON_BODY'; }
    location = /process   { return 200 '$AI_BODY'; }
    location = /events    { return 200 '$BUS_BODY'; }
    location = /healthz   { return 200 '{"status": "ok"}'; }
  }
}
EOF
  "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >"$d/stdout.log" 2>&1 &
  local master=$!
  pids+=("$master")
  STUBS_URL="http://127.0.0.1:$port"
  wait_http "$STUBS_URL/healthz" || { cat "$d/error.log" "$d/stdout.log" >&2; die "nginx did not start"; }
  local worker
  worker=$(ps -o pid= --ppid "$master" | tr -d ' ' | paste -sd, -)
  STUBS_PIDS="$master${worker:+,$worker}"
}

# start_sta_stubs DIR PORT [FLAGS...]: sets STUBS_PIDS and STUBS_URL.
start_sta_stubs() {
  local d=$1 port=$2
  shift 2
  mkdir -p "$d"
  "$BUILD/sta-stubs" --listen "127.0.0.1:$port" --quiet "$@" >"$d/stubs.log" 2>&1 &
  pids+=($!)
  STUBS_PIDS=$!
  STUBS_URL="http://127.0.0.1:$port"
  wait_http "$STUBS_URL/healthz" || { cat "$d/stubs.log" >&2; die "sta-stubs did not start"; }
}

# ---------------------------------------------------------------- stores

# STORE=sqlite (a file per cell), postgres or redis (one server for the
# run, emptied for each cell). start_store DIR starts the server if any.
STORE=${STORE:-sqlite}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
store_cell=0

# as_db_user CMD...: PostgreSQL refuses to run as root; run it as nobody.
as_db_user() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

start_store() {
  local d=$1
  case $STORE in
    sqlite) ;;
    postgres)
      [ -x "$PG_BIN/initdb" ] || ./scripts/deps.sh postgresql
      PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
      mkdir -p "$d/pg"
      [ "$(id -u)" -eq 0 ] && chown nobody "$d/pg" && chmod 755 "$d"
      as_db_user "$PG_BIN/initdb" -D "$d/pg/data" -U sagad --auth=trust -E UTF8 >"$d/pg.log" 2>&1 ||
        { cat "$d/pg.log" >&2; die "initdb failed"; }
      PG_PORT=$(free_port)
      # Durable like sagad's SQLite default: fsync and synchronous commit on.
      as_db_user "$PG_BIN/postgres" -D "$d/pg/data" -p "$PG_PORT" -k "$d/pg" \
        -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on \
        -c max_connections=300 -c shared_buffers=256MB >>"$d/pg.log" 2>&1 &
      pids+=($!)
      STORE_PIDS=$!
      local i
      for ((i = 0; i < 200; i++)); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
        sleep 0.05
      done
      "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || { cat "$d/pg.log" >&2; die "postgres did not start"; }
      STORE_DESC="PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), fsync=on, synchronous_commit=on"
      ;;
    redis)
      command -v redis-server >/dev/null || ./scripts/deps.sh redis-server
      mkdir -p "$d/redis"
      REDIS_PORT=$(free_port)
      redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$d/redis" --appendonly yes \
        --appendfsync always --save '' >"$d/redis.log" 2>&1 &
      pids+=($!)
      STORE_PIDS=$!
      wait_redis || { cat "$d/redis.log" >&2; die "redis-server did not start"; }
      STORE_DESC="Redis $(redis-server --version | awk '{print $3}'), appendonly yes, appendfsync always"
      ;;
    *) die "STORE=$STORE: sqlite, postgres or redis" ;;
  esac
}

wait_redis() {
  local i
  for ((i = 0; i < 200; i++)); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  return 1
}

# store_url DIR N: the --db of a fresh, empty store for cell N.
store_url() {
  local store_cell=$2
  case $STORE in
    sqlite) echo "$1/sagad.db" ;;
    postgres)
      "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U sagad "cell$store_cell" ||
        die "createdb failed"
      echo "postgres://sagad@127.0.0.1:$PG_PORT/cell$store_cell"
      ;;
    redis)
      redis-cli -p "$REDIS_PORT" flushall >/dev/null || die "redis flushall failed"
      echo "redis://127.0.0.1:$REDIS_PORT/0"
      ;;
  esac
}

# store_check DIR SINCE_US OUT: the cell's sagas as the store holds them
# (benchlib.py store: the SQLite file; store-api: through sagad's listing,
# so sagad must still run).
store_check() {
  if [ "$STORE" = sqlite ]; then
    bl store "$1/sagad.db" "$2" "$3" || say "could not read $1/sagad.db"
  else
    bl store-api "$SAGAD_URL" "$2" "$3" || say "could not list the sagas of $SAGAD_URL"
  fi
}

# ---------------------------------------------------------------- sagad

# start_sagad DIR STUBS_URL [BUS] [FLAGS...]: a fresh sagad on a fresh
# database DIR/sagad.db, one warm-up saga. Sets SAGAD_PID, SAGAD_URL.
start_sagad() {
  local d=$1 stubs=$2 bus=${3:-} port db
  shift 3 || shift $#
  mkdir -p "$d"
  port=$(free_port)
  store_cell=$((store_cell + 1))
  db=$(store_url "$d" "$store_cell") || die "no store for $d"
  # shellcheck disable=SC2086 # SAGAD_ARGS: extra flags, split on spaces
  "$BUILD/sagad" --listen "127.0.0.1:$port" --db "$db" \
    --anonymizer-url "$stubs/anonymize" --ai-model-url "$stubs/process" \
    --bus "${bus:-$stubs/events}" --log-level "$LOG_LEVEL" $SAGAD_ARGS "$@" 2>"$d/sagad.log" &
  SAGAD_PID=$!
  pids+=("$SAGAD_PID")
  SAGAD_URL="http://127.0.0.1:$port"
  wait_http "$SAGAD_URL/readyz" 400 || { tail -20 "$d/sagad.log" >&2; die "sagad did not start"; }
  curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' "$SAGAD_URL/saga" \
    -d '{"image_id":"warm-up","data":"datos de prueba"}' || die "warm-up saga failed"
}

stop_sagad() {
  stop_pid "$SAGAD_PID"
  local p keep=()
  for p in "${pids[@]}"; do [ "$p" = "$SAGAD_PID" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

# run_wrk SCRIPT CONNS URL OUT
run_wrk() {
  local t=$THREADS
  [ "$2" -lt "$t" ] && t=$2
  # bash's time keyword: wrk's own CPU (user, system seconds) into OUT.time.
  local TIMEFORMAT='%U %S'
  { time wrk -t"$t" -c"$2" -d"${DURATION}s" --timeout 10s -s "$1" "$3" >"$4" 2>&1 || true; } 2>"$4.time"
  grep -q '^RESULT ' "$4" || say "wrk gave no result: $(tail -3 "$4" | tr '\n' ' ')"
}

# Drop a cell's database and log unless KEEP=1 (a 10-s cell writes
# hundreds of MB at high rates).
tidy_cell() {
  [ "${KEEP:-0}" = 1 ] && return 0
  rm -f "$1"/*.db "$1"/*.db-wal "$1"/*.db-shm "$1"/*.db.lock "$1"/perf.data
  if [ -f "$1/sagad.log" ]; then
    tail -50 "$1/sagad.log" >"$1/sagad.log.tail" && rm -f "$1/sagad.log"
  fi
}

# perf_profile DIR PID OUT: from DIR/perf.data, the share of each thread of
# sagad PID, then its top symbols (self time), as markdown into OUT.
perf_profile() {
  local d=$1 pid=$2 out=$3 share tid comm cat
  local rep=(perf report -i "$d/perf.data" --no-children --stdio -g none)
  {
    echo "## perf profile: sagad, synchronous, c=$PROFILE_CONNS, $DURATION s (perf record -g; self time)"
    echo
    echo "That row ran under perf: its figures in the table carry perf's overhead."
    echo
    echo "Samples by thread: $("${rep[@]}" --sort pid 2>/dev/null | grep -v '^#' | grep '%' |
      awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}')"
    echo
    "${rep[@]}" --sort pid 2>/dev/null | grep -v '^#' | grep '%' | tr ':' ' ' |
      while read -r share tid comm; do
        case $comm in
          MHD*) cat=api ;;
          sagad-writer) cat=writer ;;
          *) if [ "$tid" = "$pid" ]; then cat=loop; else cat=other; fi ;;
        esac
        echo "### $cat thread ($comm, tid $tid): $share of the samples"
        echo
        echo '```'
        "${rep[@]}" --sort dso,sym --tid="$tid" --percentage relative --percent-limit 1 2>/dev/null |
          grep -v '^#' | grep -v '^$' | head -"${PROFILE_LINES:-15}" || true
        echo '```'
        echo
      done
  } >"$out"
}
