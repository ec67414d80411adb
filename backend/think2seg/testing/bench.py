"""CPU benchmark: where the time and the memory go, measured with the tiny models (`make bench`).

    python -m think2seg.testing.bench --tiny .cache/tiny-models [--sizes 2048,8192,20480] [--max-tiles 4]

Three tables, each saying what it measured:
1. per-stage times of one 1024 x 1024 tile through the whole pipeline (tiny reasoner + tiny SAM2.1 with
   random weights, CPU): read, preprocess, LVLM, parse, SAM2, polygonise, write;
2. everything that is not a model for one 1024 x 1024 tile (read, normalise, polygonise, georeference,
   write), median of several runs, against the 50 ms target;
3. big rasters: synthetic GeoTIFFs (tiled, compressed, written block by block) run through
   `segment_raster_tiled`, with the peak resident memory sampled while it runs. On 2 CPU cores a tile
   costs seconds with the tiny models (the SAM2 encoder always works at 1024 x 1024), so big sizes run
   either the first `--max-tiles` tiles of the native grid or the whole raster at a coarse `gsd`; each row
   names its mode. `--stand-in` adds a row per size over the *whole* native grid with the tiny reasoner and
   a threshold stand-in for SAM2 (the tiled path's own cost and memory, no SAM2).

The synthetic rasters and the stand-in segmenter come from think2seg.testing (the tests use them too); the
rest is the package's public API.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .scenes import make_geotiff
from .stand_in import StandInSegmenter


# -- measuring -----------------------------------------------------------------------------------------------
def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the lifetime peak is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRSS:
    """Samples this process's resident memory every `interval` seconds while in a `with` block."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.start = self.peak = 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.start


@contextmanager
def timed(into: dict, key: str):
    t0 = time.perf_counter()
    yield
    into[key] = into.get(key, 0.0) + time.perf_counter() - t0


