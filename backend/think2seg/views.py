"""Views and refine: re-segment one instance of an answer from a user's box and points, without the reasoner.

A *view* is the tile the model saw, named by its content key (`image_key`, the answer's `view_id`). The
service keeps recent views (pixels + georeferencing, bounded by bytes and count) so that a refine can
rebuild the SAM2 embedding when the segmenter has evicted it; the answer is then the same as with the
embedding still loaded. A refine runs SAM2's prompt encoder and mask decoder only (`predict_prompt`).

A tiled answer (a job over a big raster) is a `TiledView`: the raster file and its grid. A refine there
re-segments every tile whose core the prompts reach (each tile's window read again, its embedding keyed by
its pixels like the pipeline's), cuts each tile's mask to the tile's core and dissolves the pieces across
the core borders with `tiling.merge_pieces`: the same seamless merge as the run itself. An edited instance
keeps its pieces in the tiles the edit does not reach (as the run merged them), and those join the new
pieces across the border, so a click near one side of a border does not cut the instance off there.

Views outlive the backend (`DiskViews`): each answered view is also written to a bounded folder in the work
root (`WORK/kept-views/<view_id>/`: the exact uint8 array SAM2 got and its georeferencing, or a tiled
answer's raster and grid settings), least recently used out past `serve --view-store-mb` (2 GiB by default).
A refine of a view the memory no longer holds (the backend was restarted, or newer answers took its place)
loads it from there and re-embeds it: the same pixels, the same embedding, the same mask. The view id names
the folder and is checked (32 hex digits) before any path is made; an entry that does not load is "gone".
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from affine import Affine
from pydantic import BaseModel, ConfigDict, Field
from shapely.geometry import MultiPoint, MultiPolygon, mapping
from shapely.geometry import box as shapely_box

from .errors import BadInput, NotFound
from .georef import RasterTile, area_m2, area_unit, box_ring, crs_epsg
from .polygons import DEFAULT_MIN_AREA_PIXELS, mask_to_multipolygon

#: Views kept by default: enough for a session of edits on recent answers, bounded in memory.
DEFAULT_MAX_VIEWS = 32
DEFAULT_MAX_VIEW_BYTES = 512 * 2**20
#: Bytes of views kept on disk for refine after a restart (`serve --view-store-mb`; 0: none).
DEFAULT_VIEW_STORE_BYTES = 2 * 2**30
#: a view id: a content key (`segmenter.image_key`, `tiled_view_id`), the only names the disk store makes
VIEW_ID = re.compile(r"[0-9a-f]{32}")
log = logging.getLogger("think2seg.service")


class ViewNotFound(NotFound):
    code = "view_not_found"


class InstanceNotFound(NotFound):
    code = "instance_not_found"


class BadPrompt(BadInput):
    code = "bad_prompt"


@dataclass
class View:
    """What a refine needs of an answer: the pixels the model saw, their georeferencing, the instances."""

    view_id: str
    tile: RasterTile
    instances: list[int]
    min_area_pixels: float = DEFAULT_MIN_AREA_PIXELS
    #: the SAM2.1 size that drew the answer (None: the pipeline's default): a refine uses the same one
    sam_size: str | None = None

    @property
    def nbytes(self) -> int:
        return int(self.tile.rgb.nbytes + (self.tile.valid.nbytes if self.tile.valid is not None else 0))

    def close(self) -> None:
        pass


@dataclass
class TiledView:
    """A tiled answer: the raster file (kept by the service while the view lives), its grid and read options,
    and its merged features (a refine of one re-merges the edit with the feature's pieces elsewhere)."""

    view_id: str
    path: str
    grid: object  # tiling.TileGrid
    bands: list[int] | None
    features: list = field(default_factory=list)  # tiling.TiledFeature, each with its `geometry_pixels`
    min_area_pixels: float = DEFAULT_MIN_AREA_PIXELS
    #: the SAM2.1 size that drew the answer (None: the pipeline's default): a refine uses the same one
    sam_size: str | None = None

    @property
    def instances(self) -> list[int]:
        return [f.instance for f in self.features]

    def feature(self, instance: int):
        return next((f for f in self.features if f.instance == instance), None)

    @property
    def nbytes(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def close(self) -> None:
        """The view is dropped: so is its copy of the raster."""
        try:
            os.unlink(self.path)
        except OSError:
            pass


@dataclass
class KeptFeature:
    """What a refine of a tiled answer needs of one of its merged features (`TiledView.features`)."""

    instance: int
    score: float
    geometry_pixels: MultiPolygon | None


def _affine(values) -> Affine:
    v = [float(x) for x in values]
    if len(v) != 6 or not all(math.isfinite(x) for x in v):
        raise ValueError("not an affine transform")
    return Affine(*v)


def _touch(path: Path) -> None:
    """Mark an entry used now, to the nanosecond (the kernel's own file times tick in milliseconds)."""
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def _dir_bytes(folder: Path) -> int:
    return sum(e.stat().st_size for e in os.scandir(folder) if e.is_file(follow_symlinks=False))


class DiskViews:
    """Answered views on disk, one folder per view id, least recently used dropped past `max_bytes`.

    An entry is written in a temporary folder and renamed into place (a crash leaves no half entry); reading
    it touches its `view.json` (the LRU order). `max_bytes` 0 keeps nothing. Shared safely by backends on one
    work root: an entry another one removed while this one read it is "gone"."""

    META = "view.json"
    TEMP = ".tmp-"

    def __init__(self, folder: str | os.PathLike, max_bytes: int = DEFAULT_VIEW_STORE_BYTES):
        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        for old in self.folder.glob(f"{self.TEMP}*") if self.folder.is_dir() else ():
            try:
                if time.time() - old.stat().st_mtime > 3600:  # left by a backend killed while it wrote
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:  # another backend's, removed meanwhile
                pass

    def entry(self, view_id: str) -> Path:
        """The entry's folder; ViewNotFound for anything but a view id (no other path is ever made)."""
        if not isinstance(view_id, str) or not VIEW_ID.fullmatch(view_id):
            raise ViewNotFound(
                f"{view_id[:40]!r} is not a view id (32 hexadecimal digits, the answer's `view_id`)."
                if isinstance(view_id, str)
                else "That is not a view id."
            )
        return self.folder / view_id

    def entries(self) -> list[tuple[int, int, Path]]:
        """(last use, bytes, folder) of every entry, oldest first."""
        out = []
        for d in self.folder.iterdir() if self.folder.is_dir() else ():
            if not VIEW_ID.fullmatch(d.name):
                continue
            try:
                out.append(((d / self.META).stat().st_mtime_ns, _dir_bytes(d), d))
            except OSError:  # half removed (by another backend), or no meta: counted as nothing, dropped
                shutil.rmtree(d, ignore_errors=True)
        return sorted(out, key=lambda e: e[0])

    @property
    def nbytes(self) -> int:
        return sum(b for _, b, _ in self.entries())

    def put(self, view: View | TiledView) -> None:
        """Keep `view` (a copy of its pixels, or a link to its raster); nothing when it alone is over the bound.
        A disk that refuses is logged, not raised: the answer itself is fine."""
        if self.max_bytes <= 0:
            return
        target = self.entry(view.view_id)
        tmp = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # at the first answer: none before
            tmp = Path(tempfile.mkdtemp(prefix=self.TEMP, dir=self.folder))
            meta = self._write(view, tmp)
            (tmp / self.META).write_text(json.dumps(meta))
            _touch(tmp / self.META)
            size = _dir_bytes(tmp)
            if size > self.max_bytes:
                log.info(
                    "view %s (%.1f MiB) is larger than the view store (%.1f MiB): not kept on disk",
                    view.view_id,
                    size / 2**20,
                    self.max_bytes / 2**20,
                )
                return
            with self._lock:
                if target.is_dir():  # the same content already kept: it is now the newest
                    _touch(target / self.META)
                    return
                kept = self.entries()
                total = sum(b for _, b, _ in kept)
                for _, b, d in kept:
                    if total + size <= self.max_bytes:
                        break
                    shutil.rmtree(d, ignore_errors=True)
                    total -= b
                os.rename(tmp, target)
                tmp = None
        except OSError as e:
            log.warning("cannot keep view %s on disk in %s (%s)", view.view_id, self.folder, e.strerror or e)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _write(view: View | TiledView, folder: Path) -> dict:
        common = {"view_id": view.view_id, "min_area_pixels": view.min_area_pixels, "sam_size": view.sam_size}
        if isinstance(view, TiledView):
            suffix = Path(view.path).suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", Path(view.path).suffix) else ""
            raster = folder / f"raster{suffix}"
            try:
                os.link(view.path, raster)  # the same file system (both in the work root): no copy
            except OSError:
                shutil.copyfile(view.path, raster)
            grid = view.grid
            return {
                **common,
                "kind": "tiled",
                "raster": raster.name,
                "tiling": {"tile_size": grid.tile_size, "overlap": grid.overlap, "gsd": grid.gsd},
                "size": [grid.width, grid.height],
                "bands": view.bands,
                "features": [
                    {
                        "instance": int(f.instance),
                        "score": float(f.score),
                        "wkb": None if f.geometry_pixels is None else f.geometry_pixels.wkb_hex,
                    }
                    for f in view.features
                ],
            }
        tile = view.tile
        np.save(folder / "rgb.npy", np.ascontiguousarray(tile.rgb), allow_pickle=False)
        if tile.valid is not None:
            np.save(folder / "valid.npy", np.ascontiguousarray(tile.valid), allow_pickle=False)
        return {
            **common,
            "kind": "image",
            "transform": list(tile.transform)[:6],
            "to_source_pixel": list(tile.to_source_pixel)[:6],
            "crs": tile.crs.to_wkt() if tile.crs else None,
            "read": tile.read,
            "instances": [int(i) for i in view.instances],
        }

    def get(self, view_id: str, scratch: Path) -> View | TiledView | None:
        """The kept view, or None when there is none; a tiled view's raster is linked into `scratch` (the view
        owns that link and removes it when it is dropped). ViewNotFound for an entry that does not load."""
        folder = self.entry(view_id)
        if self.max_bytes <= 0 or not (folder / self.META).is_file():
            return None
        try:
            meta = json.loads((folder / self.META).read_text())
            if meta.get("view_id") != view_id:
                raise ValueError("the entry names another view")
            view = self._read(meta, folder, scratch)
            _touch(folder / self.META)
            return view
        except Exception as e:  # noqa: BLE001 - whatever is wrong with the entry, the answer is the same
            log.warning("view %s on disk does not load (%s: %s); removed", view_id, type(e).__name__, e)
            shutil.rmtree(folder, ignore_errors=True)
            raise ViewNotFound(
                f"The kept image of the answer {view_id} is damaged or was removed; run the query again, then "
                "refine the new answer."
            ) from None

    @staticmethod
    def _read(meta: dict, folder: Path, scratch: Path) -> View | TiledView:
        from rasterio.crs import CRS

        min_area = float(meta.get("min_area_pixels", DEFAULT_MIN_AREA_PIXELS))
        sam_size = meta.get("sam_size")
        if meta.get("kind") == "tiled":
            import shapely

            from .georef import open_raster, untrusted_rasters
            from .tiling import TileGrid

            name = str(meta["raster"])
            if not re.fullmatch(r"raster(\.[A-Za-z0-9]{1,8})?", name):
                raise ValueError("bad raster name")
            scratch.mkdir(parents=True, exist_ok=True)
            path = scratch / f"{meta['view_id']}{Path(name).suffix}"
            if not path.exists():
                try:
                    os.link(folder / name, path)
                except OSError:
                    shutil.copyfile(folder / name, path)
            t = meta["tiling"]
            with untrusted_rasters():  # the file was an upload: opened with the uploads' drivers only
                ds = open_raster(str(path))
                try:
                    grid = TileGrid.for_raster(ds, int(t["tile_size"]), int(t["overlap"]), t.get("gsd"))
                finally:
                    ds.close()
            if [grid.width, grid.height] != list(meta["size"]):
                raise ValueError("the raster is not the one answered")
            features = [
                KeptFeature(
                    int(f["instance"]),
                    float(f["score"]),
                    None if f["wkb"] is None else shapely.from_wkb(bytes.fromhex(f["wkb"])),
                )
                for f in meta["features"]
            ]
            bands = meta.get("bands")
            return TiledView(meta["view_id"], str(path), grid, bands, features, min_area, sam_size)
        if meta.get("kind") != "image":
            raise ValueError(f"unknown kind {meta.get('kind')!r}")
        from .segmenter import image_key

        rgb = np.load(folder / "rgb.npy", allow_pickle=False)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"the pixels are {rgb.dtype} {rgb.shape}, not uint8 (H, W, 3)")
        if image_key(rgb) != meta["view_id"]:
            raise ValueError("the pixels are not the view's (their content key differs)")
        valid = None
        if (folder / "valid.npy").exists():
            valid = np.load(folder / "valid.npy", allow_pickle=False)
            if valid.dtype != bool or valid.shape != rgb.shape[:2]:
                raise ValueError("the valid-data mask does not match the pixels")
        tile = RasterTile(
            rgb,
            _affine(meta["transform"]),
            CRS.from_wkt(meta["crs"]) if meta.get("crs") else None,
            valid,
            "",
            _affine(meta["to_source_pixel"]),
            dict(meta.get("read") or {}),
        )
        return View(meta["view_id"], tile, [int(i) for i in meta["instances"]], min_area, sam_size)


class ViewStore:
    """Recent views by id, least recently used dropped first past `max_views` or `max_bytes`; with `disk`,
    every view put is also kept there, and a view this memory no longer holds is loaded from it (a tiled
    view's raster linked into `scratch`)."""

    def __init__(
        self,
        max_views: int = DEFAULT_MAX_VIEWS,
        max_bytes: int = DEFAULT_MAX_VIEW_BYTES,
        disk: DiskViews | None = None,
        scratch: Path | None = None,
    ):
        self.max_views = max_views
        self.max_bytes = max_bytes
        self.disk, self.scratch = disk, scratch
        self._views: OrderedDict[str, View] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._views)

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self._views.values())

    def put(self, view: View | TiledView, keep_on_disk: bool = True) -> None:
        if keep_on_disk and self.disk is not None:
            self.disk.put(view)
        with self._lock:
            old = self._views.pop(view.view_id, None)
            if old is not None and old is not view and getattr(old, "path", None) != getattr(view, "path", None):
                old.close()
            self._views[view.view_id] = view
            while len(self._views) > 1 and (len(self._views) > self.max_views or self.nbytes > self.max_bytes):
                self._views.popitem(last=False)[1].close()

    def close(self) -> None:
        with self._lock:
            for view in self._views.values():
                view.close()
            self._views.clear()

    def get(self, view_id: str) -> View | TiledView:
        with self._lock:
            view = self._views.get(view_id)
            if view is not None:
                self._views.move_to_end(view_id)
                return view
        if self.disk is not None:
            view = self.disk.get(view_id, self.scratch or Path(tempfile.gettempdir()))
            if view is not None:
                self.put(view, keep_on_disk=False)
                return view
        raise ViewNotFound(
            f"There is no view {view_id[:40]}: the backend keeps the last {self.max_views} answers only"
            + (
                f", and {self.disk.max_bytes / 2**20:.4g} MiB of them on disk"
                if self.disk is not None and self.disk.max_bytes > 0
                else " (and none once it is restarted)"
            )
            + ". Run the query again, then refine the new answer."
        )


