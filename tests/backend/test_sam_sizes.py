"""Per-request SAM2.1 size: the pipeline loads other sizes on first use, from where the first one came from,
and records the size used. Real SAM2.1 classes: the tiny test checkpoint and a random SAM2.1-small built here."""

from __future__ import annotations

import numpy as np
import pytest
from think2seg.errors import BadInput
from think2seg.options import SegmentOptions
from think2seg.pipeline import Pipeline
from think2seg.testing.tiny_models import build_sam


def test_sam_size_option_is_checked():
    assert SegmentOptions.from_dict({"sam_size": "base_plus"}).sam_size == "base_plus"
    assert SegmentOptions.from_dict({}).sam_size is None
    with pytest.raises(BadInput) as e:
        SegmentOptions.from_dict({"sam_size": "huge"})
    assert e.value.code == "bad_options" and "'tiny', 'small', 'base_plus' or 'large'" in e.value.message


@pytest.mark.slow
def test_a_request_picks_its_sam_size(tiny_models_dir, tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    tiny = folder / "sam2.1_hiera_t.pt"
    tiny.symlink_to(tiny_models_dir / "sam2.1_hiera_t.pt")  # the sibling lookup stays in this folder
    build_sam(folder, "small")
    pipe = Pipeline.from_pretrained(str(tiny_models_dir / "reasoner"), str(tiny), device="cpu")
    assert pipe.models["segmenter"] == "sam2.1_hiera_tiny" and list(pipe.segmenters) == ["tiny"]
    assert pipe.models_for("small")["segmenter"] == "sam2.1_hiera_small"  # known before loading

    rgb = np.full((64, 64, 3), 90, np.uint8)
    r = pipe.segment(rgb, "the lake", {"sam_size": "small"})
    assert r.status == "ok" and r.models["segmenter"] == "sam2.1_hiera_small"
    small = pipe.segmenters["small"]
    assert small.size == "small" and small.embedded_key is not None
    assert pipe.segmenter_for("s") is small and pipe.segmenter is pipe.segmenters["tiny"]

    with pytest.raises(BadInput) as e:
        pipe.segment(rgb, "the lake", {"sam_size": "large"})
    assert e.value.code == "sam_size_unavailable"
    assert "sam2.1_hiera_l.pt" in e.value.message and str(folder) in e.value.message
    assert "large" not in pipe.segmenters


def test_a_pipeline_without_a_source_says_so(tiny_models_dir):
    from think2seg.reasoner import Reasoner
    from think2seg.testing.stand_in import StandInSegmenter

    pipe = Pipeline(Reasoner.from_pretrained(str(tiny_models_dir / "reasoner"), device="cpu"), StandInSegmenter())
    with pytest.raises(BadInput) as e:
        pipe.segmenter_for("small")
    assert e.value.code == "sam_size_unavailable"
