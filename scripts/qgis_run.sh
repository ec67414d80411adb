#!/usr/bin/env bash
# `make run`: start the backend in the background, then open QGIS with the sample raster and the panel.
# The backend started here is stopped when QGIS closes; one that was already running is left alone.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${THINK2SEG_PORT:-8765}
TOKEN_FILE=${THINK2SEG_TOKEN_FILE:-$HOME/.config/think2seg/token}
LOG_FILE=${THINK2SEG_LOG:-$HOME/.cache/think2seg/backend.log}
PID_FILE=$HOME/.cache/think2seg/backend.pid
RASTER=${1:-$ROOT/resources/naip_prairie_potholes_2020.tif}
PROFILE=${QGIS_PROFILE:-default}
PROFILE_ARGS=(--profile "$PROFILE")
# QGIS_PROFILES_PATH: a folder holding profiles/<name>/ (as `make install-plugin QGIS_PROFILE_DIR=...` fills it).
[ -n "${QGIS_PROFILES_PATH:-}" ] && PROFILE_ARGS+=(--profiles-path "$QGIS_PROFILES_PATH")

if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "No display: 'make run' opens a QGIS window (use 'make screenshot' on a headless machine)." >&2
  exit 1
fi
rm -f "$PID_FILE"
URL=$("$ROOT/scripts/qgis_start_backend.sh" "$PORT" "$TOKEN_FILE" "$LOG_FILE" "$PID_FILE" listening)
STARTED=$(cat "$PID_FILE" 2>/dev/null || true)
stop_backend() {
  if [ -n "$STARTED" ] && kill -0 "$STARTED" 2>/dev/null; then
    echo "Stopping the backend (pid $STARTED)." >&2
    kill "$STARTED"
  fi
}
trap stop_backend EXIT
echo "Backend: $URL (token: $TOKEN_FILE, log: $LOG_FILE). Opening QGIS..." >&2
THINK2SEG_BACKEND_URL=$URL THINK2SEG_TOKEN_FILE=$TOKEN_FILE THINK2SEG_BACKEND_PYTHON=$ROOT/.venv/bin/python \
  qgis --nologo --noversioncheck "${PROFILE_ARGS[@]}" --code "$ROOT/scripts/qgis_open_panel.py" "$RASTER"
