"""The pipeline: tile -> reasoner (reasoning + prompts) -> parse -> frozen SAM2 -> polygons in the CRS.

One object holds the loaded models; `segment(raster or array, query)` answers one query, and
`segment_tiles` answers many (tile, query) pairs with one batched `generate` and one SAM2 image embedding
per distinct tile.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from shapely.geometry import MultiPolygon, mapping
from shapely.ops import unary_union

from . import __version__
from .errors import BadInput, BadRequest
from .georef import (
    RasterTile,
    area_m2,
    area_unit,
    box_ring,
    crs_epsg,
    read_tile,
    tile_from_array,
)
from .options import SegmentOptions
from .polygons import mask_to_multipolygon
from .prompts import PromptInstance, parse_answer
from .reasoner import Reasoner, to_model_image
from .segmenter import Segmenter, image_key
from .weights import DEFAULT_REASONER, DEFAULT_SAM_SIZE

MAX_QUERY_CHARS = 2000


@dataclass
class InstanceResult:
    instance: int
    box_pixel: list[float] | None  # in the source raster's pixel frame; None: the model gave only points
    points_pixel: list[list[float]]  # empty: the model gave only a box
    box_crs: list[list[float]] | None  # closed ring in the CRS (a rotated raster gives a rotated box)
    points_crs: list[list[float]]
    score: float
    geometry: MultiPolygon  # this instance's own mask, in the CRS
    area: float

    @property
    def anchor_pixel(self) -> tuple[float, float]:
        """Where the instance is, in source pixels: its box centre, or without a box its points' mean."""
        if self.box_pixel is not None:
            x1, y1, x2, y2 = self.box_pixel
            return ((x1 + x2) / 2, (y1 + y2) / 2)
        xs = [p[0] for p in self.points_pixel]
        ys = [p[1] for p in self.points_pixel]
        return (sum(xs) / len(xs), sum(ys) / len(ys))

    def to_dict(self) -> dict:
        return {
            "instance": self.instance, "box_pixel": self.box_pixel, "points_pixel": self.points_pixel,
            "box_crs": self.box_crs, "points_crs": self.points_crs, "score": self.score, "area": self.area,
        }


@dataclass
class SegmentResult:
    query: str
    status: str  # ok | empty | unparsed
    message: str
    reasoning: str
    answer: str
    instances: list[InstanceResult]
    tile: RasterTile
    timings: dict[str, float]
    models: dict[str, str]
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    merged_mask: np.ndarray | None = None  # bool, tile pixels (the OR of the instances)

    @property
    def crs(self):
        return self.tile.crs

    @property
    def mask_geometry(self) -> MultiPolygon:
        geoms = [i.geometry for i in self.instances if not i.geometry.is_empty]
        if not geoms:
            return MultiPolygon()
        u = unary_union(geoms)
        return u if isinstance(u, MultiPolygon) else MultiPolygon([u]) if u.geom_type == "Polygon" else MultiPolygon(
            [g for g in getattr(u, "geoms", []) if g.geom_type == "Polygon"])

    @property
    def area(self) -> float:
        g = self.mask_geometry
        return area_m2(g, self.crs, self.tile.pixel_area) if not g.is_empty else 0.0

    def to_dict(self) -> dict:
        """The JSON answer of the HTTP API (docs/api.md)."""
        crs = self.crs
        return {
            "query": self.query, "status": self.status, "message": self.message,
            "reasoning": self.reasoning, "answer": self.answer,
            "instances": [i.to_dict() for i in self.instances],
            "mask": {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "geometry": mapping(i.geometry),
                     "properties": {"instance": i.instance, "area": i.area, "score": i.score}}
                    for i in self.instances if not i.geometry.is_empty
                ],
            },
            "crs": crs.to_wkt() if crs else None, "epsg": crs_epsg(crs), "area_unit": area_unit(crs),
            "read": self.tile.read, "timings": self.timings, "models": self.models, "created": self.created,
        }


def check_query(query: str) -> str:
    q = (query or "").strip()
    if not q:
        raise BadRequest("The query is empty: type what you are looking for.", code="empty_query")
    if len(q) > MAX_QUERY_CHARS:
        raise BadRequest(f"The query is {len(q)} characters long; keep it under {MAX_QUERY_CHARS}.", code="query_too_long")
    return q


def describe(status: str, n: int, area: float, unit: str, reason: str) -> str:
    if status == "empty":
        return "The model found nothing that matches the query."
    if status == "unparsed":
        return f"The model's answer could not be used ({reason}); no mask was made."
    if unit == "m2":
        size = f"{area / 1e4:.2f} ha" if area >= 1e4 else f"{area:.0f} m²"
    else:
        size = f"{area:.0f} {unit}"
    return f"{n} instance{'s' if n != 1 else ''} found, {size} in all."


