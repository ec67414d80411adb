"""Measure `constrain_answer`: the share of answers that parse with and without it, and its cost per token.

The model is a tiny Qwen2.5-VL of the real class, randomly initialised and *not* fitted (the .cache tiny
model is fitted to one answer, which would parse either way): it never writes `<answer>` by itself, so each
completion reasons for --reasoning tokens, gets its answer block forced open, and samples the answer
(temperature 1, top-k 50). Each setting draws the same number of answers from the same seeds.

    PYTHONPATH=backend .venv/bin/python scripts/measure_constrained.py [--answers 100] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def measure(folder: Path, answers: int, batch: int, reasoning: int, answer_budget: int, seed: int) -> dict:
    import torch
    from PIL import Image
    from think2seg.prompts import parse_answer
    from think2seg.reasoner import Reasoner

    reasoner = Reasoner.from_pretrained(str(folder), device="cpu")
    image = Image.new("RGB", (112, 112), (90, 110, 80))  # 4 image tokens: the cost is the decoding
    out: dict = {}
    for constrain in (False, True):
        torch.manual_seed(seed)
        texts, tokens, seconds = [], 0, 0.0
        if constrain:  # compile the grammar once, outside the timing, as a server would at start
            reasoner.generate_images([image], ["warm-up"], 2, 2, sample=True, constrain_answer=True)
        for start in range(0, answers, batch):
            n = min(batch, answers - start)
            t0 = time.perf_counter()
            outs = reasoner.generate_images(
                [image] * n,
                [f"the ponds, view {start + k}" for k in range(n)],
                max_reasoning_tokens=reasoning,
                answer_budget=answer_budget,
                sample=True,
                constrain_answer=constrain,
            )
            seconds += time.perf_counter() - t0
            texts += [o.text for o in outs]
            tokens += sum(o.new_tokens for o in outs)
            print(
                f"{'constrained' if constrain else 'free'}: {len(texts)} answers, {seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        key = "constrained" if constrain else "free"
        out[key] = {
            "answers": len(texts),
            "parsed_reference": sum(parse_answer(t, mode="reference").status != "unparsed" for t in texts) / len(texts),
            "parsed_tolerant": sum(parse_answer(t, mode="tolerant").status != "unparsed" for t in texts) / len(texts),
            "tokens": tokens,
            "seconds": round(seconds, 2),
            "ms_per_token": round(1000 * seconds / max(tokens, 1), 3),
            "example": texts[0][-200:],
        }
    out["settings"] = {
        "answers": answers,
        "batch": batch,
        "reasoning_tokens": reasoning,
        "answer_budget": answer_budget,
        "seed": seed,
        "sampling": "temperature 1, top-k 50",
        "device": "cpu",
        "model": "unfitted tiny Qwen2.5-VL (2 layers, hidden 64, vocab 151936)",
    }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--answers", type=int, default=100)
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--reasoning", type=int, default=8, help="reasoning tokens before the answer is forced open")
    p.add_argument("--answer-budget", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    from think2seg.testing.tiny_models import build_reasoner

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_reasoner(Path(tmp) / "unfitted", steps=0, seed=args.seed, log=lambda *_: None)
        result = measure(folder, args.answers, args.batch, args.reasoning, args.answer_budget, args.seed)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
