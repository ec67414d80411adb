"""How the reasoner decodes, and what it keeps between questions on the same view.

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

Asking again on the same view: `ByteLRU` bounds what the reasoner keeps per view, keyed by the tile's content
key (see `Reasoner.views`): the vision tower's output for the image, and the `ViewPrefix`, the KV cache of the
prompt up to the question (system prompt, the image's 900 tokens, the template's words before the question:
943 of ~1,150 prompt tokens), so a second question prefills only its own ~200 tokens. The segmenter keeps its
SAM2 embeddings in the same kind of map.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def decoding_name(fast: FastDecoding | None) -> str:
    """What a result's `models` and the health answer call the path in use."""
    return "plain" if fast is None else "fast"


class ByteLRU:
    """A least-recently-used map bounded by the bytes of its values (`size_of(value)`), not by their count.

    A value larger than the whole budget is not kept (it would only evict everything else).
    """

    def __init__(self, max_bytes: int, size_of: Callable[[object], int]):
        self.max_bytes = int(max_bytes)
        self.size_of = size_of
        self._items: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str):
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[0]

    def put(self, key: str, value) -> None:
        size = int(self.size_of(value))
        if key in self._items:
            self.bytes -= self._items.pop(key)[1]
        if size > self.max_bytes:
            return
        self._items[key] = (value, size)
        self.bytes += size
        self.evict_over_limit()

    def evict_over_limit(self) -> None:
        """Evict the least recently used values until the bytes kept are within `max_bytes` again."""
        while self.bytes > self.max_bytes:
            _, (_, s) = self._items.popitem(last=False)
            self.bytes -= s

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def keys(self) -> list[str]:
        """The keys kept, least recently used first."""
        return list(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def tensor_bytes(value) -> int:
    """Bytes of a tensor, of a tuple/list/dict of them, or of an object that says its own `nbytes`."""
    if isinstance(value, (tuple, list)):
        return sum(tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if hasattr(value, "numel"):
        return int(value.numel() * value.element_size())
    return int(getattr(value, "nbytes", 0))


@dataclass
class ViewPrefix:
    """The KV cache of a view's prompt up to the question, kept to answer another question on the same view.

    Never written to: a generate copies it into a fresh cache (`Cache.update` concatenates or copies).
    """

    #: the prefix's token ids: a new prompt reuses the prefix only if it starts with exactly these
    ids: Any
    #: per decoder layer, (keys, values) of shape (1, kv_heads, len(ids), head_dim)
    layers: list
    #: Qwen2/2.5-VL's multimodal-rope offset of the text after the image (the same for every question asked
    #: after this image), set on the model before a generate that starts from this prefix
    rope_deltas: Any

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.layers) + tensor_bytes(self.ids)


def shared_prefix_length(token_lists: list[list[int]]) -> int:
    """How many leading tokens all the lists have in common."""
    n = min(len(t) for t in token_lists)
    for i in range(n):
        if any(t[i] != token_lists[0][i] for t in token_lists[1:]):
            return i
    return n


def enable_fast_decoding(pipeline, fast: FastDecoding | None = None):
    """Switch a loaded Pipeline's reasoner to the fast path (no reload); returns the pipeline."""
    pipeline.reasoner.fast = fast or FastDecoding()
    return pipeline


def disable_fast_decoding(pipeline):
    pipeline.reasoner.fast = None
    return pipeline
