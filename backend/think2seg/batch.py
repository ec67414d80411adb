"""Batch runs: the same queries over many rasters of any size, one output, a summary, resumable.

Each raster goes through `tiling.segment_raster_tiled` (or, with Ray, `cluster.run_batch_ray`, which fills
the same state folder). A raster that cannot be read is reported and skipped, never a crash.

The state folder (default `OUT.state/`, next to the output) holds `batch.json` (what the batch is, each
raster's status) and one folder per raster (`rasters/<name>-<hash>/`: the tiled run's state and, once the
raster is done, `result.json` with its features). The output file is written at the end from the finished
rasters, to a temporary name and then renamed, so it is never half-written. A rerun with `resume=True` skips
finished rasters and finished tiles and retries failed rasters.

Output CRS: every feature is written in one CRS, the `crs` asked for or else the CRS of the first raster
that opens; rasters in another CRS are reprojected (vertices through PROJ), their areas measured in their
own CRS first. One layer per CRS would leave QGIS users with several layers for one question, and
GeoParquet has one CRS per file. Rasters without georeferencing can only be batched together (pixel
coordinates, `area_px`); mixed with georeferenced ones they fail with a sentence.

Layers (GeoPackage) or files (GeoParquet: OUT.parquet, OUT.prompt_points.parquet, OUT.prompt_boxes.parquet):
the tiled result layers of think2seg.result, written by think2seg.output.LayerWriter.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import shapely

from .errors import BadInput, Cancelled, Think2SegError
from .output import LayerWriter
from .result import LAYERS, TiledResult, layer_rows, utc_now
from .tiling.grid import TileGrid, Tiling
from .tiling.run import segment_raster_tiled
from .tiling.state import fingerprint, raster_identity, state_key, write_json

OUTPUT_SUFFIXES = (".gpkg", ".parquet")
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".png", ".jpg", ".jpeg")


# -- inputs ----------------------------------------------------------------------------------------------------
def collect_rasters(paths: Sequence[str]) -> list[str]:
    """The rasters named, a folder standing for the rasters directly inside it; duplicates once."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(str(f) for f in Path(p).iterdir() if f.suffix.lower() in RASTER_SUFFIXES and f.is_file())
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def read_queries(queries: Sequence[str] | None, queries_file: str | None = None) -> list[str]:
    """`--query` values, then the lines of `--queries FILE` (blank lines and # comments skipped)."""
    from .options import check_query

    qs = list(queries or [])
    if queries_file:
        try:
            lines = Path(queries_file).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise BadInput(f"Cannot read the queries file {queries_file} ({e.strerror}).", code="bad_queries") from e
        qs += [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not qs:
        raise BadInput("Give at least one --query or a --queries file.", code="empty_query")
    return list(dict.fromkeys(check_query(q) for q in qs))


def check_output(output: str) -> str:
    """A batch writes OUT.gpkg (GeoPackage) or OUT.parquet (GeoParquet)."""
    from .output import check_output as check_format

    check_format(output, OUTPUT_SUFFIXES)
    return output


# -- planning ---------------------------------------------------------------------------------------------------
@dataclass
class RasterPlan:
    path: str
    key: str
    grid: TileGrid

    @property
    def crs_wkt(self) -> str | None:
        return self.grid.crs.to_wkt() if self.grid.crs else None


def failure(path: str, error: BaseException, stage: str) -> dict:
    if isinstance(error, Think2SegError):
        code, message = error.code, error.message
    else:  # an unexpected error on one raster must not stop the batch; its type and text say what
        code, message = "internal", f"{type(error).__name__}: {error}"
    return {"raster": path, "stage": stage, "code": code, "message": message}


def plan_rasters(
    paths: Sequence[str], tiling: Tiling, crs: str | None = None
) -> tuple[list[RasterPlan], list[dict], object]:
    """Open each raster's header and lay out its tiles (the one grid of each raster in this run); returns
    plans, failures and the output CRS."""
    import rasterio
    from rasterio.crs import CRS

    from .georef import open_raster

    target = None
    if crs:
        try:
            target = CRS.from_user_input(crs)
        except Exception as e:
            raise BadInput(f"--crs {crs} is not a CRS PROJ knows (try EPSG:4326 or a WKT file).", code="bad_crs") from e
    plans, failures = [], []
    for path in paths:
        try:
            with rasterio.Env(GDAL_CACHEMAX=64):
                ds = open_raster(path)
                try:
                    grid = tiling.grid(ds)
                finally:
                    ds.close()
        except BadInput as e:
            if e.code == "bad_options":  # the options are wrong for every raster: stop here
                raise
            failures.append(failure(path, e, "open"))
            continue
        except Exception as e:  # whatever a broken file raises, it is this raster's failure only
            failures.append(failure(path, e, "open"))
            continue
        plans.append(RasterPlan(path, state_key(path), grid))
    if target is None:
        target = next((p.grid.crs for p in plans if p.grid.crs is not None), None)
    if target is not None:
        for p in [p for p in plans if p.grid.crs is None]:
            failures.append(
                {
                    "raster": p.path,
                    "stage": "open",
                    "code": "no_crs",
                    "message": f"{p.path} has no georeferencing: it cannot be placed with the georeferenced "
                    "rasters of this batch (batch it on its own).",
                }
            )
        plans = [p for p in plans if p.grid.crs is not None]
    return plans, failures, target


# -- the batch's state ---------------------------------------------------------------------------------------------
@dataclass
class BatchSummary:
    output: str
    outputs: list[str] = field(default_factory=list)
    rasters: int = 0
    done: int = 0
    failed: int = 0
    tiles: int = 0
    tiles_run: int = 0
    tiles_resumed: int = 0
    tiles_nodata: int = 0
    features: int = 0
    prompts: int = 0
    seconds: float = 0.0
    crs: str | None = None
    failures: list[dict] = field(default_factory=list)
    state: str | None = None  # the state folder, when kept

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        lines = [
            f"rasters   {self.done} done, {self.failed} failed, {self.rasters} in all",
            f"tiles     {self.tiles} ({self.tiles_run} run now, {self.tiles_resumed} from an earlier run, "
            f"{self.tiles_nodata} without data)",
            f"features  {self.features} mask features, {self.prompts} prompt boxes",
            f"time      {self.seconds:.1f} s",
        ]
        if self.outputs:
            lines.append(f"wrote     {', '.join(self.outputs)}" + (f" (CRS {self.crs})" if self.crs else ""))
        for f in self.failures:
            lines.append(f"FAILED    {f['raster']}: {f['message']} [{f['code']}]")
        if self.state:
            lines.append(f"state     {self.state} (rerun with --resume to retry the failed rasters only)")
        return "\n".join(lines)


def exit_code(summary: BatchSummary, strict: bool = False) -> int:
    """0: done (failed rasters, if any, are reported and skipped); 2: no raster could be done; 3: `strict`
    and some raster failed."""
    if summary.rasters and summary.done == 0:
        return 2
    if strict and summary.failed:
        return 3
    return 0


class BatchState:
    """`batch.json` plus a folder per raster; see the module docstring."""

    def __init__(self, folder: str | os.PathLike, fingerprint: dict, resume: bool):
        self.folder = Path(folder)
        self.file = self.folder / "batch.json"
        if self.folder.exists() and not resume:
            if not self.file.exists() and any(self.folder.iterdir()):
                raise BadInput(
                    f"{self.folder} exists and is not a think2seg state folder; choose another --state.",
                    code="bad_state",
                )
            shutil.rmtree(self.folder)
        self.rasters: dict[str, dict] = {}
        if self.file.exists():
            old = json.loads(self.file.read_text())
            if old.get("fingerprint") != fingerprint:
                raise BadInput(
                    f"{self.folder} holds a batch with other queries, options or models; drop --resume to start over.",
                    code="state_mismatch",
                )
            self.rasters = old.get("rasters", {})
        self.fingerprint = fingerprint
        self.folder.mkdir(parents=True, exist_ok=True)
        self.save()

    def save(self) -> None:
        write_json(self.file, {"fingerprint": self.fingerprint, "rasters": self.rasters, "updated": utc_now()})

    def raster_dir(self, plan: RasterPlan) -> Path:
        return self.folder / "rasters" / plan.key

    def is_done(self, plan: RasterPlan) -> bool:
        rec = self.rasters.get(plan.key)
        return bool(
            rec
            and rec.get("status") == "done"
            and (self.raster_dir(plan) / "result.json").exists()
            and rec.get("identity") == raster_identity(plan.path)
        )

    def mark_done(self, plan: RasterPlan, result: TiledResult) -> dict:
        rows = layer_rows(result, {"raster": plan.path})
        layers = {name: [[shapely.to_wkb(g, hex=True), attrs] for g, attrs in rs] for name, rs in rows.items()}
        stats = dict(result.stats)
        write_json(self.raster_dir(plan) / "result.json", {"crs": plan.crs_wkt, "layers": layers, "stats": stats})
        self.rasters[plan.key] = {
            "path": plan.path,
            "status": "done",
            "identity": raster_identity(plan.path),
            "stats": stats,
            "features": len(rows["mask"]),
            "prompts": len(rows["prompt_boxes"]),
        }
        self.save()
        return self.rasters[plan.key]

    def mark_failed(self, plan_or_path, error: dict) -> None:
        key = plan_or_path.key if isinstance(plan_or_path, RasterPlan) else state_key(plan_or_path)
        self.rasters[key] = {"path": error["raster"], "status": "failed", "error": error}
        self.save()

    def result(self, plan: RasterPlan) -> dict:
        return json.loads((self.raster_dir(plan) / "result.json").read_text())


def model_ids(model: str, sam: str, sam_size: str | None = None) -> dict:
    """The ids a Pipeline loaded from these arguments reports (`Pipeline.models`), known before loading it:
    they key the resume state."""
    from .prompt_template import TEMPLATE_ID
    from .weights import resolve_sam_checkpoint
    from .weights import sam_size as parse_size

    if os.path.exists(sam):
        spec, _ = resolve_sam_checkpoint(sam, sam_size)
    else:
        spec = parse_size(sam)
    return {"reasoner": model, "segmenter": f"sam2.1_hiera_{spec.name}", "prompt_template": TEMPLATE_ID}


# -- writing ------------------------------------------------------------------------------------------------------
def _reprojector(src_wkt: str | None, target):
    if src_wkt is None or target is None:
        return None
    from pyproj import CRS as ProjCRS
    from pyproj import Transformer
    from rasterio.crs import CRS

    if CRS.from_wkt(src_wkt) == target:
        return None
    tr = Transformer.from_crs(ProjCRS.from_wkt(src_wkt), ProjCRS.from_wkt(target.to_wkt()), always_xy=True)

    def apply(geoms):
        return shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))

    return apply


