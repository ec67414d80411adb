"""`think2seg batch -q TEXT RASTER... -o OUT.gpkg`: every query on every tile of many rasters, one output.

    think2seg batch -q "the wetlands that hold water all year" scenes/*.tif -o wetlands.gpkg
    think2seg batch --queries questions.txt scenes/ -o answers.parquet --tile-size 1024 --overlap 128
    think2seg batch -q "..." big.tif -o out.gpkg --resume          # continue an interrupted run
    think2seg batch -q "..." scenes/ -o out.gpkg --ray auto         # on a Ray cluster (GPU actors)

Output: OUT.gpkg (layers mask, prompt_points, prompt_boxes) or OUT.parquet (GeoParquet, one file per
layer), in one CRS (`--crs`, default the first raster's; others are reprojected), every feature with its
raster and tile; OUT.summary.json beside it. Bad rasters are reported and skipped.

Exit status: 0 when the batch ran (rasters that failed, if any, are listed in the summary and skipped;
`--strict` turns that into 3); 2 when no raster could be processed or the arguments are wrong; 1 when
something stopped the whole batch (models that cannot load); 130 when interrupted (the state is kept:
rerun with --resume).
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    from . import add_model_options

    p = sub.add_parser(
        "batch",
        help="run queries over many rasters of any size (tiled, resumable) into one GeoPackage/GeoParquet",
        description="Every query on every tile of every raster; features carry their raster and tile.",
        epilog="exit status: 0 done (failed rasters are listed and skipped), 3 with --strict when some failed, "
        "2 nothing could be processed or bad arguments, 1 a stopping error, 130 interrupted (use --resume)",
    )
    p.add_argument("rasters", nargs="+", help="rasters GDAL reads, or folders of them (any size: they are tiled)")
    p.add_argument("--query", "-q", action="append", default=[], help="a query (repeat for several)")
    p.add_argument("--queries", default=None, metavar="FILE", help="a text file with one query per line")
    p.add_argument("--output", "-o", required=True, help="OUT.gpkg (GeoPackage) or OUT.parquet (GeoParquet)")
    g = p.add_argument_group("tiling")
    g.add_argument(
        "--tile-size", type=int, default=1024, help="tile side in pixels as the model sees it (default 1024)"
    )
    g.add_argument(
        "--overlap", type=int, default=128, help="overlap between neighbouring tiles in pixels (default 128)"
    )
    g.add_argument(
        "--gsd",
        type=float,
        default=None,
        help="read at this ground sample distance (CRS units a pixel, e.g. 1.0 m) instead of native resolution",
    )
    g.add_argument("--batch-size", type=int, default=4, help="tiles sent together to the model (default 4)")
    p.add_argument(
        "--max-reasoning-tokens", type=int, default=1024, help="budget for the model's reasoning (default 1024)"
    )
    p.add_argument("--bands", default=None, help="bands to show the model as R,G,B (e.g. 4,1,2) or one band")
    p.add_argument("--min-area-pixels", type=float, default=16, help="drop regions smaller than this (tile pixels)")
    p.add_argument(
        "--constrain-answer",
        action="store_true",
        help="constrain the answer block to the prompt's JSON shape (needs xgrammar); the reasoning "
        "stays free. Off by default: measured so far only with an unfitted tiny model (README)",
    )
    p.add_argument(
        "--crs", default=None, help="output CRS (default: the first raster's); other rasters are reprojected"
    )
    s = p.add_argument_group("resuming")
    s.add_argument(
        "--resume", action="store_true", help="continue an interrupted batch (finished tiles are not redone)"
    )
    s.add_argument("--state", default=None, metavar="DIR", help="state folder (default OUT.state)")
    s.add_argument("--keep-state", action="store_true", help="keep the state folder after a complete run")
    p.add_argument("--strict", action="store_true", help="exit 3 when any raster failed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    r = p.add_argument_group("Ray")
    r.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="run on a Ray cluster: its address, 'auto', or 'local' for a Ray started here",
    )
    r.add_argument(
        "--ray-actors",
        type=int,
        default=None,
        help="model-holding actors (default: one per GPU of the cluster, else one)",
    )
    add_model_options(p)
    p.set_defaults(run=run)


def build_job(args: argparse.Namespace):
    from ..batch import RASTER_SUFFIXES, BatchJob, check_output, collect_rasters, read_queries
    from ..errors import BadInput
    from ..options import SegmentOptions
    from ..tiling.grid import Tiling
    from .segment import parse_bands

    rasters = collect_rasters(args.rasters)
    if not rasters:
        raise BadInput(
            f"No rasters in {', '.join(args.rasters)} (a folder stands for the {', '.join(RASTER_SUFFIXES)} "
            "files directly inside it): give rasters or a folder that has some.",
            code="no_rasters",
        )
    queries = read_queries(args.query, args.queries)
    check_output(args.output)
    opts = SegmentOptions.from_dict(
        {
            "max_reasoning_tokens": args.max_reasoning_tokens,
            "bands": parse_bands(args.bands),
            "min_area_pixels": args.min_area_pixels,
            "constrain_answer": args.constrain_answer,
        }
    )
    return BatchJob(
        rasters=rasters,
        queries=queries,
        output=args.output,
        options=opts,
        tiling=Tiling(args.tile_size, args.overlap, args.gsd, args.batch_size),
        crs=args.crs,
        resume=args.resume,
        state_dir=args.state,
        keep_state=args.keep_state,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    from ..batch import exit_code, model_ids, run_batch
    from . import check_models, load_pipeline
    from .segment import check_device

    job = build_job(args)
    check_device(args.device)
    check_models(args)
    ids = model_ids(args.model, args.sam, args.sam_size)
    try:
        if args.ray:
            from ..cluster import RayModels, run_batch_ray

            summary = run_batch_ray(
                args.ray,
                job,
                RayModels(args.model, args.sam, args.sam_size, args.device, args.decoding, args.compile),
                actors=args.ray_actors,
                models=ids,
            )
        else:
            summary = run_batch(lambda: load_pipeline(args), job, models=ids)
    except KeyboardInterrupt:
        print(
            f"think2seg: interrupted; finished tiles are kept in {job.state_dir}: rerun with --resume.", file=sys.stderr
        )
        raise
    print(summary.format())
    return exit_code(summary, args.strict)
