"""A stand-in for SAM2 that needs no model: the water of the synthetic scenes (think2seg.testing.scenes)."""

from __future__ import annotations

import numpy as np

from ..segmenter import MaskSet


class StandInSegmenter:
    """Not a model: the "water" pixels of the synthetic scene, whatever the prompts. It has the Segmenter's
    interface, so `Pipeline(reasoner, StandInSegmenter())` runs the real pipeline code with a mask that
    depends on the image alone (the tests check merges across tile borders with it; the bench measures the
    tiled path without SAM2's cost)."""

    model_id = "stand-in-threshold"
    size = "none"

    def __init__(self):
        import torch

        self.device = torch.device("cpu")
        self._rgb: np.ndarray | None = None
        self.embedded_key: str | None = None

    def bounded_cache(self, embeddings: int):
        from contextlib import nullcontext

        return nullcontext()  # it keeps no embeddings

    def input_ahead(self, rgb: np.ndarray, key: str | None = None):
        return None  # nothing to make ahead

    def set_image(self, rgb: np.ndarray, key: str | None = None, given=None) -> None:
        self._rgb = np.asarray(rgb)
        self.embedded_key = key

    def predict(self, instances, shape):
        rgb = self._rgb
        mask = (rgb[..., 2] > 140) & (rgb[..., 0] < 70)
        masks = [mask.copy() for _ in instances]
        return MaskSet(mask.copy() if instances else np.zeros(shape, dtype=bool), masks, [1.0] * len(instances))

    def segment(self, rgb, instances, key: str | None = None):
        self.set_image(rgb, key)
        return self.predict(instances, rgb.shape[:2])