def write_outputs(state: BatchState, plans: Sequence[RasterPlan], output: str, target_crs) -> list[str]:
    """The output from the finished rasters, one raster at a time (memory: one raster's rows), reprojected
    to the batch's CRS; written to temporary names and renamed when complete."""
    done = [p for p in plans if state.is_done(p)]
    writer = LayerWriter(output, target_crs.to_wkt() if target_crs is not None else None, tiled=True)
    try:
        for p in done:
            layers = state.result(p)["layers"]
            reproject = _reprojector(p.crs_wkt, target_crs)
            for name in LAYERS:
                rows = [(shapely.from_wkb(w), a) for w, a in layers.get(name, [])]
                if reproject is not None and rows:
                    geoms = reproject(np.array([g for g, _ in rows], dtype=object))
                    rows = [(g, a) for g, (_, a) in zip(geoms, rows)]
                writer.write(name, rows)
        written = writer.close()
    except BaseException:
        writer.abort()
        raise
    return list(dict.fromkeys(written[name] for name in LAYERS))


# -- the run -------------------------------------------------------------------------------------------------------
class TileProgress:
    """One progress bar over every tile of the batch (tqdm on stderr), fed by per-raster callbacks."""

    def __init__(self, total: int, enabled: bool = True):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="tile", dynamic_ncols=True, leave=True)
        self._seen: dict[str, int] = {}

    def callback(self, key: str) -> Callable[[int, int, str], None]:
        def update(done: int, total: int, message: str) -> None:
            delta = done - self._seen.get(key, 0)
            self._seen[key] = done
            if self.bar is not None:
                self.bar.set_description(message.split(":")[0][:30])
                if delta > 0:
                    self.bar.update(delta)

        return update

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class BatchJob:
    """Everything a batch needs besides the models."""

    rasters: list[str]
    queries: list[str]
    output: str
    options: object = None  # SegmentOptions or its dict
    tiling: Tiling = field(default_factory=Tiling)
    crs: str | None = None
    resume: bool = False
    state_dir: str | None = None
    keep_state: bool = False
    progress: bool = True

    def __post_init__(self):
        from .options import SegmentOptions

        check_output(self.output)
        if not isinstance(self.options, SegmentOptions):
            self.options = SegmentOptions.from_dict(self.options)
        if self.state_dir is None:
            self.state_dir = self.output + ".state"


