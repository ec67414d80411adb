"""How the reasoner decodes: the plain path and the fast path (`FastDecoding`), chosen by `--decoding`.

Decoding the reasoning dominates a query's cost (~150 tokens at ~22 ms each with plain `generate` on an H100,
SAM2 ~15 ms). Plain `generate` is launch-bound: every token runs the whole Python forward. With a *static*
KV cache transformers compiles the one-token decode step (`torch.compile`, CUDA graphs) on CUDA, which
measured 3-5x faster for one query. Compiled graphs are specialised to shapes, so the fast path also pads
prompts to a multiple of `pad_to_multiple` tokens (one graph per length bucket instead of one per prompt
length).

Every entry point (serve, segment, batch, eval, the Ray actors) chooses with `--decoding {auto,fast,plain}`,
which reaches `Reasoner.from_pretrained(..., decoding=...)` through `Pipeline.from_pretrained` only:
`auto` is the fast path on CUDA and the plain path on the CPU (where nothing is compiled: transformers
compiles on CUDA only, and the static cache alone is no faster there). `plain` stays the benchmark's baseline.
Both paths build on the same `Reasoner.generation_config(...)`; the fast path only adds the cache and compile
settings to it, so both give the same tokens (tests/backend/test_speed.py).
"""

from __future__ import annotations

from dataclasses import dataclass

#: What `--decoding` accepts.
DECODING_MODES = ("auto", "fast", "plain")


@dataclass
class FastDecoding:
    static_cache: bool = True
    #: compile the decode step (CUDA only; needs `static_cache`); "reduce-overhead" = CUDA graphs
    compile: bool = True
    compile_mode: str = "reduce-overhead"
    #: prompt lengths are padded to a multiple of this (left padding), so compiled graphs are reused
    pad_to_multiple: int = 64

    def apply(self, config, device):
        """Add the static cache (and, on CUDA, the compiled decode step) to a `GenerationConfig`; returns it."""
        if not self.static_cache:
            return config
        config.cache_implementation = "static"
        on_gpu = getattr(device, "type", str(device)).startswith("cuda")
        if self.compile and on_gpu:
            from transformers import CompileConfig

            config.compile_config = CompileConfig(fullgraph=False, dynamic=False, mode=self.compile_mode)
            config.disable_compile = False
        else:
            config.disable_compile = True
        return config


def resolve_decoding(decoding: str | FastDecoding | None, device) -> FastDecoding | None:
    """`auto` -> the fast path on CUDA, plain elsewhere; `fast` -> the fast path anywhere; `plain` -> None."""
    from .errors import BadInput

    if isinstance(decoding, FastDecoding):
        return decoding
    mode = (decoding or "auto").lower()
    if mode not in DECODING_MODES:
        raise BadInput(f"--decoding takes one of {', '.join(DECODING_MODES)} (got '{decoding}').", code="bad_options")
    on_gpu = getattr(device, "type", str(device)).startswith("cuda")
    if mode == "fast" or (mode == "auto" and on_gpu):
        return FastDecoding()
    return None
