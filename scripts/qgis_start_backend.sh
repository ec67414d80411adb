#!/usr/bin/env bash
# Start `think2seg serve` in the background for QGIS and wait until it listens (or is ready).
# Usage: scripts/qgis_start_backend.sh PORT TOKEN_FILE LOG_FILE PID_FILE [listening|ready]
# Models: $THINK2SEG_MODEL / $THINK2SEG_SAM / $THINK2SEG_DEVICE (default: the published weights, auto device).
# Reuses a backend that already answers on PORT. Prints the URL on success.
set -euo pipefail
PORT=$1 TOKEN_FILE=$2 LOG_FILE=$3 PID_FILE=$4 WAIT_FOR=${5:-listening}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVE=${THINK2SEG_SERVE:-$ROOT/.venv/bin/think2seg}
URL="http://127.0.0.1:$PORT"

if curl -s -o /dev/null -m 2 "$URL/openapi.json"; then
  echo "A backend already answers on $URL; using it." >&2
  echo "$URL"
  exit 0
fi
[ -x "$SERVE" ] || { echo "No backend at $SERVE: run 'make backend' first." >&2; exit 1; }
mkdir -p "$(dirname "$LOG_FILE")" "$(dirname "$TOKEN_FILE")" "$(dirname "$PID_FILE")"
ARGS=(serve --host 127.0.0.1 --port "$PORT" --token-file "$TOKEN_FILE")
[ -n "${THINK2SEG_MODEL:-}" ] && ARGS+=(--model "$THINK2SEG_MODEL")
[ -n "${THINK2SEG_SAM:-}" ] && ARGS+=(--sam "$THINK2SEG_SAM")
[ -n "${THINK2SEG_DEVICE:-}" ] && ARGS+=(--device "$THINK2SEG_DEVICE")
START_LINE=$(( $( [ -f "$LOG_FILE" ] && wc -l < "$LOG_FILE" || echo 0 ) + 1 ))
echo "--- $(date '+%F %T') make starts: $SERVE ${ARGS[*]}" >> "$LOG_FILE"
nohup "$SERVE" "${ARGS[@]}" >> "$LOG_FILE" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$PID_FILE"
echo "Backend starting (pid $PID), log: $LOG_FILE" >&2
PATTERN="listening on|ready on"
[ "$WAIT_FOR" = ready ] && PATTERN="ready on"
for _ in $(seq 1 600); do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "The backend stopped while starting; the end of its log:" >&2
    tail -n 20 "$LOG_FILE" >&2
    exit 1
  fi
  if tail -n +"$START_LINE" "$LOG_FILE" | grep -Eq "models failed to load"; then
    echo "The backend's models failed to load; the end of its log:" >&2
    tail -n 20 "$LOG_FILE" >&2
    exit 1
  fi
  if tail -n +"$START_LINE" "$LOG_FILE" | grep -Eq "$PATTERN"; then
    echo "$URL"
    exit 0
  fi
  sleep 0.5
done
echo "The backend did not start in 5 minutes; see $LOG_FILE" >&2
exit 1