def prepare(job: BatchJob, models: dict) -> tuple[list[RasterPlan], list[dict], object, BatchState]:
    plans, failures, target = plan_rasters(job.rasters, job.tiling, job.crs)
    fp = fingerprint(job.queries, job.options, job.tiling, models, crs=job.crs)
    state = BatchState(job.state_dir, fp, job.resume)
    for f in failures:
        state.mark_failed(f["raster"], f)
    return plans, failures, target, state


def finish(job: BatchJob, plans, failures, target, state: BatchState, t0: float) -> BatchSummary:
    summary = BatchSummary(
        output=job.output,
        rasters=len({p.path for p in plans} | {f["raster"] for f in failures}),
        failures=list(failures),
        crs=(
            f"EPSG:{target.to_epsg()}"
            if target is not None and target.to_epsg()
            else (target.to_wkt()[:60] if target is not None else None)
        ),
    )
    for p in plans:
        rec = state.rasters.get(p.key, {})
        if rec.get("status") == "done":
            summary.done += 1
            st = rec.get("stats", {})
            summary.tiles += st.get("tiles", 0)
            summary.tiles_run += st.get("tiles_run", 0)
            summary.tiles_resumed += st.get("tiles_resumed", 0)
            summary.tiles_nodata += st.get("tiles_nodata", 0)
            summary.features += rec.get("features", 0)
            summary.prompts += rec.get("prompts", 0)
    summary.failed = len(summary.failures)
    if summary.done:
        summary.outputs = write_outputs(state, plans, job.output, target)
    summary.seconds = time.perf_counter() - t0
    if summary.failed or job.keep_state or not summary.done:
        summary.state = str(state.folder)
    if summary.outputs:
        write_json(summary_path(job.output), summary.to_dict())
    if not summary.state:
        shutil.rmtree(state.folder, ignore_errors=True)
    return summary


