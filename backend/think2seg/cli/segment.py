"""`think2seg segment RASTER --query TEXT -o OUT.gpkg`: one query on one raster, written as GIS layers."""

from __future__ import annotations

import argparse
import math
import sys
import time

from ..errors import BadInput


def add_parser(sub) -> None:
    from . import add_model_options

    p = sub.add_parser(
        "segment",
        help="answer one query on one raster and write the mask as polygons",
        description="Ask a question of a raster; write the answer's mask, prompt points and boxes.",
    )
    p.add_argument("raster", help="any raster GDAL reads (GeoTIFF, JPEG2000, VRT, PNG...)")
    p.add_argument("--query", "-q", required=True, help="what to find, e.g. 'the wetlands that hold water all year'")
    p.add_argument(
        "--output",
        "-o",
        required=True,
        help="OUT.gpkg (layers mask, prompt_points, prompt_boxes), OUT.geojson or OUT.parquet",
    )
    p.add_argument(
        "--max-reasoning-tokens", type=int, default=1024, help="budget for the model's reasoning (default 1024)"
    )
    p.add_argument("--bands", default=None, help="bands to show the model as R,G,B (e.g. 4,1,2) or one band (e.g. 1)")
    p.add_argument(
        "--max-read-size",
        type=int,
        default=2048,
        help="rasters larger than this (pixels, long side) are read resampled (default 2048)",
    )
    p.add_argument(
        "--bbox",
        default=None,
        help="read only this area: minx,miny,maxx,maxy in the raster's CRS (default the whole raster)",
    )
    p.add_argument(
        "--constrain-answer",
        action="store_true",
        help="constrain the answer block to the prompt's JSON shape (needs xgrammar); the reasoning "
        "stays free. Off by default: measured so far only with an unfitted tiny model (README)",
    )
    p.add_argument("--json", action="store_true", help="also print the whole result as JSON on stdout")
    add_model_options(p)
    p.set_defaults(run=run)


def parse_bands(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(b) for b in text.replace(" ", "").split(",") if b]
    except ValueError as e:
        raise BadInput(
            f"--bands takes band numbers separated by commas, e.g. 3,2,1 (got '{text}').", code="bad_bands"
        ) from e


def bbox_window(raster: str, bbox: str | None):
    """`minx,miny,maxx,maxy` in the raster's CRS -> a pixel window (None for the whole raster)."""
    if not bbox:
        return None
    from rasterio.windows import from_bounds

    from ..georef import open_raster

    try:
        minx, miny, maxx, maxy = (float(v) for v in bbox.split(","))
    except ValueError as e:
        raise BadInput(f"--bbox takes minx,miny,maxx,maxy (got '{bbox}').", code="bad_bbox") from e
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise BadInput(f"--bbox takes four finite numbers (got '{bbox}').", code="bad_bbox")
    if minx >= maxx or miny >= maxy:
        raise BadInput("--bbox must have minx < maxx and miny < maxy.", code="bad_bbox")
    with open_raster(raster) as ds:
        return from_bounds(minx, miny, maxx, maxy, transform=ds.transform).round_offsets().round_lengths()


def check_device(device: str | None) -> None:
    """A --device this machine has, told before anything loads (else torch's traceback, minutes later)."""
    from ..errors import BadInput

    name = (device or "auto").strip()
    if name in ("auto", "cpu"):
        return
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError:
        raise BadInput(f"--device {name} is not a device: use auto, cpu, cuda or cuda:N.", code="bad_device") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise BadInput(
                f"--device {name}: torch sees no CUDA GPU on this machine (torch {torch.__version__}, "
                f"CUDA {torch.version.cuda or 'not built in'}): use --device cpu, or auto.",
                code="bad_device",
            )
        if dev.index is not None and dev.index >= n:
            raise BadInput(
                f"--device {name}: this machine has {n} CUDA GPU(s), cuda:0 to cuda:{n - 1}.", code="bad_device"
            )


class TokenMeter:
    """The reasoner's tokens on one line of a terminal as it writes them (on a CPU an answer takes minutes of
    silence otherwise), redrawn at most every `every_s` seconds; nothing where stderr is no terminal (a log)."""

    def __init__(self, stream=None, every_s: float = 0.25):
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.on = self.stream.isatty()
        self.shown_at: float | None = None
        self.n = 0

    def __call__(self, n: int, budget: int) -> None:
        from ..options import tokens_text  # here: the CLI's parser starts without pydantic

        self.n = n
        now = time.monotonic()
        if self.on and (self.shown_at is None or now - self.shown_at >= self.every_s):
            self.shown_at = now
            self.stream.write(f"\rreasoning: {tokens_text(n)} written (at most {budget})")
            self.stream.flush()

    def close(self) -> None:
        if self.shown_at is not None:
            self.stream.write(f"\rreasoning: {self.n} tokens written{' ' * 16}\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    import json

    from ..georef import read_tile
    from ..options import SegmentOptions, check_query
    from ..output import check_output, write_results
    from . import check_models, load_pipeline

    # Check everything the user typed before loading models (which takes a while).
    check_device(args.device)
    check_models(args)
    query = check_query(args.query)
    check_output(args.output)
    opts = SegmentOptions.from_dict(
        {
            "max_reasoning_tokens": args.max_reasoning_tokens,
            "bands": parse_bands(args.bands),
            "max_read_size": args.max_read_size,
            "constrain_answer": args.constrain_answer,
        }
    )
    tile = read_tile(
        args.raster, bands=opts.bands, max_size=opts.max_read_size, window=bbox_window(args.raster, args.bbox)
    )
    if tile.read.get("mode") == "resampled":
        r = tile.read
        print(
            f"note: {r['width']} x {r['height']} px read resampled to {r['read_width']} x {r['read_height']} "
            "(use `think2seg batch --tile-size` for full resolution)",
            file=sys.stderr,
        )
    pipeline = load_pipeline(args)
    meter = TokenMeter()
    try:
        result = pipeline.segment(tile, query, opts, on_token=meter if meter.on else None)
    finally:
        meter.close()
    written = write_results([result], args.output)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    total = sum(result.timings.values())
    print(
        f"{result.message} Wrote {', '.join(sorted(set(written.values())))} in {total:.1f} s.",
        file=sys.stderr if args.json else sys.stdout,
    )
    return 0
