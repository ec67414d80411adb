"""The segmenter: a frozen SAM2.1 through the `sam2` package's own classes.

`build_sam2` + `SAM2ImagePredictor`, one image embedding per tile (`set_image` once), then one `predict`
per instance with its box and/or positive points (docs/method.md: `multimask_output=False`, labels 1);
the instance masks are OR-merged into the answer and each instance's own mask is kept.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from .prompts import PromptInstance
from .reasoner import pick_device
from .weights import DEFAULT_SAM_SIZE, resolve_sam_checkpoint


@dataclass
class MaskSet:
    merged: np.ndarray  # bool (H, W): the answer, OR of the instances
    instances: list[np.ndarray]  # bool (H, W) each
    scores: list[float]  # SAM2's predicted IoU per instance


class Segmenter:
    def __init__(self, predictor, model_id: str, size: str, device: torch.device):
        self.predictor = predictor
        self.model_id = model_id
        self.size = size
        self.device = device

    @classmethod
    def from_pretrained(cls, sam: str = DEFAULT_SAM_SIZE, size: str | None = None, device: str | None = None) -> Segmenter:
        """`sam` is a size (tiny/small/base_plus/large, fetched from the hub) or a local checkpoint path."""
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        spec, ckpt = resolve_sam_checkpoint(sam, size)
        dev = pick_device(device)
        model = build_sam2(spec.config, ckpt_path=ckpt, device=str(dev), mode="eval")
        model.requires_grad_(False)
        model_id = f"sam2.1_hiera_{spec.name}"
        return cls(SAM2ImagePredictor(model), model_id, spec.name, dev)

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def set_image(self, rgb: np.ndarray) -> None:
        """Compute the image embedding once; every `predict` after it reuses it."""
        with self._autocast():
            self.predictor.set_image(np.ascontiguousarray(rgb, dtype=np.uint8))

    @torch.inference_mode()
    def predict(self, instances: list[PromptInstance], shape: tuple[int, int]) -> MaskSet:
        """Masks for instances given in the pixel frame of the image passed to `set_image`."""
        h, w = shape
        merged = np.zeros((h, w), dtype=bool)
        masks, scores = [], []
        for inst in instances:
            # SAM2 gets what the instance has (the reference's rule): a box alone has no point arrays, points
            # alone no box; points are all positive (label 1).
            has_points = len(inst.points) > 0
            with self._autocast():
                m, s, _ = self.predictor.predict(
                    point_coords=np.asarray(inst.points, dtype=np.float32) if has_points else None,
                    point_labels=np.ones(len(inst.points), dtype=np.int32) if has_points else None,
                    box=np.asarray(inst.box, dtype=np.float32) if inst.box is not None else None,
                    multimask_output=False,
                )
            mask = np.asarray(m[0]) > 0
            masks.append(mask)
            scores.append(float(np.asarray(s).reshape(-1)[0]))
            merged |= mask
        return MaskSet(merged, masks, scores)

    def segment(self, rgb: np.ndarray, instances: list[PromptInstance]) -> MaskSet:
        if not instances:
            h, w = rgb.shape[:2]
            return MaskSet(np.zeros((h, w), dtype=bool), [], [])
        self.set_image(rgb)
        return self.predict(instances, rgb.shape[:2])