class Pipeline:
    def __init__(self, reasoner: Reasoner, segmenter: Segmenter):
        self.reasoner = reasoner
        self.segmenter = segmenter
        # The tile whose SAM2 embedding is loaded (a reference, not an id(): ids are reused after GC).
        self._embedded_tile: RasterTile | None = None

    @classmethod
    def from_pretrained(
        cls, model: str = DEFAULT_REASONER, sam: str = DEFAULT_SAM_SIZE, sam_size: str | None = None,
        device: str | None = None, decoding: str = "auto", compile_sam: bool = False,
    ) -> Pipeline:
        """The one place every entry point loads models. `decoding`: auto (the fast path on CUDA, plain on the
        CPU), fast or plain (think2seg.speed); `compile_sam`: compile SAM2's image encoder (CUDA)."""
        return cls(Reasoner.from_pretrained(model, device=device, decoding=decoding),
                   Segmenter.from_pretrained(sam, sam_size, device=device, compile_encoder=compile_sam))

    @property
    def models(self) -> dict[str, str]:
        return {
            "reasoner": self.reasoner.model_id, "segmenter": self.segmenter.model_id,
            "prompt_template": self.reasoner.template_id, "think2seg": __version__,
        }

    def load_tile(self, source, options: SegmentOptions) -> RasterTile:
        if isinstance(source, RasterTile):
            return source
        if isinstance(source, np.ndarray):
            return tile_from_array(source)
        if isinstance(source, (str, os.PathLike)):
            return read_tile(source, bands=options.bands, max_size=options.max_read_size)
        raise BadInput(f"Cannot segment a {type(source).__name__}: give a raster path, an array or a RasterTile.")

    def segment(self, source, query: str, options: SegmentOptions | dict | None = None) -> SegmentResult:
        opts = options if isinstance(options, SegmentOptions) else SegmentOptions.from_dict(options)
        query = check_query(query)
        t0 = time.perf_counter()
        tile = self.load_tile(source, opts)
        read_s = time.perf_counter() - t0
        result = self.segment_tiles([tile], [query], opts)[0]
        result.timings = {"read": read_s, **result.timings}
        return result

    def segment_tiles(
        self, tiles: list[RasterTile], queries: list[str], options: SegmentOptions | None = None,
        cancelled=None,
    ) -> list[SegmentResult]:
        """Answer (tile, query) pairs: one batched generate, then SAM2 per tile (embedding reused)."""
        opts = options or SegmentOptions()
        queries = [check_query(q) for q in queries]
        t0 = time.perf_counter()
        images = [to_model_image(t.rgb, self.reasoner.frame) for t in tiles]
        keys = [image_key(t.rgb) for t in tiles]
        t_pre = time.perf_counter()
        outs = self.reasoner.generate_images(images, queries, max_reasoning_tokens=opts.max_reasoning_tokens, keys=keys)
        t_gen = time.perf_counter()
        n = len(tiles)
        results = []
        for tile, query, out in zip(tiles, queries, outs):
            if cancelled is not None and cancelled():
                from .errors import Cancelled

                raise Cancelled("The job was cancelled.")
            results.append(self._finish(tile, query, out, opts, {
                "preprocess": (t_pre - t0) / n, "reasoner": (t_gen - t_pre) / n,
            }))
        return results

    def _finish(self, tile: RasterTile, query: str, out, opts: SegmentOptions, timings: dict) -> SegmentResult:
        t0 = time.perf_counter()
        frame = self.reasoner.frame
        parsed = parse_answer(out.text, frame, frame)
        h, w = tile.shape
        pixel_instances = [inst.scaled(w / frame, h / frame) for inst in parsed.instances]
        t1 = time.perf_counter()
        if pixel_instances:
            if self._embedded_tile is not tile:
                # keyed by content: a second question on the same view reuses SAM2's embedding (interface 1)
                self.segmenter.set_image(tile.rgb, key=image_key(tile.rgb))
                self._embedded_tile = tile
            masks = self.segmenter.predict(pixel_instances, (h, w))
        else:
            masks = None
        t2 = time.perf_counter()
        instances = []
        for k, inst in enumerate(pixel_instances):
            mask = masks.instances[k]
            if tile.valid is not None:
                mask = mask & tile.valid  # nothing is found where the raster has no data
            geom = mask_to_multipolygon(mask, tile, opts.min_area_pixels) if opts.polygonise else MultiPolygon()
            instances.append(self._instance_result(k, inst, tile, geom, masks.scores[k]))
        merged = masks.merged if masks is not None else np.zeros((h, w), dtype=bool)
        if tile.valid is not None:
            merged = merged & tile.valid
        t3 = time.perf_counter()
        status = parsed.status
        result = SegmentResult(
            query=query, status=status, message="", reasoning=parsed.reasoning, answer=out.text,
            instances=instances, tile=tile, models=self.models, merged_mask=merged,
            timings={**timings, "parse": t1 - t0, "segmenter": t2 - t1, "polygonise": t3 - t2},
        )
        result.message = describe(status, len(instances), result.area, area_unit(tile.crs), parsed.reason)
        if out.forced_answer:
            result.message += " (The reasoning budget ran out; the answer was forced.)"
        return result

    @staticmethod
    def _instance_result(k: int, inst: PromptInstance, tile: RasterTile, geom, score: float) -> InstanceResult:
        # An instance may have only a box (no points) or only points (box None): both are answers SAM2 takes.
        pts = np.asarray(inst.points, dtype=float).reshape(-1, 2)
        src = tile.to_source_pixel
        to_src = lambda xy: [[float(v) for v in src @ (float(x), float(y))] for x, y in xy]  # noqa: E731
        has_box = inst.box is not None
        return InstanceResult(
            instance=k,
            box_pixel=[float(v) for v in (*(src @ inst.box[:2]), *(src @ inst.box[2:]))] if has_box else None,
            points_pixel=to_src(pts),
            box_crs=tile.pixel_to_crs(box_ring(inst.box)).tolist() if has_box else None,
            points_crs=tile.pixel_to_crs(pts).tolist() if len(pts) else [],
            score=score,
            geometry=geom,
            area=area_m2(geom, tile.crs, tile.pixel_area) if not geom.is_empty else 0.0,
        )