def summary_path(output: str) -> Path:
    p = Path(output)
    return p.with_name(p.stem + ".summary.json")


def run_batch(
    load_pipeline: Callable[[], object],
    job: BatchJob,
    cancelled: Callable[[], bool] | None = None,
    models: dict | None = None,
) -> BatchSummary:
    """Run `job` locally. `load_pipeline()` is called once, after the rasters were checked (and not at all
    when none can be read). `models` (the ids) keys the resume state; it defaults to the pipeline's."""
    t0 = time.perf_counter()
    pipeline = None
    if models is None:
        pipeline = load_pipeline()
        models = pipeline.models
    plans, failures, target, state = prepare(job, models)
    todo = [p for p in plans if not state.is_done(p)]
    if todo and pipeline is None:
        pipeline = load_pipeline()
    progress = TileProgress(sum(len(p.grid.tiles) for p in plans), job.progress)
    # a batch asks every query of a tile in one call and never comes back to it: the caches keep one call's views
    bounded = pipeline.keeping_at_most(job.tiling.batch_size) if pipeline is not None else nullcontext()
    with bounded:
        try:
            for p in plans:
                if p not in todo:
                    progress.callback(p.key)(len(p.grid.tiles), len(p.grid.tiles), Path(p.path).name)
                    continue
                try:
                    result = segment_raster_tiled(
                        pipeline,
                        p.path,
                        job.queries,
                        job.options,
                        job.tiling,
                        state.raster_dir(p),
                        progress=progress.callback(p.key),
                        cancelled=cancelled,
                        grid=p.grid,
                    )
                except Cancelled:
                    raise
                except Exception as e:  # one bad raster is reported and skipped (KeyboardInterrupt is not caught)
                    f = failure(p.path, e, "run")
                    failures.append(f)
                    state.mark_failed(p, f)
                    continue
                state.mark_done(p, result)
        finally:
            progress.close()
    return finish(job, plans, failures, target, state, t0)
