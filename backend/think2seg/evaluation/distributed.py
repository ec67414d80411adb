"""`think2seg eval ... --ray ADDRESS`: the same evaluation spread over Ray actors, one per GPU.

Each actor loads the models once (`EvalModels`, the arguments of `Pipeline.from_pretrained`), reads the
benchmark from the same `--data` path (every node sees the data where the driver does, as a batch's rasters)
and answers chunks of `--batch-size` samples with `runner.run_samples`, the very function a one-process run
calls; the driver keeps two chunks in flight per actor and writes each record as it comes back
(`samples.jsonl`, `pred/`), so a stopped run resumes like a one-process one and the metrics are computed from
the same records: with the same chunks, the figures equal a one-process run's (the order of `samples.jsonl`
may differ; the metrics follow the draw's order).

The reference spreads its evaluation over GPUs with torchrun (`test_think2seg-rs_ref.py:41-50`, `:288-291`, `:401`:
each rank a contiguous share, gathered on rank 0); the split here is by chunk, which gives the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..cluster import connect
from .runner import EvalSettings, evaluate

#: chunks in flight on one actor: while one is answered, the next is already queued
CHUNKS_PER_ACTOR = 2


@dataclass
class EvalModels:
    """How each actor loads its Pipeline."""

    model: str
    sam: str
    sam_size: str | None = None
    device: str | None = "auto"
    decoding: str = "plain"
    compile_sam: bool = False


class EvalActor:
    """Holds one Pipeline; evaluates chunks of (image id, question index, question)."""

    def __init__(self, models: dict, settings: dict):
        from ..pipeline import Pipeline
        from .benchmarks import get_benchmark
        from .metrics import get_protocol
        from .runner import segment_options

        m = EvalModels(**models)
        self.pipeline = Pipeline.from_pretrained(
            m.model, m.sam, m.sam_size, m.device, decoding=m.decoding, compile_sam=m.compile_sam
        )
        self.pipeline.reasoner.prefix_reuse = False  # every prompt prefilled whole, as one process does
        self.settings = EvalSettings(**settings)
        self.proto = get_protocol(self.settings.protocol)
        self.opts = segment_options(self.settings, self.proto)
        samples, _ = get_benchmark(self.settings.benchmark).scan(self.settings.data, self.settings.split)
        self.by_id = {s.image_id: s for s in samples}

    def provenance(self) -> tuple[dict, str]:
        return self.pipeline.provenance(self.opts), self.pipeline.reasoner.decoding

    def run(self, chunk: list[tuple[str, int, str | None]]) -> list[tuple]:
        from .runner import run_samples

        return run_samples(self.pipeline, [(self.by_id[i], k, q) for i, k, q in chunk], self.proto, self.opts)


def _spread(pool: list, chunks: list[list[tuple]]) -> Iterator[list[tuple]]:
    """Each chunk's outcomes, as the actors finish them (at most CHUNKS_PER_ACTOR in flight per actor)."""
    import ray

    todo = iter(chunks)
    flight: dict = {}

    def submit(actor) -> None:
        chunk = next(todo, None)
        if chunk is not None:
            ids = [(s.image_id, k, q) for s, k, q in chunk]
            flight[actor.run.remote(ids)] = actor

    for actor in pool:
        for _ in range(CHUNKS_PER_ACTOR):
            submit(actor)
    while flight:
        [ref], _ = ray.wait(list(flight), num_returns=1)
        actor = flight.pop(ref)
        outcome = ray.get(ref)
        submit(actor)
        yield outcome


def evaluate_ray(
    address: str,
    settings: EvalSettings,
    models: EvalModels,
    actors: int | None = None,
    progress: bool = True,
    log=None,
    cpus_per_actor: float = 1,
) -> dict:
    """`runner.evaluate` with the models in `actors` Ray actors (default: one per GPU of the cluster, else 1)."""
    from ..errors import BadInput

    connect(address)  # before ray is imported here: it keeps loopback addresses on loopback
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    n = actors or max(1, gpus)
    if n < 1:
        raise BadInput("--actors must be at least 1.", code="bad_options")
    settings = EvalSettings(**{**asdict(settings), "data": str(Path(settings.data).resolve())})
    remote = ray.remote(EvalActor).options(num_cpus=cpus_per_actor, num_gpus=1 if gpus else 0)
    pool = [remote.remote(asdict(models), asdict(settings)) for _ in range(n)]
    try:
        provenance, decoding = ray.get(pool[0].provenance.remote())

        def executor(chunks: Iterable[list[tuple]]) -> Iterator[list[tuple]]:
            return _spread(pool, list(chunks))

        return evaluate(None, settings, progress, log, executor=executor, provenance=provenance, decoding=decoding)
    finally:
        for actor in pool:
            ray.kill(actor)
