"""End to end with real models: the tiny Qwen2.5-VL (fitted to a known answer) -> parser -> SAM2.1 -> CRS.

The tiny reasoner always answers box (210, 168, 630, 504) and points (420, 336), (315, 420) in the 840 x 840
frame, so where the prompts land in the raster's CRS can be computed by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import box as shapely_box
from think2seg.testing.tiny_models import KNOWN_BOX, KNOWN_COMPLETION, KNOWN_POINTS, KNOWN_REASONING

pytestmark = pytest.mark.slow


def test_known_answer_lands_at_hand_computed_crs_coordinates(tiny_pipeline, naip):
    r = tiny_pipeline.segment(str(naip), "the wetlands that hold water all year")
    assert r.answer == KNOWN_COMPLETION and r.reasoning == KNOWN_REASONING
    assert r.status == "ok" and len(r.instances) == 1
    inst = r.instances[0]
    # NAIP: 934 x 723 px, 5 m, origin (485899, 5209246). Frame -> tile: x * 934 / 840, y * 723 / 840.
    # (420, 336) -> (467.0, 289.2) px -> (485899 + 5 * 467.0, 5209246 - 5 * 289.2) = (488234.0, 5207800.0)
    # (315, 420) -> (350.25, 361.5) px -> (487650.25, 5207438.5)
    assert inst.points_crs == [
        [pytest.approx(488234.0), pytest.approx(5207800.0)],
        [pytest.approx(487650.25), pytest.approx(5207438.5)],
    ]
    # box (210, 168, 630, 504) -> (233.5, 144.6, 700.5, 433.8) px -> x 487066.5..489401.5, y 5207077..5208523
    assert inst.box_pixel == pytest.approx([233.5, 144.6, 700.5, 433.8])
    ring = np.array(inst.box_crs)
    assert ring[0].tolist() == [pytest.approx(487066.5), pytest.approx(5208523.0)]
    assert ring[2].tolist() == [pytest.approx(489401.5), pytest.approx(5207077.0)]
    # the mask comes from SAM2 and lies inside the raster, in its CRS
    raster = shapely_box(485899, 5209246 - 5 * 723, 485899 + 5 * 934, 5209246)
    assert not inst.geometry.is_empty and inst.geometry.is_valid
    assert raster.buffer(1e-6).contains(inst.geometry)
    assert r.crs.to_epsg() == 26914
    assert r.area == pytest.approx(inst.area) and r.area > 0
    assert set(r.timings) >= {"read", "preprocess", "reasoner", "parse", "segmenter", "polygonise"}


def test_sam2_received_the_scaled_prompts(tiny_pipeline, naip):
    """The instance mask is exactly what SAM2 draws for the prompts scaled to tile pixels."""
    from think2seg.georef import read_tile
    from think2seg.prompts import PromptInstance

    tile = read_tile(naip)
    r = tiny_pipeline.segment(tile, "anything at all")
    h, w = tile.shape
    scaled = PromptInstance(KNOWN_BOX, KNOWN_POINTS).scaled(w / 840, h / 840)
    direct = tiny_pipeline.segmenter.segment(tile.rgb, [scaled])
    assert tile.valid is None  # NAIP has nodata 0 but no empty pixels
    assert direct.merged.any() and np.array_equal(r.merged_mask, direct.merged)


def test_batched_tiles_one_generate_call(tiny_pipeline, naip, landsat):
    from think2seg.georef import read_tile
    from think2seg.options import SegmentOptions

    tiles = [read_tile(naip), read_tile(landsat)]
    results = tiny_pipeline.segment_tiles(
        tiles, ["the ponds", "the river valley and every town along it"], SegmentOptions()
    )
    assert [r.status for r in results] == ["ok", "ok"]
    assert results[1].crs.to_epsg() == 32618
    # Landsat: 300.0379 m pixels; the first point (420, 336) of the frame is at the tile's centre-left
    x, y = results[1].instances[0].points_crs[0]
    assert x == pytest.approx(101985.0 + 300.0379266750948 * 420 * 791 / 840, abs=1e-3)
    assert y == pytest.approx(2826915.0 - 300.041782729805 * 336 * 718 / 840, abs=1e-3)


def test_a_tile_asked_several_queries_is_prepared_once(tiny_pipeline, naip, monkeypatch):
    """segment_tiles resizes and hashes a tile once for all its queries, and inputs made ahead (`prepare`, as
    batch's read-ahead thread makes them) give the same answers as inputs made inside."""
    import think2seg.pipeline as pipeline_mod
    from think2seg.georef import read_tile

    tile = read_tile(naip)
    calls = []
    real = pipeline_mod.to_model_image
    monkeypatch.setattr(pipeline_mod, "to_model_image", lambda rgb, frame: calls.append(rgb.shape) or real(rgb, frame))
    queries = ["the ponds", "the fields"]
    inside = tiny_pipeline.segment_tiles([tile, tile], queries)
    assert len(calls) == 1
    made = tiny_pipeline.prepare(tile)
    ahead = tiny_pipeline.segment_tiles([tile, tile], queries, inputs=[made, made])
    assert len(calls) == 2
    assert [r.answer for r in ahead] == [r.answer for r in inside]
    assert all(np.array_equal(a.merged_mask, b.merged_mask) for a, b in zip(ahead, inside))
    assert [r.view_id for r in ahead] == [made.key] * 2
    assert ahead[0].timings["preprocess"] == pytest.approx(made.seconds / 2)


def test_sam2_input_made_ahead_gives_the_same_masks(tiny_pipeline, naip, monkeypatch):
    """On CUDA SAM2's input is made on a thread while the reasoner answers (Segmenter.input_ahead): forced on
    here, SAM2's own transforms run once, on that thread, not again in set_image, and the masks and scores are
    those of SAM2 transforming the image itself."""
    import threading

    import torch
    from think2seg.georef import read_tile

    seg = tiny_pipeline.segmenter
    threads = []

    class Recording:
        def __init__(self, real):
            self.real = real

        def __call__(self, image):
            threads.append(threading.current_thread().name)
            return self.real(image)

        def __getattr__(self, name):  # predict's coordinate and mask transforms
            return getattr(self.real, name)

    recording = Recording(seg._transforms)
    monkeypatch.setattr(seg.predictor, "_transforms", recording)
    monkeypatch.setattr(seg, "_transforms", recording)
    tile = read_tile(naip)

    def fresh_answer(ahead):
        monkeypatch.setattr(seg, "input_ahead_enabled", ahead)
        seg.clear_cache()
        seg.predictor.reset_predictor()
        seg._embedded_key = None
        threads.clear()
        return tiny_pipeline.segment(tile, "the ponds")

    itself = fresh_answer(False)
    assert threads == ["MainThread"]
    ahead = fresh_answer(True)
    assert threads == ["think2seg-sam-input_0"]
    assert ahead.instances and np.array_equal(ahead.merged_mask, itself.merged_mask)
    assert [i.score for i in ahead.instances] == [i.score for i in itself.instances]
    assert tiny_pipeline.prepare(tile).sam_input is None  # its embedding is at hand: nothing to make
    # a batch's read-ahead thread makes the next tile's input while set_image holds another's in SAM2's place
    seg.predictor._transforms = object()
    other = np.ascontiguousarray(tile.rgb[::-1])
    made = seg.input_ahead(other).result()
    seg.predictor._transforms = recording
    assert torch.equal(made, recording.real(other))


def test_nodata_is_never_part_of_the_mask(tiny_pipeline, landsat):
    from think2seg.georef import read_tile

    tile = read_tile(landsat)
    assert tile.valid is not None and not tile.valid.all()
    r = tiny_pipeline.segment(tile, "the river")
    assert r.merged_mask.any()
    assert not (r.merged_mask & ~tile.valid).any()


def test_reasoning_budget_forces_an_answer_block(tiny_pipeline, naip):
    r = tiny_pipeline.segment(str(naip), "the wetlands", {"max_reasoning_tokens": 16})
    assert "<answer>" in r.answer and "</think>" in r.answer
    assert "budget ran out" in r.message


def test_plain_array_is_pixel_only(tiny_pipeline):
    arr = np.random.default_rng(1).integers(0, 255, (300, 420, 3), dtype=np.uint8)
    r = tiny_pipeline.segment(arr, "the bright field")
    assert r.crs is None and r.status == "ok"
    assert r.instances[0].points_crs[0] == pytest.approx([420 * 420 / 840, 336 * 300 / 840])
    d = r.to_dict()
    assert d["crs"] is None and d["area_unit"] == "pixels"


def test_penalties_and_sampling_in_the_checkpoint_change_nothing(tiny_models_dir, naip, tmp_path):
    """A model folder whose generation_config.json sets repetition_penalty, no_repeat_ngram_size and sampling
    (as Qwen2.5-VL checkpoints do, stronger) still puts the prompts at the exact CRS coordinates."""
    from think2seg.pipeline import Pipeline
    from think2seg.testing.tiny_models import copy_with_generation_config

    folder = copy_with_generation_config(tiny_models_dir / "reasoner", tmp_path / "reasoner")
    pipe = Pipeline.from_pretrained(str(folder), str(tiny_models_dir / "sam2.1_hiera_t.pt"), device="cpu")
    r = pipe.segment(str(naip), "the wetlands that hold water all year")
    assert r.answer == KNOWN_COMPLETION and r.status == "ok"
    inst = r.instances[0]
    assert inst.points_crs == [
        [pytest.approx(488234.0), pytest.approx(5207800.0)],
        [pytest.approx(487650.25), pytest.approx(5207438.5)],
    ]
    assert inst.box_pixel == pytest.approx([233.5, 144.6, 700.5, 433.8])
    # the answer's provenance says how it was decoded and read
    g = r.to_dict()["models"]
    assert g["parse_mode"] == "tolerant" and g["generation"]["repetition_penalty"] == 1.0
    assert g["generation"]["strategy"] == "greedy" and g["transformers"]


def test_box_only_and_points_only_instances_reach_sam2_and_the_answer(tiny_pipeline, naip):
    """SAM2 gets what an instance has; the answer carries box_crs null or no points."""
    from think2seg.georef import read_tile
    from think2seg.prompts import PromptInstance
    from think2seg.reasoner import ReasonerOutput
    from think2seg.result import layer_rows

    tile = read_tile(naip)
    text = (
        '<think>x</think><answer>```json[{"bbox_2d": [210, 168, 630, 504]}, '
        '{"positive_points": [[420, 336], [315, 420]]}]```</answer>'
    )
    from think2seg.options import SegmentOptions

    r = tiny_pipeline._finish(
        tiny_pipeline.segmenter,
        tile,
        tiny_pipeline.prepare(tile),
        "q",
        ReasonerOutput(text, 10, False),
        SegmentOptions(),
        "crs",
        {},
    )
    assert r.status == "ok" and len(r.instances) == 2
    box_only, points_only = r.instances
    assert box_only.points_crs == [] and box_only.box_crs is not None
    assert points_only.box_crs is None and points_only.box_pixel is None and len(points_only.points_crs) == 2
    h, w = tile.shape
    direct = tiny_pipeline.segmenter.segment(
        tile.rgb,
        [
            PromptInstance(KNOWN_BOX, ()).scaled(w / 840, h / 840),
            PromptInstance(None, KNOWN_POINTS).scaled(w / 840, h / 840),
        ],
    )
    assert np.array_equal(r.merged_mask, direct.merged)
    d = r.to_dict()
    assert d["instances"][1]["box_crs"] is None and d["instances"][0]["points_crs"] == []
    rows = layer_rows(r)
    assert len(rows["prompt_boxes"]) == 1 and len(rows["prompt_points"]) == 2
