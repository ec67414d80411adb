"""Big rasters: a grid of overlapping tiles read by windows, every query on every tile, seamless polygons.

By concern:
- `grid`: the tile plan (`Tiling`, the settings; `TileGrid`, a raster's tiles and their cores);
- `read`: reading windows, and the next batch read ahead on a thread;
- `merge`: what each tile keeps (its core) and the dissolve across core borders into the raster's answer;
- `run`: answering read tiles (`answer_tiles`, the one way, also the Ray actor's) and the whole run of one
  raster (`segment_raster_tiled`);
- `state`: the resumable state folder and the one `fingerprint` of a run.

The public names are re-exported here (`from think2seg.tiling import segment_raster_tiled`).
"""

from .grid import (
    TileGrid,
    TileSpec,
    Tiling,
    axis_cores,
    axis_offsets,
    check_grid_options,
    make_grid,
    native_pixel_size,
    tile_count,
    window_and_step,
)
from .merge import SNAP_PIXELS, Piece, clip_to_core, dissolve, in_core, merge_pieces, merge_shards
from .read import GDAL_CACHE_MB, has_data, read_ahead, read_tiles, read_window
from .run import (
    ProgressFn,
    answer_tiles,
    nodata_entry,
    read_record,
    run_tiles,
    segment_raster_tiled,
    tile_entry,
)
from .state import STATE_VERSION, TileState, fingerprint, raster_identity, state_key, write_json

__all__ = [
    "GDAL_CACHE_MB",
    "SNAP_PIXELS",
    "STATE_VERSION",
    "Piece",
    "ProgressFn",
    "TileGrid",
    "TileSpec",
    "TileState",
    "Tiling",
    "answer_tiles",
    "axis_cores",
    "axis_offsets",
    "check_grid_options",
    "clip_to_core",
    "dissolve",
    "fingerprint",
    "has_data",
    "in_core",
    "make_grid",
    "merge_pieces",
    "merge_shards",
    "native_pixel_size",
    "nodata_entry",
    "raster_identity",
    "read_ahead",
    "read_record",
    "read_tiles",
    "read_window",
    "run_tiles",
    "segment_raster_tiled",
    "state_key",
    "tile_count",
    "tile_entry",
    "window_and_step",
    "write_json",
]
