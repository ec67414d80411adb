"""The reasoner: a Qwen2.5-VL-class model that reads a tile and a query and writes reasoning + prompts.

One `from_pretrained` call loads a hub id or a local folder through transformers' Auto classes, so
Think2Seg-RS-3B/7B, Qwen2.5-VL and Qwen3-VL checkpoints all load the same way. Several tiles go through one
`generate` call (left padding). CUDA + bf16 when present, CPU float32 otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .caches import ByteLRU, ViewPrefix, shared_prefix_length, tensor_bytes
from .decoding import FastDecoding, resolve_decoding
from .options import ANSWER_BUDGET  # re-exported: the forced answer budget is an option, defined there
from .prompt_template import MODEL_FRAME, TEMPLATE_ID, build_conversation
from .weights import DEFAULT_REASONER, resolve_reasoner

#: The tokens that end a completion, by name: Qwen's `<|im_end|>` (151645) and `<|endoftext|>` (151643), the
#: reference's eos pair (test_think2seg-rs_qwen.py:336-345 with the checkpoint's generation_config.json).
EOS_TOKENS = ("<|im_end|>", "<|endoftext|>")

#: Top-k of sampled decoding: transformers 4.49's default, which the reference's training sampled with.
SAMPLE_TOP_K = 50

#: Every decoding setting transformers would otherwise fill in from the checkpoint's generation_config.json
#: (Qwen2.5-VL checkpoints carry repetition_penalty 1.05 and sampling settings), at its neutral value:
#: greedy, no penalties, no n-gram bans, no length constraints. `Reasoner.generation_config` starts from it.
NEUTRAL_DECODING: dict = {
    "do_sample": False,
    "num_beams": 1,
    "num_beam_groups": 1,
    "num_return_sequences": 1,
    "temperature": 1.0,
    "top_k": SAMPLE_TOP_K,
    "top_p": 1.0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "diversity_penalty": 0.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "min_length": 0,
    "early_stopping": False,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "use_cache": True,
    "output_scores": False,
    "return_dict_in_generate": False,
}


def eos_token_ids(tokenizer) -> list[int]:
    """The ids that end a completion: EOS_TOKENS as this tokenizer spells them, plus its own eos."""
    ids = {tokenizer.convert_tokens_to_ids(t) for t in EOS_TOKENS} | {tokenizer.eos_token_id}
    unk = getattr(tokenizer, "unk_token_id", None)  # what an unknown name maps to: not an eos
    return sorted(i for i in ids if i is not None and i != unk)


#: Vision-tower outputs kept for views asked again (an 840 frame is 900 x 2048 values for the 3B: 3.7 MB in
#: bf16, 7.4 MB in float32), so 512 MiB keeps ~70-140 views.
DEFAULT_VIEW_CACHE_BYTES = 512 * 2**20
#: Model types whose vision features `Reasoner.views` can keep (their tower's output is the pooled features only).
VIEW_REUSE_MODELS = ("qwen2_vl", "qwen2_5_vl")
#: Set to 0 to prefill every prompt whole instead of starting a question on a known view from its cached prefix
#: (`ViewPrefix`). Greedy tokens are the same either way in float32 (tests/backend/test_speed.py); in bf16 a
#: prefill cut in two can differ from one whole prefill in the last bits, which may rarely flip a close call.
PREFIX_REUSE_ENV = "THINK2SEG_PREFIX_REUSE"
#: The static caches of the prefix route are sized in steps of this many tokens: one compiled decode graph each.
STATIC_CACHE_STEP = 256
#: Questions that probe where the template's shared prefix ends (a letter, digit, space, quote or line break may
#: each merge with the token before it in a byte-level BPE).
PREFIX_PROBES = ("a", "0", " ", '"', "\n", "É")


def neutral_generation_config(checkpoint=None):
    """An empty `GenerationConfig` keeping only a checkpoint's special token ids: what a model carries when
    we own its decoding, so that nothing of the checkpoint's file fills a setting a caller left unset."""
    from transformers import GenerationConfig

    keep = ("bos_token_id", "eos_token_id", "pad_token_id")
    return GenerationConfig(
        **{k: getattr(checkpoint, k, None) for k in keep if getattr(checkpoint, k, None) is not None}
    )


