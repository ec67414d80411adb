"""The reasoner's loading path and conversation, with real transformers classes."""

from __future__ import annotations

import numpy as np
import pytest
from think2seg.prompt_template import SYSTEM_PROMPT, USER_PROMPT


def test_prompt_template_is_the_published_wording():
    # The exact strings the published weights were trained on (Ricardo-XZ/Think2Seg-RS, EarthReason_datasets.py).
    assert SYSTEM_PROMPT.startswith("You are a remote sensing analysis assistant. Your task is to generate")
    assert 'Please find "{Question}", identify the target.' in USER_PROMPT
    assert "i.e. <think> thinking process here </think> \n<answer>```json[{{" in USER_PROMPT
    assert USER_PROMPT.format(Question="the ponds").count("positive_points") == 3


def test_chat_renders_system_image_then_question(tiny_pipeline):
    text = tiny_pipeline.reasoner.prompt_text("the ponds")
    assert text.startswith("<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n<|im_start|>user\n")
    assert '<|vision_start|><|image_pad|><|vision_end|>Please find "the ponds"' in text
    assert text.endswith("<|im_start|>assistant\n")


def test_an_840_frame_is_900_image_tokens(tiny_pipeline):
    from think2seg.reasoner import to_model_image

    r = tiny_pipeline.reasoner
    img = to_model_image(np.zeros((723, 934, 3), np.uint8))
    assert img.size == (840, 840)
    enc = r.encode([img], [r.prompt_text("x")])
    assert int((enc["input_ids"] == 151655).sum()) == 900  # (840 / 14 / 2) ** 2


@pytest.mark.slow
def test_batch_is_left_padded(tiny_pipeline):
    r = tiny_pipeline.reasoner
    outs = r.generate(
        [np.zeros((50, 50, 3), np.uint8)] * 2,
        ["x", "a much longer query about wetlands and fields"],
        max_reasoning_tokens=96,
    )
    assert outs[0].text == outs[1].text  # padding did not change the answer
    assert r.processor.tokenizer.padding_side == "left"


@pytest.mark.slow
def test_a_qwen3_vl_checkpoint_loads_the_same_way(tmp_path):
    from think2seg.reasoner import Reasoner
    from think2seg.testing.tiny_models import build_qwen3_vl

    folder = build_qwen3_vl(tmp_path / "qwen3vl")
    r = Reasoner.from_pretrained(str(folder), device="cpu")
    assert type(r.model).__name__ == "Qwen3VLForConditionalGeneration"
    out = r.generate([np.zeros((100, 120, 3), np.uint8)], ["the lake"], max_reasoning_tokens=8, answer_budget=4)[0]
    # an untrained model rambles; the budget still closes its reasoning and opens the answer block
    assert out.forced_answer and "</think>\n<answer>" in out.text


def test_generation_config_is_complete_and_ours(tiny_pipeline):
    r = tiny_pipeline.reasoner
    greedy = r.generation_config(64)
    assert greedy.do_sample is False and greedy.num_beams == 1 and greedy.max_new_tokens == 64
    assert greedy.repetition_penalty == 1.0 and greedy.no_repeat_ngram_size == 0
    # the reference's eos pair, as the tiny tokenizer spells them (<|im_end|>, <|endoftext|>)
    assert sorted(greedy.eos_token_id) == [151643, 151645] and greedy.pad_token_id == 151643
    sampled = r.generation_config(64, sample=True)
    assert sampled.do_sample is True and sampled.top_k == 50 and sampled.temperature == 1.0
    assert r.generation_config(8, cache_implementation="static").cache_implementation == "static"
    # the model's own config is emptied: nothing of the checkpoint can fill a setting left unset
    assert r.model.generation_config.repetition_penalty is None and r.model.generation_config.do_sample is None
    settings = r.decoding_settings(64, answer_budget=0)
    assert settings["strategy"] == "greedy" and settings["forced_answer_tokens"] == 0
    assert settings["prefix_reuse"] is r.prefix_reuse is True  # transformers 5 + a Qwen2.5-VL: on by default


