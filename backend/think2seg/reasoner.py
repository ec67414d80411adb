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

from .prompt_template import MODEL_FRAME, TEMPLATE_ID, build_conversation
from .weights import DEFAULT_REASONER, resolve_reasoner

#: Tokens allowed for the answer block after the reasoning budget forced the model to conclude.
ANSWER_BUDGET = 256


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
        self.eos_token_ids = sorted(
            {i for i in (tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id, tok.pad_token_id) if i is not None}
        )

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
    @torch.inference_mode()
    def _generate(self, images, texts, max_new_tokens: int, **gen_kwargs) -> tuple[list[str], list[int], list[bool]]:
        inputs = self.encode(images, texts)
        out = self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=gen_kwargs.pop("do_sample", False),
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.processor.tokenizer.pad_token_id,
            **gen_kwargs,
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
        continued from `...</think>\\n<answer>` for at most `answer_budget` tokens, so a long reasoning still
        ends in prompts instead of a parse failure.
        """
        return self.generate_images([to_model_image(r, self.frame) for r in rgbs], queries, max_reasoning_tokens,
                                    answer_budget, **gen_kwargs)

    def generate_images(
        self,
        images: list[Image.Image],
        queries: list[str],
        max_reasoning_tokens: int = 1024,
        answer_budget: int = ANSWER_BUDGET,
        **gen_kwargs,
    ) -> list[ReasonerOutput]:
        """`generate` for images already in the model frame (see `to_model_image`)."""
        if len(images) != len(queries):
            raise ValueError("one query per image")
        prompts = [self.prompt_text(q) for q in queries]
        texts, counts, finished = self._generate(images, prompts, max_reasoning_tokens, **dict(gen_kwargs))
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
            more, more_counts, _ = self._generate(
                [images[i] for i in todo], [prompts[i] + p for i, p in zip(todo, prefixes)], answer_budget,
                **dict(gen_kwargs),
            )
            for i, p, m, c in zip(todo, prefixes, more, more_counts):
                texts[i], counts[i], forced[i] = p + m, counts[i] + c, True
        return [ReasonerOutput(t, c, f) for t, c, f in zip(texts, counts, forced)]

