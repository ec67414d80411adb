"""Scripted answers for benchmarks with random weights (scripts/gpu_check.py, `serve --pipeline-hook`).

Random weights write noise that never parses, so a benchmark of random weights would skip SAM2 and stop at a
random length. With `script_answers`, the reasoner's logits-processor hook (`Reasoner.logits_processor_factory`)
makes every answer a well-formed one of exactly N tokens: each query costs the forward passes of N tokens and
reaches SAM2 with the tiny reasoner's box and points. Test content, not product: the wheel does not ship it.
"""

from __future__ import annotations

from .tiny_models import KNOWN_COMPLETION


def scripted_answer_ids(tokenizer, n_tokens: int) -> list[int]:
    """Exactly `n_tokens` token ids of a well-formed answer (reasoning filler, one instance, `<|im_end|>`).

    Random weights write noise that never parses, so a benchmark of random weights would skip SAM2 and stop at
    a random length; scripted, every query costs the same forward passes per token as a real one, ends after
    `n_tokens` tokens and reaches SAM2 with the tiny reasoner's box and points.
    """
    think_end = KNOWN_COMPLETION.index("</think>")
    head = tokenizer.encode("<think>", add_special_tokens=False)
    tail = tokenizer.encode(KNOWN_COMPLETION[think_end:], add_special_tokens=False)
    filler = tokenizer.encode(" water", add_special_tokens=False)
    end = [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    k = n_tokens - len(head) - len(tail) - len(end)
    if k < 0 or len(filler) != 1:
        raise ValueError(f"a scripted answer needs at least {len(head) + len(tail) + 1} tokens (got {n_tokens})")
    return head + filler * k + tail + end


class ScriptedTokens:
    """A logits processor that makes `generate` write `ids`, one per step (see `scripted_answer_ids`).

    One instance per `generate` call: it takes the first length it sees as the prompt's.
    """

    def __init__(self, ids: list[int]):
        self.ids = ids
        self.start: int | None = None

    def __call__(self, input_ids, scores):
        import torch

        if self.start is None:
            self.start = input_ids.shape[1]
        want = self.ids[min(input_ids.shape[1] - self.start, len(self.ids) - 1)]
        forced = torch.full_like(scores, float("-inf"))
        forced[:, want] = 0.0
        return forced


def script_answers(pipeline, n_tokens: int | str) -> None:
    """Make every answer of `pipeline`'s reasoner (a Pipeline or a Reasoner) the scripted answer of
    `n_tokens` tokens. As a serve hook: `--pipeline-hook think2seg.testing.scripted:script_answers=90`."""
    reasoner = getattr(pipeline, "reasoner", pipeline)
    ids = scripted_answer_ids(reasoner.processor.tokenizer, int(n_tokens))
    reasoner.logits_processor_factory = lambda: ScriptedTokens(ids)
