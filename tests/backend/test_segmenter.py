"""The segmenter owns its state: one embedding per image, a bounded LRU of embeddings by bytes.

Real SAM2.1 (the tiny random-weight checkpoint); the image encoder is counted by wrapping the real model's
`forward_image`, which still runs."""

from __future__ import annotations

import numpy as np
import pytest
from think2seg.prompts import PromptInstance
from think2seg.segmenter import Segmenter, image_key
from think2seg.testing.tiny_models import KNOWN_BOX, KNOWN_POINTS


@pytest.fixture
def counted(tiny_models_dir):
    seg = Segmenter.from_pretrained(str(tiny_models_dir / "sam2.1_hiera_t.pt"), device="cpu")
    model = seg.predictor.model
    real = model.forward_image
    calls = []

    def forward_image(img):
        calls.append(tuple(img.shape))
        return real(img)

    model.forward_image = forward_image
    return seg, calls


def _image(seed: int, size: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


def _prompt(size: int = 96) -> list[PromptInstance]:
    return [PromptInstance(KNOWN_BOX, KNOWN_POINTS).scaled(size / 840, size / 840)]


def test_image_key_follows_content_and_shape():
    a = _image(0)
    assert image_key(a) == image_key(a.copy())
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert image_key(b) != image_key(a)
    assert image_key(a.reshape(48, 192, 3)) != image_key(a)


@pytest.mark.slow
def test_embeddings_are_reused_and_evicted_by_bytes(counted):
    """Four encoder runs in all (SAM2 embeds at 1024 x 1024 whatever the image: seconds each on a CPU)."""
    seg, calls = counted
    a, b, c = _image(1), _image(2), _image(3)
    ka, kb, kc = image_key(a), image_key(b), image_key(c)
    calls.clear()
    first = seg.segment(a, _prompt(), ka)
    assert len(calls) == 1 and seg.embedded_key == ka
    one = seg.cached_bytes
    assert one > 0 and seg.cached_keys == [ka]
    seg.cache_bytes = int(2.5 * one)  # room for two embeddings
    # the same image again (another array, same pixels): no encoder, the same masks
    again = seg.segment(a.copy(), _prompt(), ka)
    assert len(calls) == 1
    assert np.array_equal(first.merged, again.merged) and first.scores == again.scores
    seg.segment(b, _prompt(), kb)
    assert len(calls) == 2 and seg.cached_keys == [ka, kb]
    # back to a: its embedding comes from the cache
    back = seg.segment(a, _prompt(), ka)
    assert len(calls) == 2 and seg.embedded_key == ka and seg.cached_keys == [kb, ka]
    assert np.array_equal(first.merged, back.merged) and first.scores == back.scores
    # c does not fit beside both: the least recently used (b) goes
    seg.set_image(c, kc)
    assert len(calls) == 3 and seg.cached_keys == [ka, kc] and seg.cached_bytes <= seg.cache_bytes
    seg.set_image(b, kb)
    assert len(calls) == 4 and seg.cached_keys == [kc, kb]
    # without a key nothing is reused (the embedding is made, and kept nowhere)
    seg.cache_bytes = 0
    seg.clear_cache()
    seg.set_image(b)
    assert len(calls) == 5 and seg.embedded_key is None and seg.cached_bytes == 0


def test_cache_bound_defaults_by_device_and_environment(monkeypatch):
    import torch
    from think2seg.errors import BadInput
    from think2seg.segmenter import CACHE_ENV, default_cache_bytes

    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert default_cache_bytes(torch.device("cuda")) == 1 << 30
    assert default_cache_bytes(torch.device("cpu")) == 256 << 20
    monkeypatch.setenv(CACHE_ENV, "64")
    assert default_cache_bytes(torch.device("cuda")) == 64 << 20
    monkeypatch.setenv(CACHE_ENV, "lots")
    with pytest.raises(BadInput, match=CACHE_ENV):
        default_cache_bytes(torch.device("cpu"))


@pytest.mark.slow
def test_a_read_only_image_reaches_sam2_writable(counted):
    """torch warns on a read-only array (eval's images are np.asarray of PIL images): SAM2 gets a writable
    one with the same pixels, and the caller's array is left as it was."""
    seg, _ = counted
    got = []
    real = seg.predictor.set_image
    seg.predictor.set_image = lambda image: got.append((image.flags.writeable, image.copy())) or real(image)
    a = _image(4, 32)
    a.setflags(write=False)
    seg.set_image(a, image_key(a))
    assert got[0][0] and np.array_equal(got[0][1], a) and not a.flags.writeable


@pytest.mark.slow
def test_loading_sam2_prints_no_torch_deprecation(tiny_models_dir):
    """sam2 scripts its transforms with torch.jit.script, which torch calls deprecated: every CLI start
    printed that FutureWarning; loading says nothing the user could act on."""
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        Segmenter.from_pretrained(str(tiny_models_dir / "sam2.1_hiera_t.pt"), device="cpu")
    assert not [w for w in seen if "torch.jit.script" in str(w.message)]
