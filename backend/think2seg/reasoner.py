"""The reasoner: a Qwen2.5-VL-class model that reads a tile and a query and writes reasoning + prompts.

One `from_pretrained` call loads a hub id or a local folder through transformers' Auto classes, so
Think2Seg-RS-3B/7B, Qwen2.5-VL and Qwen3-VL checkpoints all load the same way. Several tiles go through one
`generate` call (left padding). CUDA + bf16 when present, CPU float32 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .options import ANSWER_BUDGET  # noqa: E402  (re-exported: the budget is an option, defined there)
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
    "do_sample": False, "num_beams": 1, "num_beam_groups": 1, "num_return_sequences": 1,
    "temperature": 1.0, "top_k": SAMPLE_TOP_K, "top_p": 1.0, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
    "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "length_penalty": 1.0, "diversity_penalty": 0.0,
    "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "min_length": 0, "early_stopping": False,
    "renormalize_logits": False, "remove_invalid_values": False, "use_cache": True,
    "output_scores": False, "return_dict_in_generate": False,
}


def eos_token_ids(tokenizer) -> list[int]:
    """The ids that end a completion: EOS_TOKENS as this tokenizer spells them, plus its own eos."""
    ids = {tokenizer.convert_tokens_to_ids(t) for t in EOS_TOKENS} | {tokenizer.eos_token_id}
    unk = getattr(tokenizer, "unk_token_id", None)  # what an unknown name maps to: not an eos
    return sorted(i for i in ids if i is not None and i != unk)


def neutral_generation_config(checkpoint=None):
    """An empty `GenerationConfig` keeping only a checkpoint's special token ids: what a model carries when
    we own its decoding, so that nothing of the checkpoint's file fills a setting a caller left unset."""
    from transformers import GenerationConfig

    keep = ("bos_token_id", "eos_token_id", "pad_token_id")
    return GenerationConfig(**{k: getattr(checkpoint, k, None) for k in keep if getattr(checkpoint, k, None) is not None})


def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class ReasonerOutput:
    text: str  # the whole completion: <think>...</think><answer>...</answer>
    new_tokens: int
    forced_answer: bool  # the reasoning budget ran out and the answer block was opened for the model


def to_model_image(rgb: np.ndarray, frame: int = MODEL_FRAME) -> Image.Image:
    """The square image the published weights see (the reference resizes with LANCZOS, aspect not kept)."""
    return Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).resize((frame, frame), Image.LANCZOS)


class Reasoner:
    """Life cycle like SAM2ImagePredictor: load once, call `generate` many times."""

    def __init__(self, model, processor, model_id: str, device: torch.device, frame: int = MODEL_FRAME):
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

    @classmethod
    def from_pretrained(
        cls,
        model_id: str = DEFAULT_REASONER,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        attn_implementation: str | None = None,
    ) -> Reasoner:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        path = resolve_reasoner(model_id)
        dev = pick_device(device)
        if dtype is None:
            dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
        kwargs = {"dtype": dtype}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs).to(dev).eval()
        processor = AutoProcessor.from_pretrained(path)
        return cls(model, processor, model_id, dev)

    # -- inputs -------------------------------------------------------------------------------------------
    def prompt_text(self, query: str) -> str:
        return self.processor.apply_chat_template(build_conversation(query), add_generation_prompt=True, tokenize=False)

    def encode(self, images: list[Image.Image], texts: list[str]) -> dict:
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
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
        settings.update(max_new_tokens=int(max_new_tokens), eos_token_id=list(self.eos_token_ids),
                        pad_token_id=self.pad_token_id)
        settings.update(overrides)
        return GenerationConfig(**settings)

    def decoding_settings(self, max_new_tokens: int, answer_budget: int = 0, sample: bool = False,
                          constrain_answer: bool = False) -> dict:
        """What a result's provenance records about its decoding (docs/api.md, `models.generation`)."""
        cfg = self.generation_config(max_new_tokens, sample=sample)
        keep = ("do_sample", "num_beams", "temperature", "top_k", "top_p", "repetition_penalty",
                "no_repeat_ngram_size", "max_new_tokens", "eos_token_id", "pad_token_id")
        out = {k: getattr(cfg, k) for k in keep}
        out["strategy"] = "sample" if sample else "greedy"
        out["forced_answer_tokens"] = int(answer_budget)
        out["constrain_answer"] = bool(constrain_answer)
        return out

    @torch.inference_mode()
    def _generate(self, images, texts, max_new_tokens: int, sample: bool = False, logits_processor=None,
                  **gen_kwargs) -> tuple[list[str], list[int], list[bool]]:
        inputs = self.encode(images, texts)
        extra = {"logits_processor": logits_processor} if logits_processor is not None else {}
        out = self.model.generate(
            **inputs, generation_config=self.generation_config(max_new_tokens, sample=sample, **gen_kwargs), **extra,
        )
        new = out[:, inputs["input_ids"].shape[1] :]
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
        **gen_kwargs,
    ) -> list[ReasonerOutput]:
        """One batched `generate` over tiles; a completion cut by the budget gets its answer block opened.

        The budget bounds the whole first pass; a completion still without `</answer>` when it runs out is
        continued from `...</think>\n<answer>` for at most `answer_budget` tokens, so a long reasoning still
        ends in prompts instead of a parse failure (`answer_budget=0`: no forced answer, as the reference).
        """
        return self.generate_images([to_model_image(r, self.frame) for r in rgbs], queries, max_reasoning_tokens,
                                    answer_budget, **gen_kwargs)

    def generate_images(
        self,
        images: list[Image.Image],
        queries: list[str],
        max_reasoning_tokens: int = 1024,
        answer_budget: int = ANSWER_BUDGET,
        sample: bool = False,
        constrain_answer: bool = False,
        **gen_kwargs,
    ) -> list[ReasonerOutput]:
        """`generate` for images already in the model frame (see `to_model_image`).

        `constrain_answer`: the tokens after `<answer>` follow the answer's JSON grammar (`constrained.py`);
        the reasoning stays free. `gen_kwargs` are GenerationConfig overrides (see `generation_config`).
        """
        if len(images) != len(queries):
            raise ValueError("one query per image")
        prompts = [self.prompt_text(q) for q in queries]
        texts, counts, finished = self._generate(
            images, prompts, max_reasoning_tokens, sample=sample,
            logits_processor=self._answer_constraint(len(prompts), False) if constrain_answer else None,
            **dict(gen_kwargs),
        )
        forced = [False] * len(texts)
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
                [images[i] for i in todo], [prompts[i] + p for i, p in zip(todo, prefixes)], answer_budget,
                sample=sample,
                logits_processor=self._answer_constraint(len(todo), True, [p[p.rindex("<answer>") + 8:] for p in prefixes])
                if constrain_answer else None,
                **dict(gen_kwargs),
            )
            for i, p, m, c in zip(todo, prefixes, more, more_counts):
                texts[i], counts[i], forced[i] = p + m, counts[i] + c, True
        return [ReasonerOutput(t, c, f) for t, c, f in zip(texts, counts, forced)]

    def _answer_constraint(self, batch: int, in_answer: bool, answer_so_far: list[str] | None = None):
        """The logits processor that keeps the answer block in the prompt's JSON shape (constrained.py)."""
        from .constrained import answer_constraint

        return answer_constraint(self.processor.tokenizer, self.eos_token_ids, batch, in_answer, answer_so_far)