def table(title: str, header: list[str], rows: list[list], note: str = "") -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    out = [f"\n## {title}", line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    if note:
        out.append(note)
    return "\n".join(out)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


# -- table 1: one tile through the whole pipeline -------------------------------------------------------------
def load_tiny(tiny: str | os.PathLike):
    from ..pipeline import Pipeline

    tiny = Path(tiny)
    return Pipeline.from_pretrained(str(tiny / "reasoner"), str(tiny / "sam2.1_hiera_t.pt"), device="cpu")


def with_stand_in_sam(pipeline):
    """The same tiny reasoner (loaded once) with the stand-in SAM2."""
    from ..pipeline import Pipeline

    return Pipeline(pipeline.reasoner, StandInSegmenter())


def bench_one_tile(pipeline, raster: Path, work: Path, tile: int = 1024, repeats: int = 2) -> list[list]:
    from rasterio.windows import Window

    from ..georef import read_tile
    from ..options import SegmentOptions
    from ..output import write_results

    opts = SegmentOptions(max_reasoning_tokens=256)
    runs = []
    for k in range(repeats):
        t: dict[str, float] = {}
        with timed(t, "read"):
            rt = read_tile(str(raster), window=Window(0, 0, tile, tile), max_size=None)
        res = pipeline.segment_tiles([rt], ["the water bodies"], opts)[0]
        t.update(res.timings)
        with timed(t, "write"):
            write_results([res], work / f"one_tile_{k}.gpkg")
        runs.append(t)
    stages = [
        ("read", "read (window, GeoTIFF)"),
        ("preprocess", "preprocess (resize to 840)"),
        ("reasoner", "LVLM (processor + generate)"),
        ("parse", "parse"),
        ("segmenter", "SAM2 (encoder + decoder)"),
        ("polygonise", "polygonise"),
        ("write", "write (GPKG)"),
    ]
    rows = [[label, ms(runs[0].get(key, 0.0)), ms(runs[-1].get(key, 0.0))] for key, label in stages]
    rows.append(
        ["total", ms(sum(runs[0].get(k, 0) for k, _ in stages)), ms(sum(runs[-1].get(k, 0) for k, _ in stages))]
    )
    return rows


# -- table 2: all that is not a model -------------------------------------------------------------------------
def bench_non_model(raster: Path, work: Path, tile: int = 1024, repeats: int = 7) -> list[list]:
    from rasterio.windows import Window

    from ..georef import area_unit, read_tile, to_uint8
    from ..output import LayerWriter, write_results
    from ..polygons import mask_to_multipolygon
    from ..prompts import PromptInstance
    from ..reasoner import to_model_image
    from ..result import InstanceResult, SegmentResult, describe, layer_rows

    keys = ("read", "stretch", "resize", "polygonise", "georeference", "write", "write_share")
    times: dict[str, list[float]] = {k: [] for k in keys}
    inst = PromptInstance((256.0, 256.0, 768.0, 768.0), ((512.0, 512.0), (400.0, 600.0)))
    u16 = None
    for k in range(repeats):
        t0 = time.perf_counter()
        rt = read_tile(str(raster), window=Window(0, 0, tile, tile), max_size=None)
        read_s = time.perf_counter() - t0
        if u16 is None:  # the same pixels as 16-bit (band by band, as GDAL reads them): the stretch they need
            u16 = np.ascontiguousarray(np.transpose(rt.rgb, (2, 0, 1)), dtype=np.uint16) * 40
        t1 = time.perf_counter()
        to_uint8(u16, None)
        t2 = time.perf_counter()
        to_model_image(rt.rgb)
        mask = (rt.rgb[..., 2] > 140) & (rt.rgb[..., 0] < 70)  # stands in for SAM2's mask: not timed
        t3 = time.perf_counter()
        geom = mask_to_multipolygon(mask, rt.transform)
        t4 = time.perf_counter()
        ir = InstanceResult.from_prompt(0, inst, rt, geom, 1.0)
        res = SegmentResult(
            query="water",
            status="ok",
            message="",
            reasoning="r",
            answer="a",
            instances=[ir],
            tile=rt,
            timings={},
            models={"reasoner": "tiny", "segmenter": "stand-in"},
        )
        res.message = describe("ok", 1, res.area, area_unit(rt.crs), "")
        t5 = time.perf_counter()
        write_results([res], work / f"non_model_{k}.gpkg")
        t6 = time.perf_counter()
        # batch writes a raster's rows once: a tile's share of writing 16 tiles' rows to one GeoPackage
        writer = LayerWriter(work / f"non_model_batch_{k}.gpkg", rt.crs.to_wkt() if rt.crs else None)
        rows = layer_rows(res)
        for name in rows:
            writer.write(name, list(rows[name]) * 16)
        writer.close()
        share = (time.perf_counter() - t6) / 16
        for key, dt in zip(keys, (read_s, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, share)):
            times[key].append(dt)
    labels = {
        "read": f"read ({tile} x {tile} window of a tiled deflate GeoTIFF, 8-bit)",
        "stretch": "normalise: percentile stretch to 8-bit (16-bit rasters only; lookup table)",
        "resize": "normalise: resize to the 840 x 840 model frame (LANCZOS, 2 threads)",
        "polygonise": "polygonise (mask -> simplified polygons in the CRS)",
        "georeference": "georeference (box/points/areas in the CRS, the result sentence)",
        "write": "write (GPKG: mask, points, boxes): one tile, a whole file (`segment`)",
        "write_share": "write: one tile's share of a batch's GeoPackage (16 tiles' rows, one file)",
    }
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [[labels[k], ms(med[k])] for k in keys]
    base = sum(v for k, v in med.items() if k not in ("stretch", "write", "write_share"))
    for label, total in (
        ("8-bit raster, one tile (`segment`)", base + med["write"]),
        ("8-bit raster, per tile in `batch`", base + med["write_share"]),
        ("16-bit raster, per tile in `batch` (with the stretch)", base + med["stretch"] + med["write_share"]),
    ):
        rows.append([f"total, {label} (target < 50 ms)", f"{ms(total)} {'OK' if total < 0.05 else 'OVER'}"])
    # batch reads, stretches and resizes the next batch on its read-ahead thread while the models answer this
    # one (tiling.read_ahead): what is left between two model calls
    waits = med["polygonise"] + med["georeference"] + med["write_share"]
    rows.append(
        ["of which on the path that waits for the models in `batch` (the rest runs on the read thread)", ms(waits)]
    )
    return rows


# -- table 3: big rasters --------------------------------------------------------------------------------------
def coarse_gsd(size: int, tile: int, overlap: int, pixel_size: float, per_axis: int = 2) -> float:
    """A gsd whose grid has `per_axis` tiles along a `size`-pixel side."""
    scale = size / (per_axis * tile - (per_axis - 1) * overlap) * 1.01
    return max(1.0, scale) * pixel_size


def bench_big(
    pipeline,
    sizes: list[int],
    work: Path,
    tile: int,
    overlap: int,
    max_tiles: int,
    stand_in_pipeline=None,
    log=print,
    coarse_per_axis: int = 2,
) -> list[list]:
    from ..tiling import Tiling, segment_raster_tiled

    pixel = 0.5
    rows = []
    for size in sizes:
        path = work / f"big_{size}.tif"
        t0 = time.perf_counter()
        with PeakRSS():
            make_geotiff(path, size, size, pixel_size=pixel)
        gen_s = time.perf_counter() - t0
        mb = path.stat().st_size / 1e6
        log(f"  {size} x {size}: written in {gen_s:.1f} s ({mb:.0f} MB on disk, {size * size * 3 / 2**20:.0f} MiB raw)")
        runs = []
        if size <= 2 * tile:
            runs.append(("native, all tiles, tiny models", pipeline, None, None))
        else:
            runs.append((f"native, first {max_tiles} tiles, tiny models", pipeline, None, max_tiles))
            runs.append(
                (
                    "coarse gsd (whole raster), tiny models",
                    pipeline,
                    coarse_gsd(size, tile, overlap, pixel, coarse_per_axis),
                    None,
                )
            )
        if stand_in_pipeline is not None:
            runs.append(("native, all tiles, tiny LVLM + stand-in SAM2", stand_in_pipeline, None, None))
        for mode, pipe, gsd, limit in runs:
            t0 = time.perf_counter()
            with PeakRSS() as mem:
                res = segment_raster_tiled(
                    pipe,
                    path,
                    ["the water bodies"],
                    {"max_reasoning_tokens": 256},
                    Tiling(tile, overlap, gsd, batch_size=2),
                    max_tiles=limit,
                )
            dt = time.perf_counter() - t0
            st = res.stats
            side = int(round(tile * res.grid.scale))
            rows.append(
                [
                    f"{size} x {size}",
                    mode,
                    f"{res.grid.gsd or pixel:g} m ({side} px windows)",
                    f"{st['tiles_run']} of {st['tiles']}",
                    f"{dt:.1f} s",
                    f"{dt / max(1, st['tiles_run']):.2f} s",
                    f"{gen_s:.1f} s",
                    mib(mem.peak),
                    f"+{mib(mem.growth)}",
                    f"{st['max_read_pixels'] / 1e6:.2f} Mpx",
                ]
            )
            log(f"    {mode}: {dt:.1f} s, peak RSS {mib(mem.peak)} (+{mib(mem.growth)})")
        path.unlink()
    return rows


# -- main ----------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m think2seg.testing.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", default=".cache/tiny-models", help="folder of the tiny models (make tiny-models)")
    p.add_argument("--sizes", default="2048,8192,20480", help="big raster sides in pixels, comma-separated")
    p.add_argument("--tables", default="1,2,3", help="which tables to run (1,2,3)")
    p.add_argument("--tile-size", type=int, default=1024)
    p.add_argument("--overlap", type=int, default=128)
    p.add_argument("--max-tiles", type=int, default=4, help="native-grid tiles run on rasters larger than 2 tiles")
    p.add_argument("--coarse-tiles", type=int, default=2, help="tiles per side in the coarse-gsd mode (default 2)")
    p.add_argument("--repeats", type=int, default=7, help="runs of table 2 (median)")
    p.add_argument("--stand-in", action="store_true", help="table 3: also the whole native grid with a stand-in SAM2")
    p.add_argument("--workdir", default=None, help="where to write the rasters (default: a temporary folder)")
    args = p.parse_args(argv)
    from ..cli import process_defaults

    process_defaults()
    import torch

    tables = {int(t) for t in args.tables.split(",") if t.strip()}
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(
        f"# think2seg CPU benchmark: {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    print(f"# models: tiny random-weight Qwen2.5-VL ({args.tiny}/reasoner) and SAM2.1 tiny; times are CPU times of")
    print("# the tiny models and measure the code path, not the published models' speed (see scripts/gpu_bench.py).")
    with tempfile.TemporaryDirectory(prefix="think2seg-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        needs_models = bool(tables & {1, 3})
        pipeline = load_tiny(args.tiny) if needs_models else None
        tile_raster = make_geotiff(work / "tile.tif", 2048, 2048, discs=[(600, 500, 250), (200, 900, 80)])
        if 1 in tables:
            rows = bench_one_tile(pipeline, tile_raster, work, args.tile_size)
            print(
                table(
                    f"1. One {args.tile_size} x {args.tile_size} tile, whole pipeline, tiny models on CPU",
                    ["stage", "first call", "warm call"],
                    rows,
                    "(LVLM: the tiny reasoner's ~90-token answer; SAM2: tiny, random weights, one instance)",
                )
            )
        if 2 in tables:
            rows = bench_non_model(tile_raster, work, args.tile_size, args.repeats)
            print(
                table(
                    f"2. Everything that is not a model, one {args.tile_size} x {args.tile_size} tile "
                    f"(median of {args.repeats})",
                    ["stage", "time"],
                    rows,
                )
            )
        if 3 in tables and sizes:
            print("\n(table 3: generating and running big rasters ...)", flush=True)
            stand_in = with_stand_in_sam(pipeline) if args.stand_in else None
            rows = bench_big(
                pipeline,
                sizes,
                work,
                args.tile_size,
                args.overlap,
                args.max_tiles,
                stand_in,
                log=lambda m: print(m, flush=True),
                coarse_per_axis=args.coarse_tiles,
            )
            print(
                table(
                    "3. Big rasters through segment_raster_tiled (CPU)",
                    [
                        "raster",
                        "mode",
                        "gsd",
                        "tiles run",
                        "time",
                        "per tile",
                        "write raster",
                        "peak RSS",
                        "RSS growth",
                        "largest read",
                    ],
                    rows,
                    f"(tile {args.tile_size}, overlap {args.overlap}, batch 2; peak RSS sampled every 10 ms "
                    "includes the loaded models; growth = peak minus RSS before the run; largest read = "
                    "the biggest array read, in tile pixels)",
                )
            )
    print(f"\nprocess peak RSS (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
