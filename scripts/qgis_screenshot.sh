#!/usr/bin/env bash
# `make screenshot`: the real QGIS under Xvfb with a throw-away profile, the plugin installed from the zip,
# a backend on the tiny models; the first run, a query through the panel and one through Processing:
# docs/screenshots/{first_run,running,panel,result,processing_dialog,processing}.png.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${THINK2SEG_SCREENSHOT_DIR:-$ROOT/docs/screenshots}
WORK=$(mktemp -d /tmp/think2seg_screenshot.XXXXXX)
PROFILES=$WORK/profiles
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PID_FILE=$WORK/backend.pid
cleanup() {
  if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then kill "$(cat "$PID_FILE")"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

python3 "$ROOT/scripts/plugin_install.py" "$ROOT/dist/think2seg_qgis.zip" "$PROFILES/profiles/default" >&2
URL=$(THINK2SEG_MODEL=$ROOT/.cache/tiny-models/reasoner THINK2SEG_SAM=$ROOT/.cache/tiny-models/sam2.1_hiera_t.pt \
  THINK2SEG_DEVICE=cpu "$ROOT/scripts/qgis_start_backend.sh" "$PORT" "$WORK/token" "$WORK/backend.log" "$PID_FILE" ready)
mkdir -p "$OUT"
rm -f "$OUT/panel.png" "$OUT/result.png" "$OUT/first_run.png" "$OUT/running.png" "$OUT/processing_dialog.png" "$OUT/processing.png"
set +e
THINK2SEG_BACKEND_URL=$URL THINK2SEG_TOKEN_FILE=$WORK/token THINK2SEG_BACKEND_PYTHON=$ROOT/.venv/bin/python \
THINK2SEG_SCREENSHOT_DIR=$OUT THINK2SEG_SCREENSHOT_STATUS=$WORK/status.txt \
PYTHONPATH=$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH} \
  timeout 540 xvfb-run -a -s '-screen 0 1600x1000x24' \
  qgis --nologo --noversioncheck --profiles-path "$PROFILES" \
  --code "${THINK2SEG_SCREENSHOT_STARTUP:-$ROOT/scripts/qgis_screenshot_startup.py}" "$ROOT/resources/naip_prairie_potholes_2020.tif" \
  > "$WORK/qgis.log" 2>&1
CODE=$?
set -e
cat "$WORK/status.txt" 2>/dev/null || true
if [ "$CODE" != 0 ] || [ ! -f "$OUT/panel.png" ]; then
  echo "QGIS exited with $CODE; its output:" >&2
  tail -n 40 "$WORK/qgis.log" >&2
  echo "backend log:" >&2
  tail -n 20 "$WORK/backend.log" >&2
  exit 1
fi
ls -l "$OUT"/*.png
