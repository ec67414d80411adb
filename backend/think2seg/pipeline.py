"""The pipeline: tile -> reasoner (reasoning + prompts) -> parse -> frozen SAM2 -> polygons in the CRS.

One object holds the loaded models; `segment(raster or array, query)` answers one query, and
`segment_tiles` answers many (tile, query) pairs with one batched `generate` and one SAM2 image embedding
per distinct tile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image
from shapely.geometry import MultiPolygon

from . import __version__
from .errors import BadInput
from .georef import RasterTile, area_unit, pixel_geometry_area, raster_transform, read_tile, tile_from_array
from .options import SegmentOptions, check_query
from .polygons import mask_to_multipolygon
from .prompts import parse_answer
from .reasoner import Reasoner, to_model_image
from .result import InstanceResult, SegmentResult, describe
from .segmenter import Segmenter, image_key
from .weights import DEFAULT_REASONER, DEFAULT_SAM_SIZE, local_sam_checkpoint, sibling_sam_checkpoint
from .weights import sam_size as parse_sam_size


@dataclass(frozen=True)
class ModelInput:
    """What the models take of a tile, made once however many queries ask it: the image in the reasoner's
    frame (`to_model_image`), the tile's content key (`image_key`: the view SAM2's embedding and the
    reasoner's prefix are kept under), the seconds it took to make them, and SAM2's input for the default
    segmenter, under way on a thread while the reasoner answers (`Segmenter.input_ahead`; None: SAM2 makes
    it when it needs it)."""

    image: Image.Image
    key: str
    seconds: float
    sam_input: Future | None = None


class Pipeline:
    """The reasoner and one segmenter per SAM2.1 size: the first one given, others loaded on first use from
    where the first came from (the hub, or checkpoints next to the first one's file)."""

    def __init__(
        self,
        reasoner: Reasoner,
        segmenter: Segmenter,
        sam_source: str | None = None,
        device: str | None = None,
        compile_sam: bool = False,
    ):
        self.reasoner = reasoner
        self.segmenter = segmenter  # the default, used when a request names no size
        self.segmenters: dict[str, Segmenter] = {segmenter.size: segmenter}
        #: where `segmenter` came from (a size name: the hub; a path: a local checkpoint); None: nowhere else
        self.sam_source = sam_source
        self.device = device
        self.compile_sam = compile_sam

    @classmethod
    def from_pretrained(
        cls,
        model: str = DEFAULT_REASONER,
        sam: str = DEFAULT_SAM_SIZE,
        sam_size: str | None = None,
        device: str | None = None,
        decoding: str = "auto",
        compile_sam: bool = False,
    ) -> Pipeline:
        """The one place every entry point loads models. `decoding`: auto (the fast path on CUDA, plain on the
        CPU), fast or plain (think2seg.decoding); `compile_sam`: compile SAM2's image encoder (CUDA)."""
        local_sam_checkpoint(sam, sam_size)  # a wrong `sam` is told in a moment, not after the reasoner loads
        pipeline = cls(
            Reasoner.from_pretrained(model, device=device, decoding=decoding),
            Segmenter.from_pretrained(sam, sam_size, device=device, compile_encoder=compile_sam),
            sam_source=sam,
            device=device,
            compile_sam=compile_sam,
        )
        return pipeline

    def segmenter_for(self, size: str | None = None) -> Segmenter:
        """The segmenter of a SAM2.1 size (None: the default), loaded on first use."""
        if size is None:
            return self.segmenter
        name = parse_sam_size(size).name
        if name in self.segmenters:
            return self.segmenters[name]
        if self.sam_source is None:
            raise BadInput(
                f"This pipeline holds SAM2.1 {self.segmenter.size} only; SAM2.1 {name} cannot be loaded.",
                code="sam_size_unavailable",
            )
        if os.path.exists(self.sam_source):
            source = sibling_sam_checkpoint(self.sam_source, name)  # BadInput naming the missing file
        else:
            source = name
        seg = Segmenter.from_pretrained(source, name, device=self.device, compile_encoder=self.compile_sam)
        self.segmenters[name] = seg
        return seg

    def models_for(self, size: str | None = None) -> dict[str, str]:
        """The model ids a request with this SAM2.1 size is answered with (nothing is loaded)."""
        name = None if size is None else parse_sam_size(size).name
        if name in self.segmenters:
            return self._models(self.segmenters[name].model_id)
        return self._models(self.segmenter.model_id if name is None else f"sam2.1_hiera_{name}")

    def _models(self, segmenter_id: str) -> dict[str, str]:
        return {
            "reasoner": self.reasoner.model_id,
            "segmenter": segmenter_id,
            "prompt_template": self.reasoner.template_id,
            "think2seg": __version__,
        }

    @property
    def models(self) -> dict[str, str]:
        return self.models_for(None)

    def provenance(self, opts: SegmentOptions) -> dict:
        """`models` plus how this answer was decoded and read (docs/api.md): the record of one result."""
        import transformers

        return {
            **self.models_for(opts.sam_size),
            "parse_mode": opts.parse_mode,
            "transformers": transformers.__version__,
            "generation": self.reasoner.decoding_settings(
                opts.max_reasoning_tokens, opts.answer_budget, constrain_answer=opts.constrain_answer
            ),
        }

    def load_tile(self, source, options: SegmentOptions) -> RasterTile:
        if isinstance(source, RasterTile):
            return source
        if isinstance(source, np.ndarray):
            return tile_from_array(source)
        if isinstance(source, (str, os.PathLike)):
            return read_tile(source, bands=options.bands, max_size=options.max_read_size)
        raise BadInput(f"Cannot segment a {type(source).__name__}: give a raster path, an array or a RasterTile.")

    @contextmanager
    def keeping_at_most(self, views: int) -> Iterator[None]:
        """The models' caches (SAM2's embeddings, the reasoner's vision features and prompt prefixes) keep at most
        `views` views' entries inside the block: a batch or an evaluation asks every question of a tile in one
        call and never comes back to it, so anything past the views a call (or two calls at once) holds is
        memory the run never reads again, host or GPU memory the models need. The service keeps its caches
        whole: its users do ask again."""
        with ExitStack() as stack:
            for seg in self.segmenters.values():
                stack.enter_context(seg.bounded_cache(views))
            # a view's vision features and its prompt prefix are two entries of the reasoner's map
            stack.enter_context(self.reasoner.views.bounded_to(2 * views))
            yield

    def prepare(self, tile: RasterTile) -> ModelInput:
        """The tile's `ModelInput`. Batch runs make it on their read-ahead thread (`tiling.read_ahead`), so
        the resize is off the path that waits for the models."""
        t0 = time.perf_counter()
        key = image_key(tile.rgb)
        sam_input = self.segmenter.input_ahead(tile.rgb, key)
        image = to_model_image(tile.rgb, self.reasoner.frame)
        return ModelInput(image, key, time.perf_counter() - t0, sam_input)

    def segment(
        self,
        source,
        query: str,
        options: SegmentOptions | dict | None = None,
        cancelled: Callable[[], bool] | None = None,
        on_token: Callable[[int, int], None] | None = None,
    ) -> SegmentResult:
        """One image, one question (`segment_tiles` says what `cancelled` and `on_token` do)."""
        opts = options if isinstance(options, SegmentOptions) else SegmentOptions.from_dict(options)
        query = check_query(query)
        t0 = time.perf_counter()
        tile = self.load_tile(source, opts)
        read_s = time.perf_counter() - t0
        result = self.segment_tiles([tile], [query], opts, cancelled=cancelled, on_token=on_token)[0]
        result.timings = {"read": read_s, **result.timings}
        return result

    def segment_tiles(
        self,
        tiles: list[RasterTile],
        queries: list[str],
        options: SegmentOptions | None = None,
        cancelled=None,
        geometry_frame: str = "crs",
        inputs: Sequence[ModelInput] | None = None,
        query_as_written: bool = False,
        on_pair: Callable[[int], None] | None = None,
        on_token: Callable[[int, int], None] | None = None,
    ) -> list[SegmentResult]:
        """Answer (tile, query) pairs: one batched generate, then SAM2 per tile (embedding reused).

        `on_pair(k)` is called as pair `k`'s answer is complete (after SAM2), so a caller can report progress
        within the batch (the tiled run: tile by tile). `on_token(n, budget)` is called as the reasoner writes its
        n-th token of at most `budget` (reasoning and forced answer): on a CPU that is minutes. `cancelled()` is
        asked after every token and between pairs: true, the generation stops there and `Cancelled` is raised.

        `geometry_frame="raster_pixels"` gives instance geometries in the source raster's pixel frame (tiled
        runs); the default gives them in the CRS. `inputs`: the tiles' `prepare`d inputs, one per pair (made
        ahead); without them each distinct tile object is prepared here, once for all its queries.
        `query_as_written`: the queries keep their surrounding blanks (`check_query`; the reference evaluation).
        """
        opts = options or SegmentOptions()
        queries = [check_query(q, as_written=query_as_written) for q in queries]
        segmenter = self.segmenter_for(opts.sam_size)
        if inputs is None:
            made: dict[int, ModelInput] = {}
            for t in tiles:
                if id(t) not in made:
                    made[id(t)] = self.prepare(t)
            inputs = [made[id(t)] for t in tiles]
        elif len(inputs) != len(tiles):
            raise ValueError(f"{len(inputs)} model inputs for {len(tiles)} tiles")
        n = len(tiles)
        keys = [i.key for i in inputs]
        # each distinct input's seconds, shared by the pairs that use it
        preprocess = sum({id(i): i.seconds for i in inputs}.values()) / max(1, n)
        budget = opts.max_reasoning_tokens + opts.answer_budget
        watch = None
        if on_token is not None or cancelled is not None:

            def watch(n: int) -> bool:
                if on_token is not None:
                    on_token(n, budget)
                return cancelled is not None and cancelled()

        t_pre = time.perf_counter()
        outs = self.reasoner.generate_images(
            [i.image for i in inputs],
            queries,
            max_reasoning_tokens=opts.max_reasoning_tokens,
            answer_budget=opts.answer_budget,
            constrain_answer=opts.constrain_answer,
            keys=keys,
            on_token=watch,
        )
        t_gen = time.perf_counter()
        results = []
        for tile, inp, query, out in zip(tiles, inputs, queries, outs):
            if cancelled is not None and cancelled():
                from .errors import Cancelled

                raise Cancelled("The job was cancelled.")
            results.append(
                self._finish(
                    segmenter,
                    tile,
                    inp,
                    query,
                    out,
                    opts,
                    geometry_frame,
                    {
                        "preprocess": preprocess,
                        "reasoner": (t_gen - t_pre) / n,
                    },
                )
            )
            if on_pair is not None:
                on_pair(len(results) - 1)
        return results

    def _finish(
        self,
        segmenter: Segmenter,
        tile: RasterTile,
        inp: ModelInput,
        query: str,
        out,
        opts: SegmentOptions,
        geometry_frame: str,
        timings: dict,
    ) -> SegmentResult:
        t0 = time.perf_counter()
        frame = self.reasoner.frame
        parsed = parse_answer(out.text, frame, frame, mode=opts.parse_mode)
        h, w = tile.shape
        pixel_instances = [inst.scaled(w / frame, h / frame) for inst in parsed.instances]
        t1 = time.perf_counter()
        if pixel_instances:
            segmenter.set_image(tile.rgb, inp.key, given=inp.sam_input if segmenter is self.segmenter else None)
            masks = segmenter.predict(pixel_instances, (h, w))
        else:
            masks = None
        t2 = time.perf_counter()
        in_pixels = geometry_frame == "raster_pixels"
        to_geometry = tile.to_source_pixel if in_pixels else tile.transform
        instances = []
        for k, inst in enumerate(pixel_instances):
            mask = masks.instances[k]
            if tile.valid is not None:
                mask = mask & tile.valid  # nothing is found where the raster has no data
            geom = mask_to_multipolygon(mask, to_geometry, opts.min_area_pixels) if opts.polygonise else MultiPolygon()
            area = (
                pixel_geometry_area(geom, raster_transform(tile), tile.crs) if in_pixels and not geom.is_empty else None
            )
            instances.append(InstanceResult.from_prompt(k, inst, tile, geom, masks.scores[k], area))
        merged = masks.merged if masks is not None else np.zeros((h, w), dtype=bool)
        if tile.valid is not None:
            merged = merged & tile.valid
        t3 = time.perf_counter()
        status = parsed.status
        result = SegmentResult(
            query=query,
            status=status,
            message="",
            reasoning=parsed.reasoning,
            answer=out.text,
            instances=instances,
            tile=tile,
            models=self.provenance(opts),
            merged_mask=merged,
            timings={**timings, "parse": t1 - t0, "segmenter": t2 - t1, "polygonise": t3 - t2},
            geometry_frame=geometry_frame,
            view_id=inp.key,
        )
        result.message = describe(status, len(instances), result.area, area_unit(tile.crs), parsed.reason)
        if out.forced_answer:
            result.message += " (The reasoning budget ran out; the answer was forced.)"
        return result
