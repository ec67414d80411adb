"""Does the chosen reasoner and SAM2.1 size fit the GPU's free memory? Told in a sentence before anything loads.

`fit_sentence` is a pure function of figures (tests give it theirs); `reasoner_bytes` reads them from a model
folder (the safetensors index's total_size, the *.safetensors files, or config.json's sizes) or, for a hub id
not on this machine, the published figures; `check_before_loading` asks CUDA what is free
(torch.cuda.mem_get_info) and raises OutOfMemory with the sentence.

`cache_sizes` (pure too) sizes the SAM2 embedding cache and the reasoner's view cache on CUDA from what the
free memory leaves after the weights and the working memory, within bounds; the CLI applies it where the user
set no size.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import OutOfMemory

BYTES_PER = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "int8": 1}
#: Parameters of the published reasoners (Qwen2.5-VL-3B / -7B), when their folder is not on this machine yet.
PUBLISHED_PARAMS = {"RicardoString/Think2Seg-RS-3B": 3.75e9, "RicardoString/Think2Seg-RS-7B": 8.29e9}
SMALLER_REASONER = {"RicardoString/Think2Seg-RS-7B": "RicardoString/Think2Seg-RS-3B"}
#: SAM2.1 parameters per size (Meta's model card); SAM2 keeps float32 weights and runs in bf16 autocast.
SAM_PARAMS = {"tiny": 38.9e6, "small": 46.0e6, "base_plus": 80.8e6, "large": 224.4e6}
SAM_ORDER = ["tiny", "small", "base_plus", "large"]
#: Beyond the weights: CUDA context, activations of one answer (vision tokens, KV cache), SAM2's image features.
WORKING_BYTES = 1 << 30
WORKING_FRACTION = 0.15
#: Caches sized from the GPU (`cache_sizes`): this share of what is left after the weights and the working memory
#: (the rest stays free for longer answers, bigger tiles and the other programs on the GPU), split between the
#: SAM2 embeddings (~16 MiB per 1024 x 1024 view) and the reasoner's vision outputs (~4-7 MiB per view).
CACHE_SHARE = 0.5
EMBEDDING_SHARE = 2 / 3
#: Bounds of each (bytes): the lower keeps a refine and a second question cheap on a full GPU, the upper is more
#: views than a session revisits (~500 embeddings, ~500-1000 views).
EMBEDDING_CACHE_BOUNDS = (256 << 20, 8 << 30)
VIEW_CACHE_BOUNDS = (128 << 20, 4 << 30)


def params_from_config(config: dict) -> float:
    """Parameters of a Qwen2(.5)-VL style model from config.json's sizes (text model + vision tower)."""
    text = config.get("text_config") or config
    h, inter = text["hidden_size"], text["intermediate_size"]
    layers, vocab = text["num_hidden_layers"], text["vocab_size"]
    heads = text.get("num_attention_heads", 1)
    kv = text.get("num_key_value_heads", heads)
    head_dim = text.get("head_dim") or h // heads
    attn = 2 * h * heads * head_dim + 2 * h * kv * head_dim
    total = layers * (attn + 3 * h * inter + 2 * h) + vocab * h * (1 if config.get("tie_word_embeddings", True) else 2)
    vision = config.get("vision_config") or {}
    if vision:
        vh = vision.get("hidden_size", 0)
        vi = vision.get("intermediate_size", 4 * vh)
        out = vision.get("out_hidden_size", h)
        total += vision.get("depth", 0) * (4 * vh * vh + 3 * vh * vi) + 4 * vh * vh * 4 + 4 * vh * out
    return float(total)


def reasoner_bytes(model: str, dtype: str = "bfloat16") -> int | None:
    """Bytes the reasoner's weights take in `dtype`: from its folder (a local one or the hub cache's snapshot),
    else the published figures; None when unknown."""
    folder = _local_folder(model)
    per = BYTES_PER[dtype]
    if folder is not None:
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        stored = BYTES_PER.get(str(config.get("torch_dtype") or config.get("dtype") or "bfloat16"), 2)
        index = folder / "model.safetensors.index.json"
        if index.exists():
            total = json.loads(index.read_text()).get("metadata", {}).get("total_size")
            if total:
                return int(total / stored * per)
        files = list(folder.glob("*.safetensors"))
        if files:
            return int(sum(f.stat().st_size for f in files) / stored * per)
        if config:
            return int(params_from_config(config) * per)
    if model in PUBLISHED_PARAMS:
        return int(PUBLISHED_PARAMS[model] * per)
    return None


def _local_folder(model: str) -> Path | None:
    if os.path.isdir(model):
        return Path(model)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
    except Exception:
        return None
    return Path(found).parent if isinstance(found, str) else None


def sam_bytes(size: str, checkpoint: str | None = None) -> int:
    """SAM2.1's weights on the GPU (float32): the checkpoint's size where it is a local file, else the card's."""
    if checkpoint and os.path.isfile(checkpoint):
        return os.path.getsize(checkpoint)
    return int(SAM_PARAMS[size] * 4)


