"""`think2seg models`: what is cached, and fetching the defaults ahead of time."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list cached models, or fetch the defaults ahead of time")
    p.add_argument("--fetch", action="store_true", help="download the default reasoner and SAM2.1 weights now")
    p.add_argument("--model", default=None, help="with --fetch: the reasoner to fetch (default the published 3B)")
    p.add_argument("--sam", default=None, help="with --fetch: the SAM2.1 size to fetch (default small)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..weights import (
        DEFAULT_REASONER,
        DEFAULT_SAM_SIZE,
        KNOWN_REASONERS,
        cached_models,
        resolve_reasoner,
        resolve_sam_checkpoint,
    )

    if args.fetch:
        path = resolve_reasoner(args.model or DEFAULT_REASONER)
        print(f"reasoner ready: {path}")
        spec, ckpt = resolve_sam_checkpoint(args.sam or DEFAULT_SAM_SIZE)
        print(f"SAM2.1 {spec.name} ready: {ckpt}")
    cached = cached_models()
    print("cached models:" if cached else "no Think2Seg models are cached yet (`think2seg models --fetch` gets them).")
    for m in cached:
        print(f"  {m['id']:40s} {m['size_mb']:9.1f} MB  {m['path']}")
    print("published reasoners (check the base model's licence before use):")
    for rid, what in KNOWN_REASONERS.items():
        print(f"  {rid:40s} {what}")
    return 0
