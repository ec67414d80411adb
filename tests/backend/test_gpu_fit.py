"""The GPU fit check before loading: a pure function of figures (the card's own figures on a GPU machine)."""

from __future__ import annotations

import json

import pytest
from think2seg.gpu_fit import (
    PUBLISHED_PARAMS,
    fit_sentence,
    need_bytes,
    params_from_config,
    reasoner_bytes,
    sam_bytes,
)

GIB = 2**30
QWEN25_VL_3B = {
    "tie_word_embeddings": True,
    "text_config": {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
    },
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "out_hidden_size": 2048},
}
QWEN25_VL_7B = {
    "tie_word_embeddings": False,
    "text_config": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
    },
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "out_hidden_size": 3584},
}


def test_parameters_from_config_sizes_match_the_published_models():
    assert params_from_config(QWEN25_VL_3B) == pytest.approx(
        PUBLISHED_PARAMS["RicardoString/Think2Seg-RS-3B"], rel=0.03
    )
    assert params_from_config(QWEN25_VL_7B) == pytest.approx(
        PUBLISHED_PARAMS["RicardoString/Think2Seg-RS-7B"], rel=0.03
    )


def test_reasoner_bytes_from_a_folder(tmp_path, tiny_models_dir):
    tiny = tiny_models_dir / "reasoner"
    stored = (tiny / "model.safetensors").stat().st_size  # float32 on disk
    assert reasoner_bytes(str(tiny), "bfloat16") == pytest.approx(stored / 2, rel=1e-6)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text(json.dumps({**QWEN25_VL_3B, "torch_dtype": "bfloat16"}))
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 7_509_245_952}}))
    assert reasoner_bytes(str(sharded), "bfloat16") == 7_509_245_952
    only_config = tmp_path / "config-only"
    only_config.mkdir()
    (only_config / "config.json").write_text(json.dumps(QWEN25_VL_7B))
    assert reasoner_bytes(str(only_config)) == pytest.approx(2 * 8.29e9, rel=0.03)
    assert reasoner_bytes("RicardoString/Think2Seg-RS-7B") == int(2 * 8.29e9)
    assert reasoner_bytes("nobody/unknown-model") is None


def test_fits_says_nothing():
    r3 = reasoner_bytes("RicardoString/Think2Seg-RS-3B")
    assert (
        fit_sentence(
            model="RicardoString/Think2Seg-RS-3B", reasoner=r3, sam_size="small", sam=sam_bytes("small"), free=24 * GIB
        )
        is None
    )


def test_7b_on_a_12_gib_card_names_both_figures_and_the_smaller_choices():
    r7 = reasoner_bytes("RicardoString/Think2Seg-RS-7B")
    sentence = fit_sentence(
        model="RicardoString/Think2Seg-RS-7B",
        reasoner=r7,
        sam_size="large",
        sam=sam_bytes("large"),
        free=11 * GIB,
        total=12 * GIB,
        gpu="NVIDIA GeForce RTX 3060",
        cache=1 * GIB,
    )
    need = need_bytes(r7, sam_bytes("large"), GIB)
    assert f"needs about {need / GIB:.1f} GiB" in sentence and "has 11.0 GiB free of 12.0 GiB" in sentence
    assert "RTX 3060" in sentence
    assert "--model RicardoString/Think2Seg-RS-3B" in sentence and "--device cpu" in sentence
    assert "--sam" not in sentence.replace("--model", "")  # no SAM2.1 size makes the 7B fit in 11 GiB


def test_a_card_just_short_is_told_the_smaller_sam_or_no_cache():
    r3 = reasoner_bytes("RicardoString/Think2Seg-RS-3B")
    free = need_bytes(r3, sam_bytes("tiny"), 0) + (1 << 20)
    sentence = fit_sentence(
        model="RicardoString/Think2Seg-RS-3B",
        reasoner=r3,
        sam_size="large",
        sam=sam_bytes("large"),
        free=free,
        cache=GIB,
    )
    assert "a smaller SAM2.1 (--sam" not in sentence  # with the 1 GiB cache no size fits
    assert "--embedding-cache-mb 0" not in sentence  # large without the cache does not fit either
    free = need_bytes(r3, sam_bytes("small"), GIB) + (1 << 20)
    sentence = fit_sentence(
        model="RicardoString/Think2Seg-RS-3B",
        reasoner=r3,
        sam_size="large",
        sam=sam_bytes("large"),
        free=free,
        cache=GIB,
    )
    assert "a smaller SAM2.1 (--sam tiny)" in sentence and "--device cpu" in sentence
    assert "the 3B reasoner" not in sentence


def test_on_the_cpu_nothing_is_checked(tiny_models_dir):
    from think2seg.gpu_fit import check_before_loading

    check_before_loading(str(tiny_models_dir / "reasoner"), "tiny", None, "cpu", cache=10**15)  # no error
