"""`think2seg`: the command line. Each subcommand is a module here with `add_parser(sub)` and `run(args)`.

Errors with a code (bad input, missing weights) end as one sentence on stderr, not a traceback:
exit 2 for bad input, 1 for anything else that stopped the work.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import BadInput, Think2SegError

COMMANDS = ("segment", "batch", "models", "serve", "eval", "train", "dataset")


def add_model_options(p: argparse.ArgumentParser) -> None:
    from ..weights import DEFAULT_REASONER, DEFAULT_SAM_SIZE

    g = p.add_argument_group("models")
    g.add_argument(
        "--model",
        default=os.environ.get("THINK2SEG_MODEL", DEFAULT_REASONER),
        help=f"reasoner: a hub id or a local folder (default {DEFAULT_REASONER})",
    )
    g.add_argument(
        "--sam",
        default=os.environ.get("THINK2SEG_SAM", DEFAULT_SAM_SIZE),
        help="SAM2.1: tiny, small, base_plus, large (from the hub) or a checkpoint file (default small)",
    )
    g.add_argument("--sam-size", default=None, help="the size of a --sam checkpoint whose name does not tell it")
    g.add_argument("--device", default=os.environ.get("THINK2SEG_DEVICE", "auto"), help="auto, cpu, cuda, cuda:1 ...")
    from ..decoding import DECODING_MODES

    g.add_argument(
        "--decoding",
        choices=DECODING_MODES,
        default=os.environ.get("THINK2SEG_DECODING", "auto"),
        help="auto: the fast path (static KV cache + compiled decode step) on CUDA, plain on the CPU; "
        "fast; plain: transformers' plain generate (default auto)",
    )
    g.add_argument(
        "--compile",
        action="store_true",
        help="compile SAM2's image encoder (CUDA; the first tile waits for the compile)",
    )


def pipeline_loader(args):
    """A function that loads the Pipeline the arguments describe (the one place the CLI loads models). Its
    ``caches`` dict says, once it has run, how big the caches are and why (``sized_caches``)."""
    from ..pipeline import Pipeline

    def load():
        print(f"loading {args.model} and SAM2.1 ({args.sam}), {args.decoding} decoding ...", file=sys.stderr)
        sizes = check_gpu_fit(args)
        pipeline = Pipeline.from_pretrained(
            args.model, args.sam, args.sam_size, args.device, decoding=args.decoding, compile_sam=args.compile
        )
        load.caches.update(sized_caches(pipeline, sizes, args))
        print(f"caches: {_caches_line(load.caches)}", file=sys.stderr)
        return pipeline

    load.caches = {}
    return load


def check_gpu_fit(args, figures=None):
    """On CUDA, the reasoner, SAM2.1 and the embedding cache against the free memory: a sentence before loading;
    else the caches' sizes for what is left (gpu_fit.CacheSizes), None on the CPU."""
    from ..gpu_fit import check_before_loading
    from ..weights import local_sam_checkpoint, sam_size

    local = local_sam_checkpoint(args.sam, args.sam_size)
    size, ckpt = (local[0].name, local[1]) if local else (sam_size(args.sam).name, None)
    mb = explicit_embedding_cache_mb(args)
    return check_before_loading(args.model, size, ckpt, args.device, None if mb is None else mb << 20, figures)


def explicit_embedding_cache_mb(args) -> int | None:
    """The embedding cache the user set (--embedding-cache-mb, else $THINK2SEG_EMBEDDING_CACHE_MB), in MiB."""
    from ..segmenter import CACHE_ENV

    mb = getattr(args, "embedding_cache_mb", None)
    if mb is None and os.environ.get(CACHE_ENV, "").strip():
        try:
            mb = int(float(os.environ[CACHE_ENV]))
        except ValueError:
            return None  # the segmenter names the bad value
    return None if mb is None else max(0, mb)


def sized_caches(pipeline, sizes, args) -> dict:
    """Sets the pipeline's embedding and view caches: what the user set wins, else on a GPU `sizes` (from its free
    memory), else the defaults. Returns what /v1/health and the start log show."""
    embedding_mb = explicit_embedding_cache_mb(args)
    view_mb = getattr(args, "view_cache_mb", None)
    if embedding_mb is not None:
        pipeline.segmenter.cache_bytes = embedding_mb << 20
    elif sizes is not None:
        pipeline.segmenter.cache_bytes = sizes.embedding
    if view_mb is not None:
        pipeline.reasoner.views.max_bytes = max(0, view_mb) << 20
    elif sizes is not None:
        pipeline.reasoner.views.max_bytes = sizes.view
    report = {
        "embedding_mb": pipeline.segmenter.cache_bytes >> 20,
        "view_mb": pipeline.reasoner.views.max_bytes >> 20,
        "embedding_from": "set" if embedding_mb is not None else "gpu" if sizes is not None else "default",
        "view_from": "set" if view_mb is not None else "gpu" if sizes is not None else "default",
    }
    if sizes is not None:
        report["gpu_left_mb"] = max(0, sizes.left) >> 20
    return report


def _caches_line(report: dict) -> str:
    why = {"set": "as set", "gpu": "from the GPU's free memory", "default": "the default"}
    line = (
        f"SAM2 embeddings {report['embedding_mb']} MiB ({why[report['embedding_from']]}), reasoner views "
        f"{report['view_mb']} MiB ({why[report['view_from']]})"
    )
    if "gpu_left_mb" in report:
        line += f"; {report['gpu_left_mb']} MiB of the GPU left after the weights and working memory"
    return line


def check_models(args) -> None:
    """What can be told of the model options before anything loads (a --sam checkpoint that does not exist, an
    unknown size): `segment`, `batch` and `eval` call it with their other checks. `serve` does not: it listens
    first and reports a failed load through /v1/health, where the plugin shows it."""
    from ..weights import local_sam_checkpoint

    local_sam_checkpoint(args.sam, args.sam_size)


def load_pipeline(args):
    return pipeline_loader(args)()


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="think2seg", description="Reasoning segmentation of georeferenced rasters.")
    parser.add_argument("--version", action="version", version=f"think2seg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(sub)
    return parser


def process_defaults() -> None:
    """The environment a backend process runs with, set before torch loads (the user's own settings win); the
    CLI and the CPU benchmark (`python -m think2seg.testing.bench`) both start with it, so the bench times what runs."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # OpenMP threads that wait asleep: torch's default spinning makes every small op wait for a scheduler slice
    # whenever another process holds a core (QGIS beside the backend on one laptop): a tiny-model answer took
    # 4-10 s spinning and 0.6-0.8 s passive on a busy 2-core machine (issue 9 notes).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    process_defaults()
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BadInput as e:
        print(f"think2seg: {e.message}", file=sys.stderr)
        return 2
    except Think2SegError as e:
        print(f"think2seg: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("think2seg: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