def need_bytes(reasoner: int, sam: int, cache: int = 0) -> int:
    return int(reasoner + sam + cache + max(WORKING_BYTES, WORKING_FRACTION * (reasoner + sam)))


def fit_sentence(
    *,
    model: str,
    reasoner: int,
    sam_size: str,
    sam: int,
    free: int,
    total: int | None = None,
    gpu: str = "the GPU",
    cache: int = 0,
    dtype: str = "bfloat16",
) -> str | None:
    """None when the reasoner, SAM2.1 and the embedding cache fit in `free` bytes; else a sentence naming both
    figures and the smaller choices that would fit (a pure function)."""
    need = need_bytes(reasoner, sam, cache)
    if need <= free:
        return None
    gib = 2**30
    of_total = f" of {total / gib:.1f} GiB" if total else ""
    choices = []
    smaller = SMALLER_REASONER.get(model)
    if smaller and need_bytes(int(PUBLISHED_PARAMS[smaller] * BYTES_PER[dtype]), sam, cache) <= free:
        choices.append(f"the 3B reasoner (--model {smaller})")
    for size in SAM_ORDER[: SAM_ORDER.index(sam_size)] if sam_size in SAM_ORDER else []:
        if need_bytes(reasoner, int(SAM_PARAMS[size] * 4), cache) <= free:
            choices.append(f"a smaller SAM2.1 (--sam {size})")
            break
    if cache and need_bytes(reasoner, sam, 0) <= free:
        choices.append("a smaller embedding cache (--embedding-cache-mb 0)")
    choices.append("the CPU (--device cpu, much slower)")
    return (
        f"{model} ({reasoner / gib:.1f} GiB in {dtype}) with SAM2.1 {sam_size} needs about {need / gib:.1f} GiB "
        f"on {gpu}, which has {free / gib:.1f} GiB free{of_total}: close what else uses the GPU, or use "
        + ", or ".join(choices)
        + "."
    )


@dataclass(frozen=True)
class CacheSizes:
    """The caches' bounds on a GPU and what they came from (`left`: free bytes after weights and working memory)."""

    embedding: int
    view: int
    left: int


def cache_sizes(free: int, reasoner: int, sam: int) -> CacheSizes:
    """The embedding and view caches' bounds from the GPU's free memory (before loading) and the weights: a pure
    function. `CACHE_SHARE` of what is left, split by `EMBEDDING_SHARE`, each within its bounds."""
    left = free - need_bytes(reasoner, sam)
    budget = max(0, left) * CACHE_SHARE
    return CacheSizes(
        embedding=_within(budget * EMBEDDING_SHARE, EMBEDDING_CACHE_BOUNDS),
        view=_within(budget * (1 - EMBEDDING_SHARE), VIEW_CACHE_BOUNDS),
        left=int(left),
    )


def _within(value: float, bounds: tuple[int, int]) -> int:
    return int(min(max(value, bounds[0]), bounds[1]))


def cuda_figures(device: str | None) -> tuple[int, int, str] | None:
    """(free bytes, total bytes, name) of the CUDA device `device` names (or the current one); None off CUDA."""
    import torch

    if device not in (None, "auto") and not str(device).startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        return None
    dev = torch.device(device if device not in (None, "auto") else "cuda")
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(index)
    return free, total, torch.cuda.get_device_name(index)


def check_before_loading(
    model: str,
    sam_size: str,
    sam_checkpoint: str | None,
    device: str | None,
    cache: int | None = None,
    figures: tuple[int, int, str] | None = None,
) -> CacheSizes | None:
    """On CUDA: raise OutOfMemory with `fit_sentence` when the models will not fit, else the caches' sizes for
    what is left (`cache_sizes`); None on the CPU or for a reasoner of unknown size. `cache`: the embedding
    cache the user set (None: sized here, counted at its lower bound); `figures`: cuda_figures' (tests)."""
    figures = figures or cuda_figures(device)
    if figures is None:
        return None
    free, total, name = figures
    reasoner = reasoner_bytes(model)
    if reasoner is None:
        return None
    sam = sam_bytes(sam_size, sam_checkpoint)
    sentence = fit_sentence(
        model=model,
        reasoner=reasoner,
        sam_size=sam_size,
        sam=sam,
        free=free,
        total=total,
        gpu=name,
        cache=EMBEDDING_CACHE_BOUNDS[0] if cache is None else cache,
    )
    if sentence:
        raise OutOfMemory(sentence)
    return cache_sizes(free, reasoner, sam)


def gpu_memory() -> dict | None:
    """The GPU's name and its free and used memory in MiB (for /v1/health), None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    i = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(i)
    return {
        "name": torch.cuda.get_device_name(i),
        "free_mb": free >> 20,
        "used_mb": (total - free) >> 20,
        "total_mb": total >> 20,
    }
