"""`think2seg batch --ray ADDRESS`: the same batch on a Ray cluster, with the same output as a local run.

Ray Data carries one row per (raster, tile window, query) still to do. `map_batches` sends rows to actors
(`TileActor`) that each load the models once (one GPU each where the cluster has GPUs, a CPU slot
otherwise), read the windows they were given (two calls at once per actor: one reads and resizes while the
other is with the models), answer the pairs in one batched call and send back each
pair's clipped pieces, prompts and reasoning (`tiling.run.answer_tiles`, as a local run). The driver is the one
writer: it
gathers a tile's entries, saves the tile's shard in the batch's state folder exactly as a local run does,
and once a raster's tiles are all in, merges them (`tiling.merge.merge_shards`) and writes the output
(`batch.finish`). Local and Ray runs therefore share state, resume each other, and write the same features.

Every node must read the rasters at the same path (a shared file system, or URLs GDAL reads such as
/vsis3/...) and have the think2seg environment installed (the same venv or container image). Ray is
imported here only, lazily: the rest of the package never needs it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .batch import BatchJob, BatchSummary, RasterPlan, TileProgress, failure, finish, prepare
from .tiling.grid import TileSpec
from .tiling.merge import merge_shards
from .tiling.state import TileState, fingerprint, raster_identity


@dataclass
class RayModels:
    """How each actor loads its Pipeline (the arguments of `Pipeline.from_pretrained`)."""

    model: str
    sam: str
    sam_size: str | None = None
    device: str | None = "auto"
    decoding: str = "auto"
    compile_sam: bool = False


#: Calls that run at once on one actor (`actor_pool`): while one call's batch is with the models, the next
#: call reads its windows and makes their model inputs, as a local batch's read-ahead thread does.
CALLS_PER_ACTOR = 2


def actor_pool(size: int):
    """Ray Data's fixed pool of `size` actors, each running `CALLS_PER_ACTOR` calls at once in threads where
    this Ray can (its `max_concurrent_calls_per_actor` and `enable_true_multi_threading`; older Rays run
    one call at a time). `TileActor` lets one call at a time use the models."""
    import inspect

    import ray

    params = inspect.signature(ray.data.ActorPoolStrategy).parameters
    if {"max_concurrent_calls_per_actor", "enable_true_multi_threading"} <= set(params):
        return ray.data.ActorPoolStrategy(
            size=size, max_concurrent_calls_per_actor=CALLS_PER_ACTOR, enable_true_multi_threading=True
        )
    return ray.data.ActorPoolStrategy(size=size)


class TileActor:
    """A Ray Data actor holding one loaded Pipeline; answers batches of (raster, tile, query) rows. Calls may
    run at once (`actor_pool`): each reads its windows and makes their model inputs by itself, and takes
    the models in turn."""

    def __init__(self, models: dict, options: dict, views: int = 1):
        import os
        import threading
        from contextlib import ExitStack

        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from .options import SegmentOptions
        from .pipeline import Pipeline

        self.pipeline = Pipeline.from_pretrained(
            models["model"],
            models["sam"],
            models["sam_size"],
            models["device"],
            decoding=models.get("decoding", "auto"),
            compile_sam=models.get("compile_sam", False),
        )
        self.options = SegmentOptions.from_dict(options)
        self._models = threading.Lock()  # one call at a time on the models (and the GPU)
        # the actor's whole life is a batch: its caches keep one call's views (`Pipeline.keeping_at_most`)
        self._bounds = ExitStack()
        self._bounds.enter_context(self.pipeline.keeping_at_most(views))

    def __call__(self, batch: dict) -> dict:
        from .georef import open_raster
        from .tiling.read import read_tiles
        from .tiling.run import answer_tiles, read_record

        rows = [{k: batch[k][i] for k in batch} for i in range(len(batch["raster"]))]
        out = {"key": [], "tile": [], "query_index": [], "entry": [], "read": [], "error": []}

        def emit(row, entry=None, read=None, error=None):
            out["key"].append(str(row["key"]))
            out["tile"].append(str(row["tile"]))
            out["query_index"].append(int(row["query_index"]))
            out["entry"].append(json.dumps(entry) if entry is not None else "")
            out["read"].append(json.dumps(read) if read is not None else "")
            out["error"].append(json.dumps(error) if error is not None else "")

        by_raster: dict[str, list[dict]] = {}
        for row in rows:
            by_raster.setdefault(str(row["raster"]), []).append(row)
        for raster, rrows in by_raster.items():
            try:
                ds = open_raster(raster)
            except Exception as e:
                for row in rrows:
                    emit(row, error=failure(raster, e, "run"))
                continue
            try:
                specs: dict[str, TileSpec] = {}
                for row in rrows:
                    specs.setdefault(str(row["tile"]), TileSpec.from_dict(json.loads(row["spec"])))
                order = list(specs)
                tiles, read_s, inputs = read_tiles(ds, list(specs.values()), self.options.bands, self.pipeline.prepare)
                pairs = [(order.index(str(r["tile"])), int(r["query_index"]), str(r["query"])) for r in rrows]
                entries = answer_tiles(
                    self.pipeline,
                    list(specs.values()),
                    tiles,
                    pairs,
                    self.options,
                    inputs=inputs,
                    read_s=read_s,
                    models_lock=self._models,
                )
                for row, (ti, _, _), entry in zip(rrows, pairs, entries):
                    emit(row, entry=entry, read=read_record(tiles[ti], inputs[ti] is None))
            except Exception as e:  # a broken raster fails alone; the actor goes on with other rasters
                for row in rrows:
                    emit(row, error=failure(raster, e, "run"))
            finally:
                ds.close()
        return out


#: Ray's switch that, when off, makes it take 127.0.0.1 as this machine's address (read when ray is imported).
_RAY_LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def is_loopback(address: str) -> bool:
    """Whether a cluster address (`host:port`, `ray://host:port`) names this machine's loopback interface."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host == "localhost" or host == "::1" or host.startswith("127.")