#: The image processor backend, chosen here rather than left to the installed transformers' default (which
#: changed across versions: the reference's 4.49 took the slow PIL/numpy processor, 5.x defaults to torchvision).
#: On the 840 x 840 frame nothing is resized and the two differ by at most one float32 ulp in the normalised
#: pixels, none in bfloat16 (docs/method.md, "What cannot match exactly"); torchvision is the faster.
IMAGE_PROCESSOR_BACKEND = "torchvision"


def load_processor(path):
    """The checkpoint's processor with the image processor backend named by `IMAGE_PROCESSOR_BACKEND` (one
    place for inference and training): `backend=` on transformers 5, `use_fast=` before it."""
    import transformers
    from transformers import AutoProcessor

    if int(transformers.__version__.split(".")[0]) >= 5:
        return AutoProcessor.from_pretrained(path, backend=IMAGE_PROCESSOR_BACKEND)
    return AutoProcessor.from_pretrained(path, use_fast=IMAGE_PROCESSOR_BACKEND == "torchvision")


def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def prefix_reuse_supported(model) -> bool:
    """Prefix reuse is built on transformers 5's cache API (`Cache.layers`, `Cache.update`) and on Qwen2/2.5-VL's
    rope offset (`rope_deltas`); other models and older transformers prefill every prompt whole."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return (
        major >= 5
        and getattr(model.config, "model_type", "") in VIEW_REUSE_MODELS
        and hasattr(getattr(model, "model", None), "rope_deltas")
    )


def image_patches(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, which: list[int]) -> torch.Tensor:
    """The rows of Qwen-VL's `pixel_values` (every image's patches, one after the other) of images `which`."""
    counts = image_grid_thw.prod(-1).tolist()
    starts = [sum(counts[:i]) for i in range(len(counts))]
    return torch.cat([pixel_values[starts[i] : starts[i] + counts[i]] for i in which])


def _cache_argument(model) -> str:
    """The name under which this transformers' models take a KV cache (`cache` since 5.x, `past_key_values`)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _dynamic_cache(model):
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def _rope_deltas(model):
    return model.model.rope_deltas


def _set_rope_deltas(model, value) -> None:
    model.model.rope_deltas = value


#: `on_token(n)`: called after each generated token with how many the longest completion has so far; True from it
#: stops the whole generation at once (a cancel).
TokenWatch = Callable[[int], bool]


