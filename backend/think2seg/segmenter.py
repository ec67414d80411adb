"""The segmenter: a frozen SAM2.1 through the `sam2` package's own classes.

`build_sam2` + `SAM2ImagePredictor`, one image embedding per image (`set_image` once), then one `predict`
per instance with its box and/or positive points (docs/method.md: `multimask_output=False`, labels 1);
the instance masks are OR-merged into the answer and each instance's own mask is kept.

The segmenter owns its state, like `SAM2ImagePredictor`: `embedded_key` says which image is embedded, and
a bounded LRU of embeddings (by bytes) keyed by a content key (`image_key`) lets a second query on the same
image skip the image encoder, whichever entry point (service, batch, evaluation) asks. The bound is 1 GiB on
CUDA and 256 MiB elsewhere unless $THINK2SEG_EMBEDDING_CACHE_MB says otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from .caches import ByteLRU, tensor_bytes
from .errors import BadInput
from .prompts import PromptInstance
from .reasoner import pick_device
from .weights import DEFAULT_SAM_SIZE, resolve_sam_checkpoint

#: Default bound of the embedding cache: SAM2's features for one 1024 x 1024 image are ~16 MiB in float32
#: (image embedding + two high-resolution maps), so 1 GiB holds ~60 views on a GPU and 256 MiB ~15 on a CPU.
DEFAULT_CACHE_BYTES = {"cuda": 1 << 30, "cpu": 256 << 20}
#: Environment variable that sets the bound for every segmenter of the process, in MiB (0 keeps none).
CACHE_ENV = "THINK2SEG_EMBEDDING_CACHE_MB"


def default_cache_bytes(device: torch.device) -> int:
    """$THINK2SEG_EMBEDDING_CACHE_MB when set, else 1 GiB on CUDA and 256 MiB elsewhere."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        try:
            return max(0, int(float(value) * 2**20))
        except ValueError:
            raise BadInput(f"{CACHE_ENV} must be a number of MiB (got '{value}').", code="bad_options") from None
    return DEFAULT_CACHE_BYTES.get(device.type, DEFAULT_CACHE_BYTES["cpu"])


def image_key(rgb: np.ndarray) -> str:
    """A content key for an image: a fast hash of its pixels, shape and dtype (xxh3 where installed: ~0.3 ms
    for a 1024 x 1024 tile against BLAKE2b's ~3 ms, which counts against the CPU budget of a tile)."""
    a = np.ascontiguousarray(rgb)
    try:
        import xxhash

        h = xxhash.xxh3_128()
    except ImportError:
        h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.shape}|{a.dtype}".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


@dataclass
class MaskSet:
    merged: np.ndarray  # bool (H, W): the answer, OR of the instances
    instances: list[np.ndarray]  # bool (H, W) each
    scores: list[float]  # SAM2's predicted IoU per instance


@dataclass
class _Embedding:
    features: dict  # SAM2ImagePredictor._features: image_embed + high_res_feats
    orig_hw: list
    nbytes: int


def _cache_dense_pe(prompt_encoder) -> None:
    """SAM2 recomputes the decoder's dense positional encoding (sines of a fixed 64 x 64 grid, the same tensor
    every time) on every prompt: a tenth of a refine's decoder time on the CPU. Computed once on first use."""
    compute = prompt_encoder.get_dense_pe
    cached: list[torch.Tensor] = []

    def get_dense_pe() -> torch.Tensor:
        if not cached:
            with torch.inference_mode():
                cached.append(compute())
        return cached[0]

    prompt_encoder.get_dense_pe = get_dense_pe


@functools.cache
def _input_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="think2seg-sam-input")


