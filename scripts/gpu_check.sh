#!/usr/bin/env bash
# The GPU check in one command on a bare GPU machine with no network (scripts/gpu_check.py says what it measures):
#   here, once:   bash scripts/gpu_wheels.sh                  # -> .cache/gpu-wheels (wheels, sam2, tokenizer)
#   device call:  carry [".cache/gpu-wheels"], timeout_s 540, command:
#                 bash scripts/gpu_check.sh --json $OUT/gpu_check.json
# It installs the carried wheels that the machine's Python lacks (--no-index, into a folder of its own), puts
# sam2's source and the backend on PYTHONPATH and runs scripts/gpu_check.py with the arguments given (--tiny: the
# CPU check with tiny shapes, which the test suite runs). It ends within 8 minutes (the check's --budget-s).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
W=${GPU_WHEELS:-.cache/gpu-wheels}
SITE=${GPU_CHECK_SITE:-/tmp/think2seg-gpu-site}
NEEDED="import fastapi, uvicorn, multipart, pydantic, rasterio, shapely, json_repair, hydra, omegaconf, iopath"
if ! "$PY" -c "$NEEDED" 2>/dev/null; then
  [ -d "$W/whl" ] || { echo "gpu_check: this Python lacks packages and $W/whl is missing: run scripts/gpu_wheels.sh" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$W"/whl/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import sam2" 2>/dev/null; then
  export PYTHONPATH="$PWD/$W/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/backend${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
TOK=()
if [ -d "$W/tokenizer" ]; then TOK=(--tokenizer "$W/tokenizer"); fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
exec "$PY" scripts/gpu_check.py "${TOK[@]}" "$@"