@pytest.mark.slow
def test_checkpoint_generation_config_never_applies(tiny_models_dir, tmp_path):
    """A folder whose generation_config.json sets penalties, n-gram bans and sampling answers token for token
    as the plain one; the same file, if transformers applied it, would change the answer."""
    import torch
    from think2seg.reasoner import Reasoner
    from think2seg.testing.tiny_models import KNOWN_COMPLETION, copy_with_generation_config

    hostile = Reasoner.from_pretrained(
        str(copy_with_generation_config(tiny_models_dir / "reasoner", tmp_path / "r")), device="cpu"
    )
    assert hostile.checkpoint_generation_config.repetition_penalty == 5.0
    rgb = [np.full((120, 160, 3), 90, np.uint8)]
    torch.manual_seed(0)
    out = hostile.generate(rgb, ["the ponds"], max_reasoning_tokens=96)[0]
    assert out.text == KNOWN_COMPLETION and not out.forced_answer  # the plain folder's answer
    from think2seg.reasoner import to_model_image

    inputs = hostile.encode([to_model_image(rgb[0])], [hostile.prompt_text("the ponds")])
    with torch.inference_mode():
        ids = hostile.model.generate(
            **inputs, generation_config=hostile.checkpoint_generation_config, max_new_tokens=96
        )
    applied = hostile.processor.tokenizer.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert applied != KNOWN_COMPLETION


def test_the_image_processor_backend_is_ours_not_the_librarys_default(tiny_models_dir, tiny_pipeline):
    """transformers' default image processor changed across versions (the reference's 4.49: the slow PIL/numpy
    one; 5.x: torchvision): the reasoner and training name theirs (`IMAGE_PROCESSOR_BACKEND`). On the 840 x 840
    frame the two differ by at most one float32 ulp in the normalised pixels and not at all in bfloat16, the
    published weights' dtype (docs/method.md, "What cannot match exactly")."""
    import transformers
    from PIL import Image
    from think2seg.reasoner import IMAGE_PROCESSOR_BACKEND, load_processor

    path = tiny_models_dir / "reasoner"
    ours = load_processor(path).image_processor
    assert type(tiny_pipeline.reasoner.processor.image_processor) is type(ours)
    if int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip("the two backends are named by use_fast before transformers 5")
    other = "pil" if IMAGE_PROCESSOR_BACKEND == "torchvision" else "torchvision"
    named = {
        b: type(transformers.AutoImageProcessor.from_pretrained(path, backend=b))
        for b in (IMAGE_PROCESSOR_BACKEND, other)
    }
    assert type(ours) is named[IMAGE_PROCESSOR_BACKEND] and named[IMAGE_PROCESSOR_BACKEND] is not named[other]
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (840, 840, 3), dtype=np.uint8))
    a = ours(images=[img], return_tensors="pt")["pixel_values"]
    b = transformers.AutoImageProcessor.from_pretrained(path, backend=other)(images=[img], return_tensors="pt")[
        "pixel_values"
    ]
    assert a.shape == b.shape == (3600, 1176)
    assert float((a.double() - b.double()).abs().max()) <= 2.4e-7
    assert bool((a.bfloat16() == b.bfloat16()).all())


def test_every_token_is_reported_and_a_true_stops_the_generation(tiny_pipeline):
    """`on_token` sees 1, 2, 3... as the reasoner writes (progress for a CPU's minutes); returning True stops it
    there, with no forced answer (a cancel), and leaves the next call unaffected."""
    from PIL import Image
    from think2seg.testing.scripted import ScriptedTokens, scripted_answer_ids

    reasoner = tiny_pipeline.reasoner
    ids = scripted_answer_ids(reasoner.processor.tokenizer, 90)
    image = Image.new("RGB", (reasoner.frame, reasoner.frame), (40, 90, 60))
    previous, reasoner.logits_processor_factory = reasoner.logits_processor_factory, lambda: ScriptedTokens(ids)
    try:
        seen = []
        out = reasoner.generate_images([image], ["the water"], max_reasoning_tokens=120, on_token=seen.append)[0]
        assert seen == list(range(1, 91)) and out.new_tokens == 90 and not out.forced_answer
        stop_at = []
        cut = reasoner.generate_images(
            [image], ["the water"], 120, on_token=lambda n: stop_at.append(n) or n >= 7
        )[0]  # fmt: skip
        assert stop_at == list(range(1, 8)) and cut.new_tokens == 7 and not cut.forced_answer
        budget = []  # a completion the budget cuts: its forced answer counts on from the budget
        reasoner.generate_images([image], ["the water"], 20, answer_budget=30, on_token=budget.append)
        assert budget[:20] == list(range(1, 21)) and budget[20] == 21 and budget[-1] <= 50
        again = reasoner.generate_images([image], ["the water"], max_reasoning_tokens=120)[0]
        assert again.new_tokens == 90 and again.text == out.text
    finally:
        reasoner.logits_processor_factory = previous
