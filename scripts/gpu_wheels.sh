#!/usr/bin/env bash
# The files a bare GPU machine (no network) needs to run scripts/gpu_check.sh, in one ignored folder to carry:
#   DIR/whl/        wheels for its Python 3.12 of what its image lacks: the service (fastapi, starlette, uvicorn,
#                   python-multipart, pydantic), rasters (rasterio, affine, cligj, click-plugins, shapely),
#                   json_repair, and sam2's needs (hydra-core, omegaconf, antlr4-python3-runtime, iopath)
#   DIR/src/sam2    sam2's source folder (on PYTHONPATH is enough; its CUDA extension is optional)
#   DIR/tokenizer   the Qwen tokenizer the tiny models use (tokenizer.json only)
# Usage: scripts/gpu_wheels.sh [DIR]   (default .cache/gpu-wheels; ~40 MiB; the working tree + DIR must stay
# under the 64 MiB a device call carries). Versions are this venv's, so the GPU machine runs what tests ran here.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.cache/gpu-wheels}
PY=${PY:-.venv/bin/python}
rm -rf "$DIR"
mkdir -p "$DIR/whl" "$DIR/src"
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
BINARY=(rasterio shapely pydantic_core)
PURE=(affine cligj click-plugins fastapi starlette uvicorn python-multipart pydantic annotated-types annotated-doc
      typing-inspection json_repair hydra-core omegaconf)
SDIST_ONLY=(antlr4-python3-runtime iopath)
pins() { for p in "$@"; do echo "$p==$(version "$p")"; done; }
# shellcheck disable=SC2046
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$DIR/whl" $(pins "${BINARY[@]}") $(pins "${PURE[@]}")
# shellcheck disable=SC2046
"$PY" -m pip wheel -q --no-deps -w "$DIR/whl" $(pins "${SDIST_ONLY[@]}")
SAM2=$("$PY" -c "import sam2, os; print(os.path.dirname(sam2.__file__))")
cp -r "$SAM2" "$DIR/src/sam2"
find "$DIR/src" \( -name __pycache__ -o -name '*.so' \) -prune -exec rm -rf {} +
PYTHONPATH=backend "$PY" -c "
from pathlib import Path
from think2seg.testing.tiny_models import build_tokenizer_files
out = Path('$DIR/tokenizer'); build_tokenizer_files(out)
for redundant in ('vocab.json', 'merges.txt'):  # tokenizer.json holds both
    (out / redundant).unlink()
"
du -sh "$DIR" "$DIR"/*
echo "carry [\"$DIR\"] and run: bash scripts/gpu_check.sh --json \$OUT/gpu_check.json"
