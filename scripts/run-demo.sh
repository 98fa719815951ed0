#!/usr/bin/env bash
# Starts sta-stubs (fake anonymizer, tokenizer webhook, AI model) on
# 127.0.0.1:7001 and sagad on :5000 with the embedded SQLite store and the
# webhook bus pointed at the stub tokenizer. Ctrl-C stops both.
# DEFINITIONS=examples/definitions.json loads saga types from that file
# (design §6), its URLs pointed at the stubs (STUBS_URL, SAGAD_*_URL).
set -euo pipefail
BUILD=${BUILD:-build}
STUBS_PORT=${STUBS_PORT:-7001}
"$BUILD/sta-stubs" --listen "127.0.0.1:$STUBS_PORT" &
stubs=$!
trap 'kill $stubs 2>/dev/null; wait $stubs 2>/dev/null' EXIT
for _ in $(seq 50); do
  curl -fsS "http://127.0.0.1:$STUBS_PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
exec_args=(
  --listen "${SAGAD_LISTEN:-0.0.0.0:5000}"
  --db "${SAGAD_DB:-./saga.db}"
  --anonymizer-url "http://127.0.0.1:$STUBS_PORT/anonymize"
  --ai-model-url "http://127.0.0.1:$STUBS_PORT/process"
  --bus "http://127.0.0.1:$STUBS_PORT/events"
)
if [[ -n "${DEFINITIONS:-}" ]]; then
  export STUBS_URL="http://127.0.0.1:$STUBS_PORT"
  export SAGAD_ANONYMIZER_URL="$STUBS_URL/anonymize" SAGAD_AI_MODEL_URL="$STUBS_URL/process"
  exec_args+=(--definitions "$DEFINITIONS")
fi
"$BUILD/sagad" "${exec_args[@]}"