class RefineRequest(BaseModel):
    """One instance's prompts, as the user edited them."""

    model_config = ConfigDict(extra="forbid")

    frame: Literal["crs", "pixel"] = Field(
        "crs",
        description="`crs`: coordinates in the raster's CRS (as the answer's `box_crs`/`points_crs`); "
        "`pixel`: the uploaded image's pixel frame (as `box_pixel`/`points_pixel`).",
    )
    box: list[float] | None = Field(
        None,
        min_length=4,
        max_length=4,
        description="[xmin, ymin, xmax, ymax]; in `crs` an axis-aligned box "
        "in the CRS (its pixel bounding box is used)",
    )
    positive_points: list[tuple[float, float]] = Field(default_factory=list, description="[[x, y], ...]: on the object")
    negative_points: list[tuple[float, float]] = Field(default_factory=list, description="[[x, y], ...]: not on it")
    instance: int | None = Field(None, description="the answer's instance this edits; null for a new instance")


def _apply(a: Affine, xy) -> np.ndarray:
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    return np.column_stack([a.a * xy[:, 0] + a.b * xy[:, 1] + a.c, a.d * xy[:, 0] + a.e * xy[:, 1] + a.f])


def frame_prompts(
    req: RefineRequest,
    to_pixels: Affine,
    shape: tuple[int, int],
) -> tuple[tuple[float, float, float, float] | None, np.ndarray, np.ndarray]:
    """The request's prompts in a pixel grid of `shape` (h, w), `to_pixels` mapping the request's frame to
    it: (box or None, points (N, 2), labels (N,)).

    Raises BadPrompt (HTTP 422) for no prompt at all, a non-finite number, a point outside the view, or a
    box that does not overlap it (a box reaching past the edge is cut to the view)."""
    numbers = [
        *(req.box or []),
        *(v for p in req.positive_points for v in p),
        *(v for p in req.negative_points for v in p),
    ]
    if not all(math.isfinite(v) for v in numbers):
        raise BadPrompt("A prompt coordinate is not a finite number (NaN or infinity); send real coordinates.")
    if req.box is None and not req.positive_points and not req.negative_points:
        raise BadPrompt("Give a box or at least one point to segment from.")
    h, w = shape
    where = "the raster's CRS" if req.frame == "crs" else "the image's pixels"
    box = None
    if req.box is not None:
        x1, y1, x2, y2 = req.box
        corners = _apply(to_pixels, [[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
        bx1, by1 = np.clip(corners.min(axis=0), 0, [w, h])
        bx2, by2 = np.clip(corners.max(axis=0), 0, [w, h])
        if bx2 - bx1 < 1e-6 or by2 - by1 < 1e-6:
            raise BadPrompt(
                f"The box {req.box} does not overlap the view (coordinates in {where}); draw it on "
                "the area the answer covers."
            )
        box = (float(bx1), float(by1), float(bx2), float(by2))
    pts = [*req.positive_points, *req.negative_points]
    labels = np.array([1] * len(req.positive_points) + [0] * len(req.negative_points), dtype=np.int32)
    xy = _apply(to_pixels, pts) if pts else np.zeros((0, 2))
    outside = [list(p) for p, q in zip(pts, xy) if not (0 <= q[0] <= w and 0 <= q[1] <= h)]
    if outside:
        raise BadPrompt(
            f"The point(s) {outside} lie outside the view (coordinates in {where}); click inside the "
            "area the answer covers."
        )
    return box, xy, labels


def tiled_view_id(tile_records: list[dict]) -> str:
    """A tiled answer's view id: a key over its tiles' content keys (the same raster and grid, the same id)."""
    import hashlib

    keys = "|".join(f"{r['tile']}={r.get('view_id', '')}" for r in tile_records)
    return hashlib.blake2b(keys.encode(), digest_size=16).hexdigest()


def _encodes(segmenter, key: str) -> bool:
    """Whether `set_image(..., key)` will run the image encoder (neither embedded now nor in its LRU)."""
    return key != segmenter.embedded_key and key not in segmenter.cached_keys


def _check_instance(view: View | TiledView, req: RefineRequest) -> None:
    if req.instance is not None and req.instance not in view.instances:
        raise InstanceNotFound(
            f"The answer {view.view_id} has no instance {req.instance} (it has "
            f"{', '.join(map(str, view.instances)) or 'none'}); leave `instance` out for a new one."
        )


def refine_view(segmenter, view: View | TiledView, req: RefineRequest) -> dict:
    """Re-segment one instance of `view` from `req`'s prompts: SAM2's decoder on the view's embedding
    (rebuilt from the view's pixels when the segmenter no longer holds it). The reasoner is not called."""
    if isinstance(view, TiledView):
        return refine_tiled(segmenter, view, req)
    t0 = time.perf_counter()
    _check_instance(view, req)
    tile = view.tile
    box, xy, labels = frame_prompts(req, ~tile.transform if req.frame == "crs" else ~tile.to_source_pixel, tile.shape)
    t1 = time.perf_counter()
    reembedded = _encodes(segmenter, view.view_id)
    segmenter.set_image(tile.rgb, view.view_id)
    t2 = time.perf_counter()
    mask, score = segmenter.predict_prompt(box, xy, labels)
    t3 = time.perf_counter()
    if tile.valid is not None:
        mask = mask & tile.valid
    geom = mask_to_multipolygon(mask, tile.transform, view.min_area_pixels)
    area = area_m2(geom, tile.crs, tile.pixel_area) if not geom.is_empty else 0.0
    t4 = time.perf_counter()
    src = tile.to_source_pixel
    unit = area_unit(tile.crs)
    return {
        "view_id": view.view_id,
        "instance": req.instance,
        "edited": True,
        "geometry": mapping(geom) if not geom.is_empty else None,
        "score": score,
        "area": area,
        "area_unit": unit,
        "area_m2": area if unit == "m2" else None,
        "box_pixel": None if box is None else [float(v) for v in (*(src @ box[:2]), *(src @ box[2:]))],
        "box_crs": None if box is None else tile.pixel_to_crs(box_ring(box)).tolist(),
        "points_pixel": [[float(v) for v in src @ (float(x), float(y))] for x, y in xy],
        "points_crs": tile.pixel_to_crs(xy).tolist() if len(xy) else [],
        "labels": labels.tolist(),
        "crs": tile.crs.to_wkt() if tile.crs else None,
        "epsg": crs_epsg(tile.crs),
        "reembedded": reembedded,
        "timings": {"prompts": t1 - t0, "embed": t2 - t1, "decoder": t3 - t2, "polygonise": t4 - t3, "total": t4 - t0},
    }


def refine_tiled(segmenter, view: TiledView, req: RefineRequest) -> dict:
    """Refine on a tiled answer: every tile whose core the prompts reach is re-segmented from the prompts
    that fall on it (the box cut to the tile, the points inside it), each mask cut to its tile's core, the
    edited instance's own pieces in the other tiles kept, and all dissolved across core borders
    (`tiling.merge_pieces`), so the instance stays seamless. `tiles`: the tiles re-segmented; `tiles_kept`:
    those where the instance is as the run left it."""
    import rasterio

    from .polygons import as_multipolygon
    from .segmenter import image_key
    from .tiling.merge import Piece, clip_to_core, merge_pieces
    from .tiling.read import GDAL_CACHE_MB, read_window

    t0 = time.perf_counter()
    _check_instance(view, req)
    grid = view.grid
    # The uploaded image's pixels are the raster's pixels: "pixel" needs no mapping.
    box, xy, labels = frame_prompts(
        req, ~grid.transform if req.frame == "crs" else Affine.identity(), (grid.height, grid.width)
    )
    reach = shapely_box(*box) if box is not None else MultiPoint([tuple(p) for p in xy]).convex_hull
    specs = [s for s in grid.tiles if shapely_box(*s.core).intersects(reach)]
    pieces, scores, tiles_used = [], [], []
    timings = {"prompts": time.perf_counter() - t0, "read": 0.0, "embed": 0.0, "decoder": 0.0, "polygonise": 0.0}
    reembedded = False
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(view.path) as ds:
        for spec in specs:
            t = time.perf_counter()
            tile = read_window(ds, spec, view.bands)
            key = image_key(tile.rgb)
            to_tile = ~tile.to_source_pixel
            h, w = tile.shape
            tile_box = None
            if box is not None:
                c = _apply(to_tile, [box[:2], box[2:]])
                x1, y1 = np.clip(c.min(axis=0), 0, [w, h])
                x2, y2 = np.clip(c.max(axis=0), 0, [w, h])
                tile_box = (float(x1), float(y1), float(x2), float(y2)) if x2 - x1 > 1e-6 and y2 - y1 > 1e-6 else None
            txy = _apply(to_tile, xy) if len(xy) else np.zeros((0, 2))
            inside = (txy[:, 0] >= 0) & (txy[:, 0] <= w) & (txy[:, 1] >= 0) & (txy[:, 1] <= h)
            if tile_box is None and not inside.any():
                continue
            t1 = time.perf_counter()
            reembedded |= _encodes(segmenter, key)
            segmenter.set_image(tile.rgb, key)
            t2 = time.perf_counter()
            mask, score = segmenter.predict_prompt(tile_box, txy[inside], labels[inside])
            t3 = time.perf_counter()
            if tile.valid is not None:
                mask = mask & tile.valid
            # In the raster's pixels, where the run clipped and merged (core borders are whole numbers there).
            geom_px = mask_to_multipolygon(mask, tile.to_source_pixel, view.min_area_pixels)
            piece = clip_to_core(geom_px, spec.core) if not geom_px.is_empty else None
            if piece is not None and not piece.is_empty:
                pieces += [Piece(p, spec.id, 0, 0, score) for p in piece.geoms]
            scores.append((score, piece.area if piece is not None else 0.0))
            tiles_used.append(spec.id)
            t4 = time.perf_counter()
            for k, v in (("read", t1 - t), ("embed", t2 - t1), ("decoder", t3 - t2), ("polygonise", t4 - t3)):
                timings[k] += v
    t5 = time.perf_counter()
    # The instance as the run merged it, in the tiles this edit did not re-segment: those pieces stay and
    # are dissolved with the new ones (the run's own merge, `merge_pieces`), so the instance stays whole.
    kept_tiles = []
    original = view.feature(req.instance) if req.instance is not None else None
    if original is not None and original.geometry_pixels is not None:
        for spec in grid.tiles:
            if spec.id in tiles_used or not shapely_box(*spec.core).intersects(original.geometry_pixels):
                continue
            kept = clip_to_core(original.geometry_pixels, spec.core)
            if kept.is_empty:
                continue
            pieces += [Piece(p, spec.id, 0, 0, original.score) for p in kept.geoms]
            scores.append((original.score, kept.area))
            kept_tiles.append(spec.id)
    merged = merge_pieces(pieces, view.min_area_pixels * grid.scale * grid.scale)
    geom_px = as_multipolygon(MultiPolygon([p for g, _ in merged for p in g.geoms]))
    geom = as_multipolygon(grid.to_crs(geom_px))
    area = (
        (area_m2(geom, grid.crs, grid.pixel_area) if grid.crs is not None else float(geom_px.area))
        if not geom.is_empty
        else 0.0
    )
    weights = np.array([a for _, a in scores])
    score = float(np.average([s for s, _ in scores], weights=weights if weights.sum() > 0 else None)) if scores else 0.0
    timings["merge"] = time.perf_counter() - t5
    timings["total"] = time.perf_counter() - t0
    unit = area_unit(grid.crs)
    to_crs = grid.transform
    return {
        "view_id": view.view_id,
        "instance": req.instance,
        "edited": True,
        "geometry": mapping(geom) if not geom.is_empty else None,
        "score": score,
        "area": area,
        "area_unit": unit,
        "area_m2": area if unit == "m2" else None,
        "box_pixel": None if box is None else list(box),
        "box_crs": None if box is None else _apply(to_crs, box_ring(box)).tolist(),
        "points_pixel": xy.tolist(),
        "points_crs": _apply(to_crs, xy).tolist() if len(xy) else [],
        "labels": labels.tolist(),
        "crs": grid.crs.to_wkt() if grid.crs else None,
        "epsg": crs_epsg(grid.crs),
        "tiles": tiles_used,
        "tiles_kept": kept_tiles,
        "reembedded": reembedded,
        "timings": timings,
    }
