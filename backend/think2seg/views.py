"""Views and refine: re-segment one instance of an answer from a user's box and points, without the reasoner.

A *view* is the tile the model saw, named by its content key (`image_key`, the answer's `view_id`). The
service keeps recent views (pixels + georeferencing, bounded by bytes and count) so that a refine can
rebuild the SAM2 embedding when the segmenter has evicted it; the answer is then the same as with the
embedding still loaded. A refine runs SAM2's prompt encoder and mask decoder only (`predict_prompt`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np
from affine import Affine
from pydantic import BaseModel, ConfigDict, Field
from shapely.geometry import mapping

from .errors import BadInput, NotFound
from .georef import RasterTile, area_m2, area_unit, box_ring, crs_epsg
from .polygons import DEFAULT_MIN_AREA_PIXELS, mask_to_multipolygon

#: Views kept by default: enough for a session of edits on recent answers, bounded in memory.
DEFAULT_MAX_VIEWS = 32
DEFAULT_MAX_VIEW_BYTES = 512 * 2**20


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

    @property
    def nbytes(self) -> int:
        return int(self.tile.rgb.nbytes + (self.tile.valid.nbytes if self.tile.valid is not None else 0))


class ViewStore:
    """Recent views by id, least recently used dropped first past `max_views` or `max_bytes`."""

    def __init__(self, max_views: int = DEFAULT_MAX_VIEWS, max_bytes: int = DEFAULT_MAX_VIEW_BYTES):
        self.max_views = max_views
        self.max_bytes = max_bytes
        self._views: OrderedDict[str, View] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._views)

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self._views.values())

    def put(self, view: View) -> None:
        with self._lock:
            self._views.pop(view.view_id, None)
            self._views[view.view_id] = view
            while len(self._views) > 1 and (len(self._views) > self.max_views or self.nbytes > self.max_bytes):
                self._views.popitem(last=False)

    def get(self, view_id: str) -> View:
        with self._lock:
            view = self._views.get(view_id)
            if view is None:
                raise ViewNotFound(
                    f"There is no view {view_id}: the backend keeps the last {self.max_views} answers only (or "
                    "it was restarted). Run the query again, then refine the new answer.")
            self._views.move_to_end(view_id)
            return view


class RefineRequest(BaseModel):
    """One instance's prompts, as the user edited them."""

    model_config = ConfigDict(extra="forbid")

    frame: Literal["crs", "pixel"] = Field(
        "crs", description="`crs`: coordinates in the raster's CRS (as the answer's `box_crs`/`points_crs`); "
                           "`pixel`: the uploaded image's pixel frame (as `box_pixel`/`points_pixel`).")
    box: list[float] | None = Field(
        None, min_length=4, max_length=4, description="[xmin, ymin, xmax, ymax]; in `crs` an axis-aligned box "
                                                      "in the CRS (its pixel bounding box is used)")
    positive_points: list[tuple[float, float]] = Field(default_factory=list, description="[[x, y], ...]: on the object")
    negative_points: list[tuple[float, float]] = Field(default_factory=list, description="[[x, y], ...]: not on it")
    instance: int | None = Field(None, description="the answer's instance this edits; null for a new instance")


def _to_tile_pixels(view: View, xy: np.ndarray, frame: str) -> np.ndarray:
    tile = view.tile
    inverse: Affine = ~tile.transform if frame == "crs" else ~tile.to_source_pixel
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    return np.column_stack([inverse.a * xy[:, 0] + inverse.b * xy[:, 1] + inverse.c,
                            inverse.d * xy[:, 0] + inverse.e * xy[:, 1] + inverse.f])


