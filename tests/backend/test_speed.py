"""The fast decoding path and the reuse of a view's vision features, with the real tiny Qwen2.5-VL on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from think2seg.caches import ByteLRU, tensor_bytes
from think2seg.decoding import FastDecoding, resolve_decoding
from think2seg.testing.scripted import script_answers, scripted_answer_ids


@pytest.fixture(scope="module")
def reasoner(tiny_models_dir):
    from think2seg.reasoner import Reasoner

    r = Reasoner.from_pretrained(str(tiny_models_dir / "reasoner"), device="cpu")
    assert r.fast is None  # auto = plain on the CPU
    return r


def test_auto_is_fast_on_cuda_and_plain_on_the_cpu():
    assert resolve_decoding("auto", torch.device("cuda")) == FastDecoding()
    assert resolve_decoding("auto", torch.device("cpu")) is None
    assert resolve_decoding("fast", torch.device("cpu")) == FastDecoding()
    assert resolve_decoding("plain", torch.device("cuda")) is None
    from think2seg.errors import BadInput

    with pytest.raises(BadInput, match="--decoding takes one of auto, fast, plain"):
        resolve_decoding("turbo", "cpu")


def test_the_fast_path_builds_on_the_reasoners_generation_config(reasoner):
    cfg = reasoner.generation_config(40, min_new_tokens=7)
    assert (cfg.max_new_tokens, cfg.min_new_tokens, cfg.do_sample) == (40, 7, False)
    assert cfg.eos_token_id == reasoner.eos_token_ids and cfg.cache_implementation is None
    fast = FastDecoding().apply(reasoner.generation_config(40, min_new_tokens=7), torch.device("cpu"))
    assert (fast.max_new_tokens, fast.min_new_tokens, fast.eos_token_id) == (40, 7, reasoner.eos_token_ids)
    assert fast.cache_implementation == "static" and fast.disable_compile  # nothing is compiled on the CPU
    on_gpu = FastDecoding().apply(reasoner.generation_config(40), torch.device("cuda"))
    assert not on_gpu.disable_compile and on_gpu.compile_config.mode == "reduce-overhead"


@pytest.mark.slow
def test_fast_and_plain_give_the_same_tokens(reasoner):
    from think2seg.testing.tiny_models import KNOWN_COMPLETION

    fast = reasoner.with_decoding("fast")
    assert fast.model is reasoner.model and fast.decoding == "fast" and reasoner.decoding == "plain"
    one = [np.full((200, 300, 3), 90, np.uint8)]
    want = reasoner.generate(one, ["the lake"], max_reasoning_tokens=128)
    got = fast.generate(one, ["the lake"], max_reasoning_tokens=128)
    assert [o.text for o in got] == [o.text for o in want] and want[0].text == KNOWN_COMPLETION
    assert [o.new_tokens for o in got] == [o.new_tokens for o in want]
    # a batch of mixed prompt lengths (left padding, and the fast path pads to a multiple of 64 on top)
    rgbs = [
        np.full((200, 300, 3), 90, np.uint8),
        np.full((120, 120, 3), 30, np.uint8),
        np.full((64, 64, 3), 200, np.uint8),
    ]
    queries = ["x", "the fields that flood first after a long storm in the spring", "the lake"]
    want = reasoner.generate(rgbs, queries, max_reasoning_tokens=128)
    got = fast.generate(rgbs, queries, max_reasoning_tokens=128)
    assert [o.text for o in got] == [o.text for o in want]
    assert [o.new_tokens for o in got] == [o.new_tokens for o in want]


def test_the_fast_path_pads_prompts_to_a_multiple_of_64(reasoner):
    from think2seg.reasoner import to_model_image

    img = to_model_image(np.zeros((64, 64, 3), np.uint8), 112)
    plain = reasoner.encode([img], [reasoner.prompt_text("x")])["input_ids"].shape[1]
    fast = reasoner.with_decoding("fast").encode([img], [reasoner.prompt_text("x")])["input_ids"].shape[1]
    assert fast % 64 == 0 and plain < fast < plain + 64


@pytest.mark.slow
def test_a_second_question_on_the_same_view_reuses_its_vision_features(reasoner):
    from think2seg.segmenter import image_key

    r = reasoner.with_decoding("plain")
    r.views = ByteLRU(64 * 2**20, tensor_bytes)  # this test's own cache
    calls = []
    inner = r.model.model
    wrapped = inner.get_image_features
    real_visual = inner.visual.forward

    def counting_visual(*a, **kw):
        calls.append(1)
        return real_visual(*a, **kw)

    inner.visual.forward = counting_visual
    try:
        rgb = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
        key = image_key(rgb)
        assert key == image_key(rgb.copy()) and key != image_key(rgb[::-1])
        first = r.generate([rgb], ["the lake"], max_reasoning_tokens=128, keys=[key])
        assert len(calls) == 1 and key in r.views and r.views.bytes > 0
        again = r.generate([rgb], ["the fields that flood first"], max_reasoning_tokens=128, keys=[key])
        assert len(calls) == 1 and r.views.hits >= 1  # the tower did not run for the second question
        uncached = r.generate([rgb], ["the fields that flood first"], max_reasoning_tokens=128)
        assert len(calls) == 2 and [o.text for o in again] == [o.text for o in uncached]
        assert first[0].text == uncached[0].text
        # several questions on one tile in one batch: the tower runs once for that tile
        other = np.full((120, 160, 3), 40, np.uint8)
        qs = ["the lake", "the river", "a very long question about the fields and the roads between them"]
        batch = r.generate(
            [other, other, other, rgb], qs + ["the lake"], max_reasoning_tokens=128, keys=[image_key(other)] * 3 + [key]
        )
        assert len(calls) == 3
        plain = r.generate([other, other, other, rgb], qs + ["the lake"], max_reasoning_tokens=128)
        assert [o.text for o in batch] == [o.text for o in plain]
    finally:
        inner.visual.forward = real_visual
    assert inner.get_image_features is wrapped


def _first_scores(r, rgbs, questions, keys=None, steps=4):
    """The first `steps` next-token scores (steps, rows, vocab) of one greedy generate, from the views' prefixes
    when `keys` are given."""
    from think2seg.reasoner import to_model_image

    inputs = r.encode(
        [to_model_image(x, r.frame) for x in rgbs], [r.prompt_text(q) for q in questions], bucket=keys is None
    )
    config = r.generation_config(steps, output_scores=True, return_dict_in_generate=True)
    if r.fast is not None:
        config = r.fast.apply(config, r.device)
    if keys is not None:
        inputs = r._resume_from_prefix(keys, inputs, config)
        assert inputs is not None and "pixel_values" not in inputs
    with torch.inference_mode():
        return torch.stack(r.model.generate(**inputs, generation_config=config).scores)


@pytest.fixture
def seeing(reasoner):
    """The tiny reasoner with eyes: its vision tower's last layer random instead of zero (the fitted model is blind
    to the image, so nothing it computes could tell two images apart); restored after the test."""
    last = reasoner.model.model.visual.merger.mlp[-1]
    saved = [p.detach().clone() for p in (last.weight, last.bias)]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in (last.weight, last.bias):
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    yield reasoner
    with torch.no_grad():
        for p, value in zip((last.weight, last.bias), saved):
            p.copy_(value)


@pytest.mark.slow
def test_a_second_question_starts_from_the_views_prompt_prefix(seeing):
    from think2seg.reasoner import to_model_image
    from think2seg.segmenter import image_key

    r = seeing.with_decoding("plain")
    r.views = ByteLRU(256 * 2**20, tensor_bytes)  # this test's own cache
    rgb = np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    key = image_key(rgb)
    # the prefix is the prompt up to the question: system prompt, image, the template's words before it
    ids = r.encode([to_model_image(rgb, r.frame)], [r.prompt_text("the lake")], bucket=False)["input_ids"][0]
    n = r.prefix_length(ids)
    tok = r.processor.tokenizer
    assert tok.decode(ids[:n]).endswith("<|vision_end|>Please find") and tok.decode(ids[n:]).startswith(' "the lake')
    # next-token scores from the prefix equal a whole prefill's: the dynamic cache, and the fast path's static one
    whole = {q: _first_scores(r, [rgb], [q]) for q in ["the lake", '"the" road']}
    for question, want in whole.items():
        assert torch.allclose(_first_scores(r, [rgb], [question], [key]), want, atol=1e-4), question
    assert torch.allclose(
        _first_scores(r.with_decoding("fast"), [rgb], ["the lake"], [key]), whole["the lake"], atol=1e-4
    )
    assert len(r.views) == 1 and f"prefix/{key}" in r.views
    # several questions on one tile in a batch (batch's case): rows are [prefix][padding][question]
    other = np.full((120, 160, 3), 40, np.uint8)
    qs = ["the lake", "a much longer question about the fields and the roads between them", "x"]
    batch_whole = _first_scores(r, [rgb, other, rgb], qs)
    for decoding in ("plain", "fast"):
        got = _first_scores(r.with_decoding(decoding), [rgb, other, rgb], qs, [key, image_key(other), key])
        assert torch.allclose(got, batch_whole, atol=1e-4), decoding
    assert f"prefix/{image_key(other)}" in r.views
    # each row kept its own image's prefix: `other`'s as a prefill of `other` alone makes it, unlike rgb's
    kept, r.views = r.views, ByteLRU(256 * 2**20, tensor_bytes)
    _first_scores(r, [other], ["x"], [image_key(other)])
    alone, r.views = r.views.get(f"prefix/{image_key(other)}"), kept
    batched, mine = kept.get(f"prefix/{image_key(other)}"), kept.get(f"prefix/{key}")
    for (k1, v1), (k2, v2), (_, v3) in zip(batched.layers, alone.layers, mine.layers):
        assert torch.allclose(k1, k2, atol=1e-4) and torch.allclose(v1, v2, atol=1e-4)
        assert not torch.allclose(v1, v3, atol=1e-2)
    # ...and the scores tell: a wrong rope offset, other cache content or another image's prefix changes them
    good = r.views.get(f"prefix/{key}")
    halved = [(k, v * 0.5) for k, v in good.layers]
    for bad in (
        type(good)(good.ids, good.layers, good.rope_deltas + 7),
        type(good)(good.ids, halved, good.rope_deltas),
        batched,
    ):
        r.views.put(f"prefix/{key}", bad)
        assert not torch.allclose(_first_scores(r, [rgb], ["the lake"], [key]), whole["the lake"], atol=1e-4)
    r.views.put(f"prefix/{key}", good)
    # end to end: the tokens of a keyed second question equal an unkeyed run's, and only its own tokens prefill
    prefills = []
    lm = r.model.model.language_model
    real = lm.forward

    def counting(*a, **kw):
        prefills.append(kw["inputs_embeds"].shape[1])
        return real(*a, **kw)

    lm.forward = counting
    try:
        keyed = r.generate([rgb], ["the fields that flood first"], max_reasoning_tokens=24, answer_budget=0, keys=[key])
        assert max(prefills) < 300 and len(ids) > 1000  # ~210 of ~1,150 prompt tokens
        prefills.clear()
        unkeyed = r.generate([rgb], ["the fields that flood first"], max_reasoning_tokens=24, answer_budget=0)
        assert max(prefills) > 1000
    finally:
        lm.forward = real
    assert [o.text for o in keyed] == [o.text for o in unkeyed] and keyed[0].new_tokens == unkeyed[0].new_tokens


def test_the_view_cache_is_bounded_by_bytes():
    lru = ByteLRU(100, len)
    lru.put("a", b"x" * 40)
    lru.put("b", b"x" * 40)
    assert lru.get("a") is not None  # a is now the most recent
    lru.put("c", b"x" * 40)
    assert "b" not in lru and "a" in lru and "c" in lru and lru.bytes == 80
    lru.put("huge", b"x" * 101)
    assert "huge" not in lru and len(lru) == 2


def test_a_scripted_answer_has_exactly_n_tokens_and_parses(reasoner):
    from think2seg.prompts import parse_answer
    from think2seg.testing.tiny_models import KNOWN_BOX

    r = reasoner.with_decoding("fast")
    script_answers(r, 90)  # through the reasoner's logits-processor hook
    out = r.generate([np.zeros((64, 64, 3), np.uint8)] * 2, ["x", "the longer question"], max_reasoning_tokens=150)
    assert [o.new_tokens for o in out] == [90, 90] and not out[0].forced_answer
    parsed = parse_answer(out[1].text, 840, 840)
    assert parsed.status == "ok" and tuple(parsed.instances[0].box) == KNOWN_BOX
    with pytest.raises(ValueError, match="needs at least"):
        scripted_answer_ids(r.processor.tokenizer, 10)


@pytest.mark.parametrize("command", ["segment", "batch", "serve", "eval"])
def test_every_entry_point_takes_decoding_and_compile(command):
    from think2seg.cli import build_parser

    required = {
        "segment": ["r.tif", "-q", "x", "-o", "o.gpkg"],
        "batch": ["r.tif", "-q", "x", "-o", "o.gpkg"],
        "serve": [],
        "eval": ["--data", "d", "-o", "out"],
    }[command]
    args = build_parser().parse_args([command, *required])
    # eval: not given = decided by the protocol (plain under think2seg: test_eval_benchmarks.py)
    assert args.decoding == (None if command == "eval" else "auto") and args.compile is False
    args = build_parser().parse_args([command, *required, "--decoding", "plain", "--compile"])
    assert args.decoding == "plain" and args.compile is True
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([command, *required, "--decoding", "turbo"])
    assert e.value.code == 2


@pytest.mark.parametrize("shape", [(1024, 1024), (723, 934), (2000, 600), (300, 300)])
def test_the_model_frame_is_pillows_lanczos_resize_pixel_for_pixel(shape, monkeypatch):
    """In however many strips the resize is cut (2 here, up to 4 on a machine with more cores)."""
    import think2seg.reasoner as reasoner
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 255, (*shape, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(rgb).resize((840, 840), Image.LANCZOS))
    for strips in (reasoner.RESIZE_THREADS, 3, 4):
        monkeypatch.setattr(reasoner, "RESIZE_THREADS", strips)
        assert np.array_equal(np.asarray(reasoner.to_model_image(rgb)), want), strips


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8])
def test_the_integer_stretch_table_gives_the_float_stretch(dtype):
    from think2seg.georef import to_uint8

    rng = np.random.default_rng(2)
    lo = -3000 if np.iinfo(dtype).min < 0 else 0
    data = rng.integers(lo, min(4000, np.iinfo(dtype).max), (3, 200, 300)).astype(dtype)
    valid = rng.random((200, 300)) > 0.2
    for v in (None, valid):
        want = to_uint8(data.astype(np.float32), v)  # the general path: float32 arithmetic on every pixel
        got = to_uint8(data, v)
        assert got.shape == (200, 300, 3) and got.flags.c_contiguous
        if dtype != np.uint8:
            assert np.array_equal(got, want)
        else:  # 8-bit passes through unstretched, no-data pixels black
            pixels = np.transpose(data, (1, 2, 0))
            assert np.array_equal(got, pixels if v is None else np.where(v[..., None], pixels, 0))


def test_stretch_bounds_are_numpys_percentiles_of_the_sample():
    """The stretch's bounds from a histogram (integers) or a partition (floats) are numpy's default (linear)
    percentiles of the same regular sample, for sizes around the sample's step and for tiny inputs."""
    from think2seg.georef import STRETCH_PERCENTILES, STRETCH_SAMPLE, stretch_bounds

    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 101, STRETCH_SAMPLE - 1, 2 * STRETCH_SAMPLE + 7, 5 * STRETCH_SAMPLE // 2):
        values = rng.integers(0, int(rng.integers(2, 65535)), n).astype(np.uint16)
        sample = values[:: max(1, n // STRETCH_SAMPLE)].astype(np.float32)
        want = tuple(np.percentile(sample, STRETCH_PERCENTILES))
        assert stretch_bounds(values) == pytest.approx(want, abs=1e-9, rel=0)
        assert stretch_bounds(values.astype(np.float32)) == stretch_bounds(values)
