"""huggingface_hub's download speed with its 10 MiB pieces against ours (weights.DOWNLOAD_PIECE), over loopback.

    .venv/bin/python scripts/download_bench.py [MB] [runs]

A stand-in hub (think2seg.testing.hub) serves one file of MB random bytes (default 400); each run downloads it
into a fresh cache with the real client (hf_hub_download), the piece size set as weights.use_download_pieces
sets it. Loopback has no network cost: what is left is the client's own work per piece, the part the size changes.
Prints min/median/max MB/s per piece size, the runs interleaved.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))


def main() -> int:
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    work = Path(tempfile.mkdtemp(prefix="download-bench-"))
    blob = work / "weights.safetensors"
    with open(blob, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    from think2seg.testing.hub import StandInHub
    from think2seg.weights import DOWNLOAD_PIECE

    speeds: dict[int, list[float]] = {10 << 20: [], DOWNLOAD_PIECE: []}
    with StandInHub() as hub:
        hub.add_repo("bench/weights", files={blob.name: blob})
        os.environ["HF_ENDPOINT"] = hub.url
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        from huggingface_hub import constants, hf_hub_download

        for run in range(runs):
            for piece in speeds:
                constants.DOWNLOAD_CHUNK_SIZE = piece
                cache = work / f"cache-{run}-{piece}"
                t0 = time.perf_counter()
                hf_hub_download("bench/weights", blob.name, cache_dir=str(cache))
                speeds[piece].append(mb * (1 << 20) / 1e6 / (time.perf_counter() - t0))
    for piece, values in speeds.items():
        print(
            f"pieces of {piece >> 20:>2} MiB: {min(values):7.0f} / {statistics.median(values):7.0f} / "
            f"{max(values):7.0f} MB/s (min/median/max of {runs}, {mb} MB over loopback)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
