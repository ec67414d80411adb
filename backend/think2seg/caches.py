"""What the models keep between questions: maps bounded by the bytes they hold (`ByteLRU`), and the reasoner's
prompt prefix of a view (`ViewPrefix`).

Asking again on the same view: `ByteLRU` bounds what the reasoner keeps per view, keyed by the tile's content
key (see `Reasoner.views`): the vision tower's output for the image, and the `ViewPrefix`, the KV cache of the
prompt up to the question (system prompt, the image's 900 tokens, the template's words before the question:
943 of ~1,150 prompt tokens), so a second question prefills only its own ~200 tokens. The segmenter keeps its
SAM2 embeddings in the same kind of map.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


class ByteLRU:
    """A least-recently-used map bounded by the bytes of its values (`size_of(value)`), not by their count.

    A value larger than the whole budget is not kept (it would only evict everything else). `max_items`, when
    set, also bounds their count (`bounded_to`: a run that never asks a key again after its own call).
    """

    def __init__(self, max_bytes: int, size_of: Callable[[object], int], max_items: int | None = None):
        self.max_bytes = int(max_bytes)
        self.max_items = max_items
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
        """Evict the least recently used values until the bytes (and count) kept are within bounds again."""
        while self._items and (
            self.bytes > self.max_bytes or (self.max_items is not None and len(self._items) > self.max_items)
        ):
            _, (_, s) = self._items.popitem(last=False)
            self.bytes -= s

    @contextmanager
    def bounded_to(self, max_items: int) -> Iterator[None]:
        """Keep at most `max_items` values inside the block (the least recently used go now), then the bound
        it had before."""
        before = self.max_items
        self.max_items = max_items if before is None else min(before, max_items)
        self.evict_over_limit()
        try:
            yield
        finally:
            self.max_items = before

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
