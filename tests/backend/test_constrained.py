"""`constrain_answer`: the reasoning stays free, the answer block follows the prompt's JSON shape (xgrammar)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from think2seg.prompts import parse_answer
from think2seg.testing.tiny_models import KNOWN_COMPLETION

pytest.importorskip("xgrammar")

IMAGE = Image.new("RGB", (112, 112), (90, 110, 80))


@pytest.mark.slow
def test_the_grammar_is_the_prompts_shape(tiny_models_dir):
    """The compiled grammar takes the known answer, `[]`, and rejects what the reference's parser rejects."""
    import xgrammar as xgr
    from think2seg.constrained import compiled_answer_grammar
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models_dir / "reasoner")
    compiled = compiled_answer_grammar(tok, 151936, [151643, 151645])

    def accepts(text: str) -> bool:
        m = xgr.GrammarMatcher(compiled)
        return m.accept_string(text) and m.is_completed()

    assert accepts(KNOWN_COMPLETION.split("<answer>")[1])
    assert accepts("```json[]```</answer>")
    assert not accepts('```json[{"bbox_2d": [1, 2, 3, 4]}]```</answer>')  # points required
    assert not accepts('```json[{"bbox_2d": [1, 2, 3, 4], "positive_points": [[1, 1], [2, 2], [3, 3]]}]```</answer>')
    assert not accepts(
        '```json[{"bbox_2d": [1, 2, 3, 4], "positive_points": [[1, 1], [2, 2]], '
        '"negative_points": [[1, 1], [2, 2]]}]```</answer>'
    )


@pytest.mark.slow
def test_a_well_formed_answer_is_unchanged(tiny_pipeline):
    out = tiny_pipeline.reasoner.generate_images(
        [IMAGE], ["the ponds"], max_reasoning_tokens=96, constrain_answer=True
    )[0]
    assert out.text == KNOWN_COMPLETION


@pytest.mark.slow
def test_an_unfitted_model_answers_in_shape_only_when_constrained(tmp_path):
    """A randomly initialised model never writes a parseable answer by itself; constrained, every sampled
    answer parses under the reference's own rules, while the reasoning before `<answer>` is left as sampled."""
    from think2seg.reasoner import Reasoner
    from think2seg.testing.tiny_models import build_reasoner

    r = Reasoner.from_pretrained(str(build_reasoner(tmp_path / "unfitted", steps=0, log=lambda *_: None)), device="cpu")
    kw = dict(max_reasoning_tokens=8, answer_budget=160, sample=True)
    torch.manual_seed(0)
    free = r.generate_images([IMAGE] * 4, ["the ponds"] * 4, **kw)
    torch.manual_seed(0)
    constrained = r.generate_images([IMAGE] * 4, ["the ponds"] * 4, constrain_answer=True, **kw)
    assert not any(parse_answer(o.text, mode="reference").parsed for o in free)
    for f, c in zip(free, constrained, strict=True):
        assert c.forced_answer and parse_answer(c.text, mode="reference").parsed, c.text
        # The grammar fixes the shape, not the length: an unfitted sampler may keep adding instances until the
        # answer budget is spent (then the reference's json_repair closes it). Anything shorter must be closed.
        assert c.text.endswith("</answer>") or c.new_tokens >= kw["max_reasoning_tokens"] + kw["answer_budget"], c.text
        # same seed, same free reasoning: the constraint starts after <answer>
        assert c.text.split("<answer>")[0] == f.text.split("<answer>")[0]


@pytest.mark.slow
def test_segment_option_and_provenance(tiny_pipeline, naip):
    r = tiny_pipeline.segment(str(naip), "the ponds", {"constrain_answer": True})
    assert r.status == "ok" and r.answer == KNOWN_COMPLETION
    assert r.to_dict()["models"]["generation"]["constrain_answer"] is True
