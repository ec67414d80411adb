"""A fast decoding path for the reasoner; the plain path (dynamic KV cache) stays the default and the baseline.

Decoding the reasoning dominates a query's cost (docs: ~150 tokens at ~22 ms each with plain `generate` on
an H100, SAM2 ~15 ms). Plain `generate` is launch-bound: every token runs the whole Python forward. With a
*static* KV cache transformers compiles the one-token decode step (`torch.compile`, CUDA graphs) on CUDA,
which measured 5x faster for one query. Compiled graphs are specialised to shapes, so this path also pads
prompts to a multiple of `pad_to_multiple` tokens (one graph per length bucket instead of one per prompt
length) and should be fed full batches of `batch_size` pairs.

    from think2seg.speed import FastDecoding, enable_fast_decoding
    enable_fast_decoding(pipeline, FastDecoding(batch_size=16))   # pipeline.reasoner is now a FastReasoner
    disable_fast_decoding(pipeline)                               # back to the plain path

On the CPU the static cache still works (same tokens) but nothing is compiled (`compile` is CUDA only:
transformers' own rule); scripts/gpu_bench.py measures both paths side by side on the GPU machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from .reasoner import ANSWER_BUDGET, Reasoner


@dataclass
class FastDecoding:
    static_cache: bool = True
    #: compile the decode step (CUDA only; needs `static_cache`); "reduce-overhead" = CUDA graphs
    compile: bool = True
    compile_mode: str = "reduce-overhead"
    #: prompt lengths are padded to a multiple of this (left padding), so compiled graphs are reused
    pad_to_multiple: int = 64
    #: (tile, query) pairs per generate call for batch work (tiling's batch_size * queries should match)
    batch_size: int = 16

    def generate_kwargs(self, device) -> dict:
        """Keyword arguments for `generate` (passed through `Reasoner.generate_images`)."""
        if not self.static_cache:
            return {}
        kw: dict = {"cache_implementation": "static"}
        on_gpu = getattr(device, "type", str(device)).startswith("cuda")
        if self.compile and on_gpu:
            from transformers import CompileConfig

            kw["compile_config"] = CompileConfig(fullgraph=False, dynamic=False, mode=self.compile_mode)
        else:
            kw["disable_compile"] = True
        return kw


class FastReasoner(Reasoner):
    """The same loaded model and processor as `base`, generating through `FastDecoding`."""

    def __init__(self, base: Reasoner, fast: FastDecoding):  # noqa: D107 (shares base's state, no reload)
        self.__dict__.update(base.__dict__)
        self.base = base
        self.fast = fast

    def encode(self, images, texts) -> dict:
        import torch

        kwargs = {"padding": True, "return_tensors": "pt"}
        if self.fast.pad_to_multiple and self.fast.pad_to_multiple > 1:
            kwargs["pad_to_multiple_of"] = self.fast.pad_to_multiple
        inputs = self.processor(text=texts, images=images, **kwargs)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}

    def generate_images(self, images, queries, max_reasoning_tokens: int = 1024, answer_budget: int = ANSWER_BUDGET,
                        **gen_kwargs):
        kw = {**self.fast.generate_kwargs(self.device), **gen_kwargs}
        return super().generate_images(images, queries, max_reasoning_tokens, answer_budget, **kw)


def enable_fast_decoding(pipeline, fast: FastDecoding | None = None):
    """Switch a loaded Pipeline's reasoner to the fast path (no reload); returns the pipeline."""
    base = pipeline.reasoner.base if isinstance(pipeline.reasoner, FastReasoner) else pipeline.reasoner
    pipeline.reasoner = FastReasoner(base, fast or FastDecoding())
    return pipeline


def disable_fast_decoding(pipeline):
    if isinstance(pipeline.reasoner, FastReasoner):
        pipeline.reasoner = pipeline.reasoner.base
    return pipeline
