"""How long one refine takes server-side: SAM2's decoder on a cached embedding, plus prompts and polygons.

    PYTHONPATH=backend .venv/bin/python scripts/refine_bench.py [--sam CHECKPOINT] [--device cpu] [--repeat 20]

Without --sam it builds a randomly initialised real-size sam2.1_hiera_tiny (`build_sam2(..., ckpt_path=None)`,
seed 0): the decoder's timing does not depend on the weights; the polygon step's does (see below). It reads
the NAIP sample as the view (as /v1/segment does), embeds it once, then times `refine_view` (what
POST /v1/views/{id}/refine runs inside the worker) for a sequence of
edits (box + points, a negative click, a new box), and once with the embedding evicted (the re-embed).

Random weights draw speckle-noise masks, whose hundreds of specks and ragged holes make polygonising far
costlier than a trained model's few smooth blobs. So the polygon step is also timed alone on a smooth
stand-in mask (the ellipse inscribed in the first edit's box: what a trained SAM2 returns for a pond, in
shape if not in place), and the round trip is reported both ways: as measured, and with that polygon time
in place of the noise mask's ("realistic mask").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sam", default=None, help="a SAM2.1 checkpoint (default: random real-size hiera_tiny)")
    ap.add_argument("--size", default="tiny", help="SAM2.1 size for the random build (tiny/small/base_plus/large)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--raster", default=str(ROOT / "resources" / "naip_prairie_potholes_2020.tif"))
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    from think2seg.cli import process_defaults

    process_defaults()  # as `think2seg serve` runs (passive OpenMP waits), set before torch loads
    import numpy as np
    import torch
    from think2seg.georef import read_tile
    from think2seg.polygons import mask_to_multipolygon
    from think2seg.reasoner import pick_device
    from think2seg.segmenter import Segmenter, image_key
    from think2seg.views import RefineRequest, View, refine_view

    t0 = time.perf_counter()
    if args.sam:
        seg = Segmenter.from_pretrained(args.sam, device=args.device)
    else:
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor
        from think2seg.weights import sam_size

        spec = sam_size(args.size)  # the config the published checkpoint uses
        dev = pick_device(args.device)
        torch.manual_seed(0)  # the same random weights, so the same noise masks, run after run
        model = build_sam2(spec.config, ckpt_path=None, device=str(dev), mode="eval")
        model.requires_grad_(False)
        seg = Segmenter(SAM2ImagePredictor(model), f"sam2.1_hiera_{spec.name} (random weights)", spec.name, dev)
    load_s = time.perf_counter() - t0

    tile = read_tile(args.raster)
    view = View(image_key(tile.rgb), tile, [0])
    h, w = tile.shape
    t0 = time.perf_counter()
    seg.set_image(tile.rgb, view.view_id)
    embed_s = time.perf_counter() - t0
    box = [w * 0.25, h * 0.2, w * 0.75, h * 0.6]
    edits = [
        RefineRequest(frame="pixel", box=box, positive_points=[(w * 0.5, h * 0.4), (w * 0.375, h * 0.5)], instance=0),
        RefineRequest(
            frame="pixel",
            box=box,
            positive_points=[(w * 0.5, h * 0.4)],
            negative_points=[(w * 0.375, h * 0.5)],
            instance=0,
        ),
        RefineRequest(frame="pixel", box=[w * 0.3, h * 0.25, w * 0.6, h * 0.5], positive_points=[(w * 0.5, h * 0.4)]),
        RefineRequest(frame="pixel", positive_points=[(w * 0.5, h * 0.4)]),
    ]
    refine_view(seg, view, edits[0])  # warm-up (first-call allocations)
    totals, decoders, polygons, cpu = [], [], [], []
    for k in range(args.repeat):
        c0 = time.process_time()
        out = refine_view(seg, view, edits[k % len(edits)])
        cpu.append(time.process_time() - c0)
        totals.append(out["timings"]["total"])
        decoders.append(out["timings"]["decoder"])
        polygons.append(out["timings"]["polygonise"])
        assert not out["reembedded"]
    # The smooth stand-in: the ellipse inscribed in the first edit's box (see the module's docstring).
    yy, xx = np.mgrid[0:h, 0:w]
    (x1, y1, x2, y2), cx, cy = box, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    ellipse = ((xx - cx) / ((x2 - x1) / 2)) ** 2 + ((yy - cy) / ((y2 - y1) / 2)) ** 2 <= 1
    smooth = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        mask_to_multipolygon(ellipse, tile.transform, view.min_area_pixels)
        smooth.append(time.perf_counter() - t)
    realistic = [t - p + statistics.median(smooth) for t, p in zip(totals, polygons)]
    # As if other answers had taken the segmenter and pushed this view out of its LRU: embedded again.
    seg.clear_cache()
    seg.predictor.reset_predictor()
    again = refine_view(seg, view, edits[1])

    def fmt(xs):
        xs = sorted(xs)
        return f"median {statistics.median(xs) * 1000:.1f} ms, p90 {xs[int(0.9 * (len(xs) - 1))] * 1000:.1f} ms"

    print(f"model: {seg.model_id} on {seg.device} ({torch.get_num_threads()} threads); built/loaded in {load_s:.2f} s")
    print(f"view: {Path(args.raster).name} {w}x{h}; image embedding {embed_s:.2f} s")
    print(f"refine (server side, no re-embed), {args.repeat} edits: {fmt(totals)}")
    print(f"  of which SAM2 prompt decoder:                     {fmt(decoders)}")
    print(f"  of which polygonise (the random weights' noise):  {fmt(polygons)}")
    print(f"polygonise a smooth mask (ellipse in the box):      {fmt(smooth)}")
    print(f"refine with a realistic mask (as measured, smooth polygonise): {fmt(realistic)}")
    # On a shared machine wall time includes waiting for a core; CPU time does not (all threads summed).
    print(f"refine CPU time (all threads): {fmt(cpu)}; load average {os.getloadavg()[0]:.1f}")
    print(
        f"refine after eviction (re-embed + decoder): {again['timings']['total']:.2f} s "
        f"(embed {again['timings']['embed']:.2f} s)"
    )
    return 0 if np.isfinite(statistics.median(totals)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