def step_watch(on_token: TokenWatch, prompt_tokens: int, offset: int = 0):
    """A transformers StoppingCriteria calling `on_token(offset + new tokens)` after each decoding step; it stops
    every row when that returns True. Nothing is synchronised with the device: the count is the tensor's shape."""
    from transformers import StoppingCriteria

    class StepWatch(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            stop = bool(on_token(offset + input_ids.shape[1] - prompt_tokens))
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return StepWatch()


@dataclass
class ReasonerOutput:
    text: str  # the whole completion: <think>...</think><answer>...</answer>
    new_tokens: int
    forced_answer: bool  # the reasoning budget ran out and the answer block was opened for the model


#: Strips (and threads) of the model-frame resize: on this project's 2-vCPU machine 2 (19-20 against 22-23 ms
#: for one call, warm); a GPU machine's more cores take up to 4 (not measured there yet: no device lent).
RESIZE_THREADS = min(4, os.cpu_count() or 1)


def to_model_image(rgb: np.ndarray, frame: int = MODEL_FRAME) -> Image.Image:
    """The square image the published weights see (the reference resizes with LANCZOS, aspect not kept).

    Pixel for pixel `Image.resize((frame, frame), LANCZOS)`, on `RESIZE_THREADS` cores: Pillow resizes in two passes
    through an 8-bit image (horizontal, then vertical); rows are independent in the first pass and columns in
    the second, so each pass is cut into strips resized in threads (Pillow releases the GIL while it resamples).
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    n = RESIZE_THREADS
    if n < 2 or w * h < 512 * 512:
        return Image.fromarray(rgb).resize((frame, frame), Image.LANCZOS)
    pool = _resize_pool()
    if h <= w:  # Pillow's order: the pass that leaves the smaller intermediate first (horizontal on a tie)
        return _resize_columns(pool, _resize_rows(pool, rgb, frame, n), frame, n)
    return _resize_rows(pool, _resize_columns(pool, Image.fromarray(rgb), frame, n), frame, n)


def _resize_rows(pool, src: np.ndarray | Image.Image, width: int, n: int) -> Image.Image:
    """The horizontal LANCZOS pass, in row strips. From an array each thread converts its own strip to
    Pillow's layout (no whole-image copy to crop from: ~1.3 ms less for a 1024 x 1024 tile)."""
    if isinstance(src, np.ndarray):
        h = src.shape[0]
        strip = lambda a, b: Image.fromarray(src[a:b])  # noqa: E731
    else:
        h = src.size[1]
        strip = lambda a, b: src.crop((0, a, src.size[0], b))  # noqa: E731
    ys = [h * k // n for k in range(n + 1)]
    parts = pool.map(lambda k: strip(ys[k], ys[k + 1]).resize((width, ys[k + 1] - ys[k]), Image.LANCZOS), range(n))
    out = Image.new("RGB", (width, h))
    for k, part in enumerate(parts):
        out.paste(part, (0, ys[k]))
    return out


def _resize_columns(pool, im: Image.Image, height: int, n: int) -> Image.Image:
    """The vertical LANCZOS pass, in column strips."""
    w, h = im.size
    xs = [w * k // n for k in range(n + 1)]
    parts = pool.map(
        lambda k: im.crop((xs[k], 0, xs[k + 1], h)).resize((xs[k + 1] - xs[k], height), Image.LANCZOS), range(n)
    )
    out = Image.new("RGB", (w, height))
    for k, part in enumerate(parts):
        out.paste(part, (xs[k], 0))
    return out


@functools.cache
def _resize_pool():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=RESIZE_THREADS, thread_name_prefix="think2seg-resize")


class Reasoner:
    """Life cycle like SAM2ImagePredictor: load once, call `generate` many times."""

    def __init__(
        self,
        model,
        processor,
        model_id: str,
        device: torch.device,
        frame: int = MODEL_FRAME,
        fast: FastDecoding | None = None,
        view_cache_bytes: int = DEFAULT_VIEW_CACHE_BYTES,
    ):
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.device = device
        self.frame = frame
        self.template_id = TEMPLATE_ID
        tok = processor.tokenizer
        tok.padding_side = "left"  # batched generation needs the prompts flush right
        self.eos_token_ids = eos_token_ids(tok)
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_token_ids[0]
        # Decoding is ours: the checkpoint's generation_config.json is kept for the record only, and the
        # model's is emptied, so that nothing of it fills a setting our config leaves unset.
        self.checkpoint_generation_config = getattr(model, "generation_config", None)
        if self.checkpoint_generation_config is not None:
            model.generation_config = neutral_generation_config(self.checkpoint_generation_config)
        #: None = plain `generate` (dynamic cache); else the fast path (think2seg.decoding)
        self.fast = fast
        #: the vision tower's output per view (content key -> per-image features), kept for questions asked
        #: again on the same view; owned here like the segmenter owns its embeddings
        self.views = ByteLRU(view_cache_bytes, tensor_bytes)
        #: a hook: called once per `generate`, it gives a logits processor applied after the reasoner's own
        #: (None: none). Benchmarks with random weights script every answer with it (think2seg.testing.scripted).
        self.logits_processor_factory: Callable[[], object] | None = None
        #: start questions on a known view from its cached prompt prefix (`_resume_from_prefix`)
        self.prefix_reuse = prefix_reuse_supported(model) and os.environ.get(PREFIX_REUSE_ENV, "1").strip() != "0"
        self._static_caches: OrderedDict[tuple, object] = OrderedDict()  # the fast route's, by (rows, length)
        self._install_view_reuse()

    @classmethod
    def from_pretrained(
        cls,
        model_id: str = DEFAULT_REASONER,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        attn_implementation: str | None = None,
        decoding: str | FastDecoding | None = "auto",
    ) -> Reasoner:
        """`decoding`: auto (the fast path on CUDA, plain on the CPU), fast or plain (think2seg.decoding)."""
        from transformers import AutoModelForImageTextToText

        path = resolve_reasoner(model_id)
        dev = pick_device(device)
        if dtype is None:
            dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
        kwargs = {"dtype": dtype}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs).to(dev).eval()
        processor = load_processor(path)
        return cls(model, processor, model_id, dev, fast=resolve_decoding(decoding, dev))

    def with_decoding(self, decoding: str | FastDecoding | None) -> Reasoner:
        """The same loaded model and processor, decoding another way (benchmarks compare the two paths)."""
        other = copy.copy(self)
        other.fast = resolve_decoding(decoding, self.device)
        return other

    @property
    def decoding(self) -> str:
        return "plain" if self.fast is None else "fast"

    # -- inputs -------------------------------------------------------------------------------------------
    def prompt_text(self, query: str) -> str:
        return self.processor.apply_chat_template(build_conversation(query), add_generation_prompt=True, tokenize=False)

    def encode(self, images: list[Image.Image], texts: list[str], bucket: bool = True) -> dict:
        """The model's inputs; `bucket`: on the fast path, pad to its length multiple (left padding)."""
        kwargs = {"padding": True, "return_tensors": "pt"}
        if bucket and self.fast is not None and self.fast.pad_to_multiple > 1:
            # compiled decode graphs are specialised to the cache length: one per length bucket
            kwargs["pad_to_multiple_of"] = self.fast.pad_to_multiple
        inputs = self.processor(text=texts, images=images, **kwargs)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}

    # -- generation ---------------------------------------------------------------------------------------
    def generation_config(self, max_new_tokens: int, sample: bool = False, **overrides):
        """A complete `transformers.GenerationConfig`, built from scratch for every generate call.

        Greedy (the reference's evaluation, test_think2seg-rs_qwen.py:336-342) with no penalty, no n-gram ban
        and our eos set, so the checkpoint's generation_config.json never applies. `sample=True` (training and
        measurements only) samples at temperature 1 with top-k 50. `overrides` are GenerationConfig fields
        (the fast path adds its cache and compile settings here).
        """
        from transformers import GenerationConfig

        settings = dict(NEUTRAL_DECODING)
        if sample:
            settings["do_sample"] = True
        settings.update(
            max_new_tokens=int(max_new_tokens), eos_token_id=list(self.eos_token_ids), pad_token_id=self.pad_token_id
        )
        settings.update(overrides)
        return GenerationConfig(**settings)

    def decoding_settings(
        self, max_new_tokens: int, answer_budget: int = 0, sample: bool = False, constrain_answer: bool = False
    ) -> dict:
        """What a result's provenance records about its decoding (docs/api.md, `models.generation`)."""
        cfg = self.generation_config(max_new_tokens, sample=sample)
        keep = (
            "do_sample",
            "num_beams",
            "temperature",
            "top_k",
            "top_p",
            "repetition_penalty",
            "no_repeat_ngram_size",
            "max_new_tokens",
            "eos_token_id",
            "pad_token_id",
        )
        out = {k: getattr(cfg, k) for k in keep}
        out["strategy"] = "sample" if sample else "greedy"
        out["forced_answer_tokens"] = int(answer_budget)
        out["constrain_answer"] = bool(constrain_answer)
        #: whether a question on a known view may start from its kept prompt prefix (`_resume_from_prefix`)
        out["prefix_reuse"] = bool(self.prefix_reuse)
        return out

    def _install_view_reuse(self) -> None:
        """Route the model's vision tower through `self.views` (see `_with_view_keys`).

        Qwen2-VL/Qwen2.5-VL call `model.model.get_image_features(pixel_values, image_grid_thw)` once per
        prefill for all images of the batch; the wrapper answers images whose key is cached from the cache and
        runs the tower once on the others. Other models (Qwen3-VL's tower also returns deepstack features) are
        left as they are: their views are not reused.
        """
        if getattr(self.model.config, "model_type", "") not in VIEW_REUSE_MODELS:
            return
        inner = getattr(self.model, "model", None)
        original = getattr(inner, "get_image_features", None)
        if original is None or getattr(original, "_think2seg_views", False):
            return

        def get_image_features(pixel_values, image_grid_thw=None, **kwargs):
            # set by `_with_view_keys` of whichever Reasoner sharing this model is generating
            views, keys = getattr(inner, "_think2seg_view_keys", (None, None))
            if keys is None or image_grid_thw is None or len(keys) != int(image_grid_thw.shape[0]):
                return original(pixel_values, image_grid_thw, **kwargs)
            found = {k: views.get(k) for k in dict.fromkeys(k for k in keys if k is not None)}
            # one tower call for the images not cached (a key repeated in the batch is computed once)
            todo, seen = [], set()
            for i, k in enumerate(keys):
                if k is None or (found[k] is None and k not in seen):
                    todo.append(i)
                    seen.add(k)
            kind = None
            if todo:
                out = original(image_patches(pixel_values, image_grid_thw, todo), image_grid_thw[todo], **kwargs)
                kind = type(out)
                pooled = out.pooler_output if hasattr(out, "pooler_output") else out
                # own copies: a slice would keep the whole batch's features alive in the cache
                computed = {i: f.clone() for i, f in zip(todo, pooled)}
                for i in todo:
                    if keys[i] is not None:
                        found[keys[i]] = computed[i]
                        views.put(keys[i], computed[i])
            feats = tuple(computed[i] if keys[i] is None else found[keys[i]] for i in range(len(keys)))
            if kind is tuple or kind is list:  # older transformers return the split features themselves
                return feats
            from transformers.modeling_outputs import BaseModelOutputWithPooling

            return BaseModelOutputWithPooling(pooler_output=feats)

        get_image_features._think2seg_views = True
        inner.get_image_features = get_image_features

    @contextlib.contextmanager
    def _with_view_keys(self, keys: list[str | None] | None):
        inner = getattr(self.model, "model", None)
        if inner is None:
            yield
            return
        inner._think2seg_view_keys = (self.views, list(keys) if keys is not None else None)
        try:
            yield
        finally:
            inner._think2seg_view_keys = (None, None)

    @torch.inference_mode()
    def _generate(
        self,
        images,
        texts,
        max_new_tokens: int,
        sample: bool = False,
        logits_processor=None,
        keys: list[str | None] | None = None,
        on_token: TokenWatch | None = None,
        token_offset: int = 0,
        **gen_kwargs,
    ) -> tuple[list[str], list[int], list[bool]]:
        from transformers import LogitsProcessorList, StoppingCriteriaList

        # keyed views: questions start from their view's cached prompt prefix (`_resume_from_prefix`)
        from_prefix = self._prefix_route(keys)
        inputs = self.encode(images, texts, bucket=not from_prefix)
        config = self.generation_config(max_new_tokens, sample=sample, **gen_kwargs)
        if self.fast is not None:
            config = self.fast.apply(config, self.device)
        model_inputs = inputs
        if from_prefix:
            with self._with_view_keys(keys):
                model_inputs = self._resume_from_prefix(keys, inputs, config) or inputs
        processors = LogitsProcessorList()
        if logits_processor is not None:
            processors.extend(logits_processor if isinstance(logits_processor, list) else [logits_processor])
        if self.logits_processor_factory is not None:
            processors.append(self.logits_processor_factory())
        extra = {"logits_processor": processors} if processors else {}
        if on_token is not None:
            prompt_tokens = model_inputs["input_ids"].shape[1]
            extra["stopping_criteria"] = StoppingCriteriaList([step_watch(on_token, prompt_tokens, token_offset)])
        with self._with_view_keys(keys):
            out = self.model.generate(**model_inputs, generation_config=config, **extra)
        new = out[:, model_inputs["input_ids"].shape[1] :]
        texts_out, counts, finished = [], [], []
        for row in new:
            ids = row.tolist()
            ended = any(i in self.eos_token_ids for i in ids)
            n = next((k + 1 for k, i in enumerate(ids) if i in self.eos_token_ids), len(ids))
            texts_out.append(
                self.processor.tokenizer.decode(ids[:n], skip_special_tokens=True, clean_up_tokenization_spaces=False)
            )
            counts.append(n)
            finished.append(ended)
        return texts_out, counts, finished

    def generate(
        self,
        rgbs: list[np.ndarray],
        queries: list[str],
        max_reasoning_tokens: int = 1024,
        answer_budget: int = ANSWER_BUDGET,
        keys: list[str | None] | None = None,
        **gen_kwargs,
    ) -> list[ReasonerOutput]:
        """One batched `generate` over tiles; a completion cut by the budget gets its answer block opened.

        The budget bounds the whole first pass; a completion still without `</answer>` when it runs out is
        continued from `...</think>\n<answer>` for at most `answer_budget` tokens, so a long reasoning still
        ends in prompts instead of a parse failure (`answer_budget=0`: no forced answer, as the reference).
        """
        return self.generate_images(
            [to_model_image(r, self.frame) for r in rgbs],
            queries,
            max_reasoning_tokens,
            answer_budget,
            keys=keys,
            **gen_kwargs,
        )

    def generate_images(
        self,
        images: list[Image.Image],
        queries: list[str],
        max_reasoning_tokens: int = 1024,
        answer_budget: int = ANSWER_BUDGET,
        sample: bool = False,
        constrain_answer: bool = False,
        keys: list[str | None] | None = None,
        on_token: TokenWatch | None = None,
        **gen_kwargs,
    ) -> list[ReasonerOutput]:
        """`generate` for images already in the model frame (see `to_model_image`).

        `on_token(n)` (a `TokenWatch`) is called after every decoding step with the tokens generated so far (the
        forced answer's counted after the whole reasoning budget): progress for a caller whose answer takes
        minutes. When it returns True the generation stops at once and no answer is forced: the texts are then
        cut short, for a caller that is cancelling.
        `constrain_answer`: the tokens after `<answer>` follow the answer's JSON grammar (`constrained.py`);
        the reasoning stays free. `gen_kwargs` are GenerationConfig overrides (see `generation_config`).
        `keys`: the content key of each image's view (`segmenter.image_key`), or None: a view whose key was seen
        before reuses its vision features (`self.views`). `gen_kwargs` override fields of the generation config.
        """
        if len(images) != len(queries):
            raise ValueError("one query per image")
        if keys is not None and len(keys) != len(images):
            raise ValueError("one key per image")
        prompts = [self.prompt_text(q) for q in queries]
        stopped = False

        def watch(n: int) -> bool:
            nonlocal stopped
            stopped = stopped or bool(on_token(n))
            return stopped

        texts, counts, finished = self._generate(
            images,
            prompts,
            max_reasoning_tokens,
            sample=sample,
            logits_processor=self._answer_constraint(len(prompts), False) if constrain_answer else None,
            keys=keys,
            on_token=watch if on_token is not None else None,
            **dict(gen_kwargs),
        )
        forced = [False] * len(texts)
        if stopped:  # the caller is cancelling: no answer is forced
            return [ReasonerOutput(t, c, False) for t, c in zip(texts, counts)]
        todo = [i for i, t in enumerate(texts) if not finished[i] and "</answer>" not in t]
        if todo and answer_budget > 0:
            prefixes = []
            for i in todo:
                t = texts[i]
                if "<answer>" not in t:
                    t = t if "</think>" in t else t.rstrip() + "</think>"
                    t += "\n<answer>"
                prefixes.append(t)
            # A prefix already inside the answer continues it under the constraint from where it stands.
            more, more_counts, _ = self._generate(
                [images[i] for i in todo],
                [prompts[i] + p for i, p in zip(todo, prefixes)],
                answer_budget,
                sample=sample,
                logits_processor=self._answer_constraint(
                    len(todo), True, [p[p.rindex("<answer>") + 8 :] for p in prefixes]
                )
                if constrain_answer
                else None,
                keys=[keys[i] for i in todo] if keys is not None else None,
                on_token=watch if on_token is not None else None,
                token_offset=int(max_reasoning_tokens),
                **dict(gen_kwargs),
            )
            for i, p, m, c in zip(todo, prefixes, more, more_counts):
                texts[i], counts[i], forced[i] = p + m, counts[i] + c, True
        return [ReasonerOutput(t, c, f) for t, c, f in zip(texts, counts, forced)]

    # -- asking again on the same view: its prompt prefix ---------------------------------------------------
    @functools.cached_property
    def _prefix_text_tokens(self) -> int:
        """Tokens of the prompt text (image placeholder not expanded) that every question shares."""
        tok = self.processor.tokenizer
        return shared_prefix_length(
            [tok(self.prompt_text(q), add_special_tokens=False)["input_ids"] for q in PREFIX_PROBES]
        )

    def prefix_length(self, input_ids: torch.Tensor) -> int | None:
        """How many leading tokens of one prompt's `input_ids` belong to the prefix every question shares
        (system prompt, image, the template up to the question); None if that prefix does not hold the image."""
        image_token = getattr(self.model.config, "image_token_id", None)
        if image_token is None:
            return None
        at = (input_ids == image_token).nonzero()
        n_image = int(at.numel())
        if n_image == 0:
            return None
        n = self._prefix_text_tokens + n_image - 1  # the processor expands the one image token to n_image
        return n if int(at[-1]) < n < int(input_ids.shape[-1]) else None

    def _prefix_route(self, keys: list[str | None] | None) -> bool:
        """Whether a generate starts from cached prefixes: every image keyed, and either one question (the
        service: its prefix is kept for the next one) or a batch where a view repeats or is already kept (a
        batch of distinct new tiles would only copy and churn prefixes it never uses again)."""
        if not self.prefix_reuse or not keys or any(k is None for k in keys):
            return False
        return len(keys) == 1 or len(set(keys)) < len(keys) or any(f"prefix/{k}" in self.views for k in keys)

    def _resume_from_prefix(self, keys: list[str], inputs: dict, config) -> dict | None:
        """`generate` kwargs that start each row from its view's prompt prefix; None: not applicable.

        Every prefix has the same length (one template, one model frame), so each row is laid out as
        [its prefix][padding][its question], the padding masked: positions count unmasked tokens, so each
        question sits right after its prefix as in a whole prompt. Prefixes not kept are prefilled first, one
        forward for all of them (with their images); the image tokens are all in the prefixes, so no pixels go
        to `generate`."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        rows = [ids[b, int((mask[b] == 0).sum()) :] for b in range(ids.shape[0])]  # left padding stripped
        lengths = {self.prefix_length(r) for r in rows}
        if len(lengths) != 1 or None in lengths:
            return None
        n = lengths.pop()
        names = [f"prefix/{k}" for k in keys]
        prefixes = {name: self.views.get(name) for name in names}
        todo = [
            b
            for b, name in enumerate(names)
            if names.index(name) == b and (prefixes[name] is None or not torch.equal(prefixes[name].ids, rows[b][:n]))
        ]
        if todo:
            for b, prefix in zip(todo, self._prefill_prefixes(inputs, rows, todo, n)):
                prefixes[names[b]] = prefix
                self.views.put(names[b], prefix)
        # [prefix][padding][question], and the same layout for the token-type ids
        width = n + max(len(r) - n for r in rows)
        model_inputs = {k: v for k, v in inputs.items() if k not in ("pixel_values", "pixel_values_videos")}
        new_ids = torch.full((len(rows), width), self.pad_token_id, dtype=ids.dtype, device=ids.device)
        new_mask = torch.zeros((len(rows), width), dtype=mask.dtype, device=mask.device)
        types = inputs.get("mm_token_type_ids")
        new_types = (
            torch.zeros((len(rows), width), dtype=types.dtype, device=types.device) if types is not None else None
        )
        for b, row in enumerate(rows):
            q = len(row) - n
            new_ids[b, :n], new_ids[b, width - q :] = row[:n], row[n:]
            new_mask[b, :n], new_mask[b, width - q :] = 1, 1
            if new_types is not None:
                t = types[b, ids.shape[1] - len(row) :]
                new_types[b, :n], new_types[b, width - q :] = t[:n], t[n:]
        model_inputs.update(input_ids=new_ids, attention_mask=new_mask)
        if new_types is not None:
            model_inputs["mm_token_type_ids"] = new_types
        kept = [prefixes[name] for name in names]
        total = width + int(config.max_new_tokens)
        cache = (
            self._static_cache(len(rows), total)
            if config.cache_implementation == "static"
            else _dynamic_cache(self.model)
        )
        for i in range(len(kept[0].layers)):
            cache.update(torch.cat([p.layers[i][0] for p in kept]), torch.cat([p.layers[i][1] for p in kept]), i)
        config.cache_implementation = None  # the cache is ours (transformers refuses both)
        _set_rope_deltas(self.model, torch.cat([p.rope_deltas for p in kept]))
        model_inputs[_cache_argument(self.model)] = cache
        return model_inputs

    @torch.inference_mode()  # what is kept holds no autograd graph, whoever calls
    def _prefill_prefixes(self, inputs: dict, rows: list[torch.Tensor], todo: list[int], n: int) -> list[ViewPrefix]:
        """Run the first `n` tokens of rows `todo` (with their images) through the language model, in one
        forward (same length, no padding); their KV caches, one `ViewPrefix` per row."""
        grid = inputs["image_grid_thw"]
        pixels = image_patches(inputs["pixel_values"], grid, todo)
        part = {"input_ids": torch.stack([rows[b][:n] for b in todo])}
        part["attention_mask"] = torch.ones_like(part["input_ids"])
        if inputs.get("mm_token_type_ids") is not None:
            width = inputs["input_ids"].shape[1]
            part["mm_token_type_ids"] = torch.stack(
                [inputs["mm_token_type_ids"][b, width - len(rows[b]) :][:n] for b in todo]
            )
        cache = _dynamic_cache(self.model)
        _set_rope_deltas(self.model, None)  # computed afresh from these prompts' images
        self.model.model(
            **part,
            pixel_values=pixels,
            image_grid_thw=grid[todo],
            use_cache=True,
            **{_cache_argument(self.model): cache},
        )
        deltas = _rope_deltas(self.model)
        return [
            ViewPrefix(
                part["input_ids"][j].clone(),
                [(layer.keys[j : j + 1].clone(), layer.values[j : j + 1].clone()) for layer in cache.layers],
                deltas[j : j + 1].clone(),
            )
            for j in range(len(todo))
        ]

    def _static_cache(self, batch: int, tokens: int):
        """A static cache for `batch` rows of at least `tokens`, emptied: one per (batch, length step), kept
        (compiled graphs and CUDA graphs are tied to its tensors), the two most recently used only."""
        from transformers import StaticCache

        shape = (batch, -(-tokens // STATIC_CACHE_STEP) * STATIC_CACHE_STEP)
        cache = self._static_caches.pop(shape, None)
        if cache is None:
            cache = StaticCache(config=self.model.config, max_cache_len=shape[1])
        else:
            cache.reset()
        self._static_caches[shape] = cache
        while len(self._static_caches) > 2:
            self._static_caches.popitem(last=False)
        return cache

    def _answer_constraint(self, batch: int, in_answer: bool, answer_so_far: list[str] | None = None):
        """The logits processor that keeps the answer block in the prompt's JSON shape (constrained.py)."""
        from .constrained import answer_constraint

        return answer_constraint(self.processor.tokenizer, self.eos_token_ids, batch, in_answer, answer_so_far)