def connect(address: str, num_cpus: int | None = None) -> None:
    """Join a cluster (`auto`, `ray://host:10001`, `host:6379`) or start one here (`local`); a Ray already
    initialised in this process (a test's, a notebook's) is used as it is.

    `local` and a loopback address stay on loopback: Ray otherwise rewrites 127.0.0.1 to the machine's
    outward address before connecting (`resolve_ip_for_localhost` in ray/_private/services.py) and advertises
    that address for the nodes it starts, so a cluster meant to be private to this machine would listen on,
    and talk through, another interface. Ray reads the switch that stops the rewrite when it is imported,
    hence it is set before the import (it only disables *joining* `ray start --address` nodes from this
    process, which a driver never does)."""
    import os

    if address == "local" or is_loopback(address):
        os.environ.setdefault(_RAY_LOOPBACK_SWITCH, "0")
    import ray

    if ray.is_initialized():
        return
    if address == "local":
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
        )
    else:
        ray.init(address=address, log_to_driver=False)


def run_batch_ray(
    address: str,
    job: BatchJob,
    loader: RayModels,
    actors: int | None = None,
    models: dict | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> BatchSummary:
    """Run `job` on Ray (see the module docstring). `loader` says how actors load the models, `models` are
    the ids that key the resume state (default: the loader's; the CLI passes those the pipeline reports).
    `cancelled()` is checked between result batches; the finished tiles stay in the state folder."""
    from .batch import model_ids
    from .errors import Cancelled

    t0 = time.perf_counter()
    connect(address)  # before ray is imported here (see connect)
    import ray

    ids = dict(models or model_ids(loader.model, loader.sam, loader.sam_size))
    plans, failures, target, state = prepare(job, ids)
    queries, opts = job.queries, job.options
    tile_states: dict[str, TileState] = {}
    rows = []
    todo: list[RasterPlan] = []
    for p in plans:
        if state.is_done(p):
            continue
        try:
            ts = TileState(
                state.raster_dir(p), fingerprint(queries, opts, p.grid, ids, raster=raster_identity(p.path)), p.grid
            )
        except Exception as e:
            f = failure(p.path, e, "run")
            failures.append(f)
            state.mark_failed(p, f)
            continue
        tile_states[p.key] = ts
        todo.append(p)
        finished = set(ts.finished)
        for spec in p.grid.tiles:
            if spec.id in finished:
                continue
            spec_json = json.dumps(spec.to_dict())
            for qi, q in enumerate(queries):
                rows.append(
                    {"raster": p.path, "key": p.key, "tile": spec.id, "spec": spec_json, "query_index": qi, "query": q}
                )
    progress = TileProgress(sum(len(p.grid.tiles) for p in plans), job.progress)
    by_key = {p.key: p for p in todo}
    failed: set[str] = set()
    resumed = {p.key: len(tile_states[p.key].finished) for p in todo}
    ran: dict[str, int] = {p.key: 0 for p in todo}
    nodata: dict[str, int] = {p.key: 0 for p in todo}
    max_read: dict[str, int] = {p.key: 0 for p in todo}
    for p in plans:
        done_before = len(p.grid.tiles) if p.key not in tile_states else len(tile_states[p.key].finished)
        progress.callback(p.key)(done_before, len(p.grid.tiles), Path(p.path).name)
    try:
        if rows:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            n_actors = actors or max(1, gpus)
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
            ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // max(1, len(queries)), 64)))
            answers = ds.map_batches(
                TileActor,
                batch_size=job.tiling.batch_size * len(queries),
                compute=actor_pool(n_actors),
                batch_format="numpy",
                fn_constructor_kwargs={
                    "models": {**asdict(loader), "device": loader.device if gpus else "cpu"},
                    "options": {
                        "max_reasoning_tokens": opts.max_reasoning_tokens,
                        "bands": opts.bands,
                        "min_area_pixels": opts.min_area_pixels,
                        "constrain_answer": opts.constrain_answer,
                    },
                    "views": job.tiling.batch_size,
                },
                **resources,
            )
            pending: dict[tuple[str, str], dict] = {}
            specs = {(r["key"], r["tile"]): r["spec"] for r in rows}
            for batch in answers.iter_batches(batch_size=None, batch_format="numpy"):
                if cancelled is not None and cancelled():
                    raise Cancelled("The batch was cancelled; finished tiles are kept: rerun with --resume.")
                for key, tile, qi, entry, read, error in zip(
                    batch["key"], batch["tile"], batch["query_index"], batch["entry"], batch["read"], batch["error"]
                ):
                    key, tile = str(key), str(tile)
                    if key in failed:
                        continue
                    if error:
                        f = json.loads(str(error))
                        failed.add(key)
                        failures.append(f)
                        state.mark_failed(by_key[key], f)
                        continue
                    slot = pending.setdefault((key, tile), {"entries": {}, "read": json.loads(str(read))})
                    slot["entries"][int(qi)] = json.loads(str(entry))
                    if len(slot["entries"]) < len(queries):
                        continue
                    del pending[(key, tile)]
                    info = slot["read"]
                    shard = {
                        "tile": json.loads(specs[(key, tile)]),
                        "read": info["read"],
                        "read_pixels": info["read_pixels"],
                        "nodata": info["nodata"],
                        "entries": [slot["entries"][i] for i in range(len(queries))],
                    }
                    ts = tile_states[key]
                    ts.save([shard])
                    ran[key] += 1
                    nodata[key] += int(info["nodata"])
                    max_read[key] = max(max_read[key], info["read_pixels"])
                    p = by_key[key]
                    progress.callback(key)(
                        len(ts.finished),
                        len(p.grid.tiles),
                        f"{Path(p.path).name}: tile {len(ts.finished)} of {len(p.grid.tiles)}",
                    )
    finally:
        progress.close()
    for p in todo:
        if p.key in failed:
            continue
        ts = tile_states[p.key]
        if len(ts.finished) < len(p.grid.tiles):
            f = {
                "raster": p.path,
                "stage": "run",
                "code": "incomplete",
                "message": f"{len(p.grid.tiles) - len(ts.finished)} tiles of {p.path} came back without an answer.",
            }
            failures.append(f)
            state.mark_failed(p, f)
            continue
        stats = {
            "tiles": len(p.grid.tiles),
            "tiles_run": ran[p.key],
            "tiles_resumed": resumed[p.key],
            "tiles_nodata": nodata[p.key],
            "max_read_pixels": max_read[p.key],
        }
        result = merge_shards(ts.shards(), p.grid, queries, p.path, ids, opts.min_area_pixels, stats)
        state.mark_done(p, result)
    return finish(job, plans, failures, target, state, t0)