class _GivenInput:
    """Stands in for SAM2ImagePredictor's transforms during one `set_image`: returns the input made ahead."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def __call__(self, image) -> torch.Tensor:
        return self.tensor


class Segmenter:
    def __init__(self, predictor, model_id: str, size: str, device: torch.device, cache_bytes: int | None = None):
        self.predictor = predictor
        self.model_id = model_id
        self.size = size
        self.device = device
        #: make SAM2's input (`input_ahead`) on a thread while the reasoner answers: on CUDA, where the CPU
        #: is otherwise idle then; on the CPU it would take cores from the models (and tiles answered
        #: "nothing found" never need it), so there `set_image` makes it when needed
        self.input_ahead_enabled = device.type == "cuda"
        #: SAM2's own transforms, held here: `set_image(given=)` swaps the predictor's for a moment, and a
        #: batch's read-ahead thread makes the next inputs meanwhile
        self._transforms = predictor._transforms
        #: embeddings kept for reuse by content key (the same bounded map as the reasoner's views)
        self._cache = ByteLRU(default_cache_bytes(device) if cache_bytes is None else int(cache_bytes), tensor_bytes)
        self._embedded_key: str | None = None
        _cache_dense_pe(predictor.model.sam_prompt_encoder)

    @classmethod
    def from_pretrained(
        cls,
        sam: str = DEFAULT_SAM_SIZE,
        size: str | None = None,
        device: str | None = None,
        cache_bytes: int | None = None,
        compile_encoder: bool = False,
    ) -> Segmenter:
        """`sam` is a size (tiny/small/base_plus/large, fetched from the hub) or a local checkpoint path.

        `compile_encoder`: `torch.compile` the image encoder (the costly part, once per tile; fixed 1024 input
        so one graph). Worth it on CUDA for batch work; the first tile pays the compile (tens of seconds).
        """
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        spec, ckpt = resolve_sam_checkpoint(sam, size)
        dev = pick_device(device)
        model = build_sam2(spec.config, ckpt_path=ckpt, device=str(dev), mode="eval")
        model.requires_grad_(False)
        if compile_encoder:
            # as sam2's own `compile_image_encoder` does (the forward, so checkpoints still load), without its
            # max-autotune mode, whose minutes of tuning would eat a service's start
            model.image_encoder.forward = torch.compile(model.image_encoder.forward, dynamic=False)
        model_id = f"sam2.1_hiera_{spec.name}"
        with warnings.catch_warnings():
            # sam2 scripts its input transforms with torch.jit.script, which torch now calls deprecated: a
            # FutureWarning on every start that the user can do nothing about
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
            predictor = SAM2ImagePredictor(model)
        return cls(predictor, model_id, spec.name, dev, cache_bytes)

    @property
    def embedded_key(self) -> str | None:
        """The key of the image whose embedding `predict` uses (None: none, or one embedded without a key)."""
        return self._embedded_key

    @property
    def cache_bytes(self) -> int:
        """The most bytes of embeddings kept for reuse (0 keeps none: every new key is embedded again)."""
        return self._cache.max_bytes

    @cache_bytes.setter
    def cache_bytes(self, value: int) -> None:
        self._cache.max_bytes = int(value)
        self._cache.evict_over_limit()

    def bounded_cache(self, embeddings: int):
        """A block inside which at most `embeddings` embeddings are kept (`Pipeline.keeping_at_most`)."""
        return self._cache.bounded_to(embeddings)

    @property
    def cached_bytes(self) -> int:
        return self._cache.bytes

    @property
    def cached_keys(self) -> list[str]:
        """The keys whose embeddings are kept, least recently used first."""
        return self._cache.keys()

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _decoding(self):
        """Around the prompt decoder: bfloat16 on CUDA. On the CPU it runs on torch's threads: with the CLI's
        passive OpenMP waits (cli.process_defaults) two threads took 105 ms for SAM2.1-tiny with the other core
        free and 146 ms with it busy, one thread 144-146 ms (scripts/refine_bench.py, 2026-11-27)."""
        if self.device.type == "cpu":
            yield
            return
        with self._autocast():
            yield

    def input_ahead(self, rgb: np.ndarray, key: str | None = None) -> Future | None:
        """SAM2's input for an image, made on a thread (None where `input_ahead_enabled` is off, or when the
        embedding of `key` is at hand): SAM2's own transforms (to float, resize to the model's 1024 x 1024,
        normalise), on the CPU as `set_image` makes them, ~13 ms for a 1024 x 1024 tile on this project's
        CPU. Give it to `set_image(..., given=)`."""
        if not self.input_ahead_enabled or (key is not None and (key == self._embedded_key or key in self._cache)):
            return None
        transforms = self._transforms
        image = np.require(rgb, np.uint8, ["C", "W"])
        return _input_pool().submit(lambda: transforms(image))

    @torch.inference_mode()
    def set_image(self, rgb: np.ndarray, key: str | None = None, given: Future | None = None) -> None:
        """Embed the image once; every `predict` after it reuses it. With a `key` (`image_key(rgb)`), an image
        already embedded (now or still in the cache) is not embedded again. `given`: its input made ahead
        (`input_ahead`), which SAM2's `set_image` then takes in place of transforming the image itself."""
        p = self.predictor
        if key is not None and key == self._embedded_key and p._is_image_set:
            return
        cached = self._cache.get(key) if key is not None else None
        if cached is not None:
            p.reset_predictor()
            p._features, p._orig_hw, p._is_image_set, p._is_batch = cached.features, list(cached.orig_hw), True, False
            self._embedded_key = key
            return
        # writable too: torch warns on a read-only array (np.asarray of a PIL image, as eval's are)
        image = np.require(rgb, np.uint8, ["C", "W"])
        with self._autocast():
            if given is None:
                p.set_image(image)
            else:
                p._transforms = _GivenInput(given.result())
                try:
                    p.set_image(image)
                finally:
                    p._transforms = self._transforms
        self._embedded_key = key
        if key is not None:
            self._cache.put(key, _Embedding(p._features, list(p._orig_hw), tensor_bytes(p._features)))

    def clear_cache(self) -> None:
        self._cache.clear()

    @torch.inference_mode()
    def predict(self, instances: list[PromptInstance], shape: tuple[int, int]) -> MaskSet:
        """Masks for instances given in the pixel frame of the image passed to `set_image`."""
        h, w = shape
        merged = np.zeros((h, w), dtype=bool)
        masks, scores = [], []
        for inst in instances:
            # SAM2 gets what the instance has (the reference's rule): a box alone has no point arrays, points
            # alone no box; points are all positive (label 1).
            has_points = len(inst.points) > 0
            with self._decoding():
                m, s, _ = self.predictor.predict(
                    point_coords=np.asarray(inst.points, dtype=np.float32) if has_points else None,
                    point_labels=np.ones(len(inst.points), dtype=np.int32) if has_points else None,
                    box=np.asarray(inst.box, dtype=np.float32) if inst.box is not None else None,
                    multimask_output=False,
                )
            mask = np.asarray(m[0]) > 0
            masks.append(mask)
            scores.append(float(np.asarray(s).reshape(-1)[0]))
            merged |= mask
        return MaskSet(merged, masks, scores)

    @torch.inference_mode()
    def predict_prompt(
        self,
        box: tuple[float, float, float, float] | None,
        points: np.ndarray | None,
        labels: np.ndarray | None,
    ) -> tuple[np.ndarray, float]:
        """One mask for free prompts on the embedded image (its pixels): an optional box and points with
        labels 1 (positive) / 0 (negative). Only SAM2's prompt encoder and mask decoder run (refine)."""
        pts = None if points is None or len(points) == 0 else np.asarray(points, dtype=np.float32).reshape(-1, 2)
        lab = None if pts is None else np.asarray(labels, dtype=np.int32).reshape(-1)
        with self._decoding():
            m, s, _ = self.predictor.predict(
                point_coords=pts,
                point_labels=lab,
                box=None if box is None else np.asarray(box, dtype=np.float32),
                multimask_output=False,
            )
        return np.asarray(m[0]) > 0, float(np.asarray(s).reshape(-1)[0])

    def segment(self, rgb: np.ndarray, instances: list[PromptInstance], key: str | None = None) -> MaskSet:
        if not instances:
            h, w = rgb.shape[:2]
            return MaskSet(np.zeros((h, w), dtype=bool), [], [])
        self.set_image(rgb, key)
        return self.predict(instances, rgb.shape[:2])