def tile_prompts(view: View, req: RefineRequest) -> tuple[tuple[float, float, float, float] | None, np.ndarray, np.ndarray]:
    """The request's prompts in the view's tile pixels: (box or None, points (N, 2), labels (N,)).

    Raises BadPrompt (HTTP 422) for no prompt at all, a non-finite number, a point outside the view, or a
    box that does not overlap it (a box reaching past the edge is cut to the view)."""
    numbers = [*(req.box or []), *(v for p in req.positive_points for v in p), *(v for p in req.negative_points for v in p)]
    if not all(math.isfinite(v) for v in numbers):
        raise BadPrompt("A prompt coordinate is not a finite number (NaN or infinity); send real coordinates.")
    if req.box is None and not req.positive_points and not req.negative_points:
        raise BadPrompt("Give a box or at least one point to segment from.")
    h, w = view.tile.shape
    where = "the raster's CRS" if req.frame == "crs" else "the image's pixels"
    box = None
    if req.box is not None:
        x1, y1, x2, y2 = req.box
        corners = _to_tile_pixels(view, [[x1, y1], [x2, y1], [x2, y2], [x1, y2]], req.frame)
        bx1, by1 = np.clip(corners.min(axis=0), 0, [w, h])
        bx2, by2 = np.clip(corners.max(axis=0), 0, [w, h])
        if bx2 - bx1 < 1e-6 or by2 - by1 < 1e-6:
            raise BadPrompt(f"The box {req.box} does not overlap the view (coordinates in {where}); draw it on "
                            "the area the answer covers.")
        box = (float(bx1), float(by1), float(bx2), float(by2))
    pts = [*req.positive_points, *req.negative_points]
    labels = np.array([1] * len(req.positive_points) + [0] * len(req.negative_points), dtype=np.int32)
    xy = _to_tile_pixels(view, pts, req.frame) if pts else np.zeros((0, 2))
    outside = [list(p) for p, q in zip(pts, xy) if not (0 <= q[0] <= w and 0 <= q[1] <= h)]
    if outside:
        raise BadPrompt(f"The point(s) {outside} lie outside the view (coordinates in {where}); click inside the "
                        "area the answer covers.")
    return box, xy, labels


def _encodes(segmenter, key: str) -> bool:
    """Whether `set_image(..., key)` will run the image encoder (neither embedded now nor in its LRU)."""
    return key != segmenter.embedded_key and key not in segmenter.cached_keys


def refine_view(segmenter, view: View, req: RefineRequest) -> dict:
    """Re-segment one instance of `view` from `req`'s prompts: SAM2's decoder on the view's embedding
    (rebuilt from the view's pixels when the segmenter no longer holds it). The reasoner is not called."""
    t0 = time.perf_counter()
    if req.instance is not None and req.instance not in view.instances:
        raise InstanceNotFound(f"The answer {view.view_id} has no instance {req.instance} (it has "
                               f"{', '.join(map(str, view.instances)) or 'none'}); leave `instance` out for a new one.")
    box, xy, labels = tile_prompts(view, req)
    tile = view.tile
    t1 = time.perf_counter()
    reembedded = _encodes(segmenter, view.view_id)
    segmenter.set_image(tile.rgb, view.view_id)
    t2 = time.perf_counter()
    mask, score = segmenter.predict_prompt(box, xy, labels)
    t3 = time.perf_counter()
    if tile.valid is not None:
        mask = mask & tile.valid
    geom = mask_to_multipolygon(mask, tile, view.min_area_pixels)
    area = area_m2(geom, tile.crs, tile.pixel_area) if not geom.is_empty else 0.0
    t4 = time.perf_counter()
    src = tile.to_source_pixel
    unit = area_unit(tile.crs)
    return {
        "view_id": view.view_id, "instance": req.instance, "edited": True,
        "geometry": mapping(geom) if not geom.is_empty else None,
        "score": score, "area": area, "area_unit": unit, "area_m2": area if unit == "m2" else None,
        "box_pixel": None if box is None else [float(v) for v in (*(src @ box[:2]), *(src @ box[2:]))],
        "box_crs": None if box is None else tile.pixel_to_crs(box_ring(box)).tolist(),
        "points_pixel": [[float(v) for v in src @ (float(x), float(y))] for x, y in xy],
        "points_crs": tile.pixel_to_crs(xy).tolist() if len(xy) else [],
        "labels": labels.tolist(),
        "crs": tile.crs.to_wkt() if tile.crs else None, "epsg": crs_epsg(tile.crs),
        "reembedded": reembedded,
        "timings": {"prompts": t1 - t0, "embed": t2 - t1, "decoder": t3 - t2, "polygonise": t4 - t3,
                    "total": t4 - t0},
    }
