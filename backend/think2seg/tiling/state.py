"""A tiled run's resumable state: its folder, its shards and what makes a rerun the same run.

Each finished tile is written at once as a shard (`STATE/tiles/<tile>.json`) and listed in
`STATE/state.json`; a rerun with the same `state_path` and the same raster, queries and options skips the
finished tiles and ends with the same output. `fingerprint` is the one description of "the same run", for
a raster's state here and a batch's (`think2seg.batch`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import BadInput
from ..result import utc_now
from .grid import TileGrid

STATE_VERSION = 1


def write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)


class TileState:
    """A run's folder: `state.json` (what the run is, which tiles are finished) and one shard per tile."""

    def __init__(self, folder: str | os.PathLike, fingerprint: dict, grid: TileGrid):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.grid = grid
        self.finished: list[str] = []
        (self.folder / "tiles").mkdir(parents=True, exist_ok=True)
        state_file = self.folder / "state.json"
        if state_file.exists():
            try:
                old = json.loads(state_file.read_text())
            except ValueError:
                old = None
            if old is not None and old.get("fingerprint") != fingerprint:
                raise BadInput(
                    f"{self.folder} holds a run of another raster, query or tiling; remove it (or run without "
                    "resuming) to start over.",
                    code="state_mismatch",
                )
            if old is not None:
                self.finished = [t for t in old.get("finished", []) if self.shard_path(t).exists()]
        self._save_state()

    def shard_path(self, tile_id: str) -> Path:
        return self.folder / "tiles" / f"{tile_id}.json"

    def _save_state(self) -> None:
        write_json(
            self.folder / "state.json",
            {
                "version": STATE_VERSION,
                "fingerprint": self.fingerprint,
                "grid": self.grid.to_dict(),
                "finished": self.finished,
                "updated": utc_now(),
            },
        )

    def save(self, shards: Sequence[dict]) -> None:
        """Shards first, then the list: a tile is finished only once its shard is on disk."""
        for s in shards:
            write_json(self.shard_path(s["tile"]["id"]), s)
        done = set(self.finished)
        self.finished += [s["tile"]["id"] for s in shards if s["tile"]["id"] not in done]
        self._save_state()

    def shards(self) -> Iterable[dict]:
        for tile_id in self.finished:
            yield json.loads(self.shard_path(tile_id).read_text())


def raster_identity(path: str) -> dict:
    """What makes a raster the same raster for resuming: its path, size and modification time."""
    ident: dict = {"path": os.path.abspath(path) if os.path.exists(path) else path}
    try:
        st = os.stat(path)
        ident.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    except OSError:
        pass
    return ident


def fingerprint(queries: Sequence[str], options, tiling, models: dict, **scope) -> dict:
    """What makes a rerun the same run, the one description for a raster's tiled state and a batch's alike:
    the queries, the tiling (`tile_size`, `overlap`, `gsd` of a `Tiling` or a `TileGrid`), every option that
    changes an answer, and the models. `scope` adds what the state is of: a raster's `raster=raster_identity(
    path)`, a batch's output `crs`."""
    return {
        **scope,
        "queries": list(queries),
        "tile_size": tiling.tile_size,
        "overlap": tiling.overlap,
        "gsd": tiling.gsd,
        "bands": options.bands,
        "max_reasoning_tokens": options.max_reasoning_tokens,
        "min_area_pixels": options.min_area_pixels,
        "constrain_answer": bool(options.constrain_answer),
        "parse_mode": options.parse_mode,
        "answer_budget": options.answer_budget,
        "sam_size": options.sam_size,
        "reasoner": models.get("reasoner"),
        "segmenter": models.get("segmenter"),
        "prompt_template": models.get("prompt_template"),
    }


def state_key(path: str) -> str:
    """A folder name for one raster's state inside a batch's state folder."""
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(path).stem)[:40]
    return f"{stem}-{digest}"
