"""The parity audit, repeatable: the reference's own parse, SAM2-prompt, IoU and reward functions beside ours.

Each answer string of the corpus (tests/backend/data/parity_answers.jsonl: test_parity.py's TABLE plus
adversarial strings) goes through both codes on one 840 x 840 image whose label is SAM2's own mask for the
tiny reasoner's known prompts, with one SAM2.1 model (two predictors on the same weights), and the script
prints where they agree:

- status and instances: the reference evaluation's parser (`parse_sam_json_test`) and what its SAM2 call
  made of it (ok / empty / unparsed / sam2_failed, the last where the parser accepted the answer and no mask
  came out) against `parse_answer(mode="reference").label`; `parse_failures` counted both ways;
- SAM2 prompts: what the reference hands `predictor.predict` (`np.array` of each instance's box and points)
  against ours (`PromptInstance.box`, `.points`), where both reached SAM2;
- eval IoU and cIoU share (what the image adds to the intersection and union sums) as test_qwen.py /
  test_ref.py account it, against `evaluation.metrics.score_sample`; the IoU again on an image without target;
- the training rewards: mask (`sam_reward_func_ultra`'s final reward, on the image and on one without target),
  format (`sam_format_reward`) and shape (`thk_ans_format_reward`) against `MaskReward`,
  `json_validity_reward`, `think_answer_shape_reward`.

The reference is never part of this repository: pass a checkout of Ricardo-XZ/Think2Seg-RS (e.g.
`git --git-dir=MIRROR archive HEAD | tar -x -C /tmp/t2srs`). Its `geo_reward_func_ultra.py` is loaded from the
checkout by file path (not through `open_r1/__init__`); it imports only os, re, datetime, json, torch, numpy
and json_repair, so nothing is stubbed. Its class is built without `__init__` (which would build SAM2 from the
reference's checkpoint folder): the instance gets the reference's point counts (2 positive, 0 negative), the
device, and a `SAM2ImagePredictor` on our segmenter's SAM2 model. On the CPU our calls run under the same
bfloat16 autocast the reference's run under (on CUDA ours do anyway), so what differs is rules, not numerics.

    PYTHONPATH=backend .venv/bin/python scripts/parity_audit.py --reference /tmp/t2srs \
        [--sam .cache/tiny-models/sam2.1_hiera_t.pt] [--device cpu] [--json OUT.json] [--limit N]

Not part of CI (the reference is not there); tests/backend/test_parity.py checks that the corpus loads and
that our side of it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "backend" / "data" / "parity_answers.jsonl"
REFERENCE_FILE = Path("src/open-r1-multimodal/src/open_r1/geo_reward_func_ultra.py")
FRAME = 840
COLUMNS = ("status", "instances", "prompts", "eval_iou", "ciou_share", "eval_iou_empty", "mask", "mask_empty")
COLUMNS += ("fmt", "shape")


def load_corpus(path: Path = CORPUS) -> list[dict]:
    """The corpus rows ({"name", "source", "text"}), in file order."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        if not isinstance(r.get("name"), str) or not isinstance(r.get("text"), str):
            raise ValueError(f"a corpus row needs a name and a text: {str(r)[:80]}")
    return rows


def scene(segmenter) -> tuple[np.ndarray, np.ndarray]:
    """The audit's image (840 x 840, a block of colour on noise) and its label: SAM2's mask for the tiny
    reasoner's known box and points (tests/backend/earthreason_fixture.known_sam_mask)."""
    from think2seg.prompts import PromptInstance
    from think2seg.testing.tiny_models import KNOWN_BOX, KNOWN_POINTS

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (FRAME, FRAME, 3), dtype=np.uint8)
    rgb[200:500, 250:600] = (40, 90, 160)
    return rgb, segmenter.segment(rgb, [PromptInstance(KNOWN_BOX, KNOWN_POINTS)]).merged


def _flat(values) -> list | str:
    """A prompt as SAM2 gets it, comparable across the two codes: its numbers flattened, or the array's dtype
    where the array is not numeric (the SAM2 call fails on it)."""
    a = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if a.dtype.kind not in "biuf":
        return f"<{a.dtype}>"
    return [float(v) for v in a.astype(float).ravel()]


def _completion(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def our_side(text: str, rgb: np.ndarray, gt: np.ndarray, segmenter, autocast=contextlib.nullcontext) -> dict:
    """Ours on one answer string: the same columns as `reference_side`."""
    from PIL import Image
    from think2seg.evaluation.metrics import score_sample
    from think2seg.prompts import parse_answer
    from think2seg.training.rewards import MaskReward, json_validity_reward, think_answer_shape_reward

    parsed = parse_answer(text, FRAME, FRAME, mode="reference")
    label = parsed.label
    out = {"status": label, "instances": len(parsed.instances), "reason": parsed.reason}
    pred = None
    if label == "ok":
        out["prompts"] = [
            [_flat(i.box) if i.box is not None else None, _flat(i.points) if len(i.points) else None]
            for i in parsed.instances
        ]
        try:
            with autocast():
                pred = segmenter.segment(rgb, list(parsed.instances)).merged
        except Exception as e:  # noqa: BLE001 - an audit reports, it does not stop
            out["error"] = f"SAM2 raised: {type(e).__name__}: {e}"
            pred = None
    s = score_sample(pred, gt, label if pred is not None or label != "ok" else "sam2_failed", "think2seg")
    out["eval_iou"] = float(s.iou)
    out["ciou_share"] = [int(s.intersection), int(s.union)]
    nothing = np.zeros_like(gt)
    out["eval_iou_empty"] = float(score_sample(None, nothing, label, "think2seg").iou)
    reward = MaskReward(segmenter)
    image = Image.fromarray(rgb)
    with autocast():
        out["mask"] = float(reward([_completion(text)], image=[image], mask=[gt])[0])
        out["mask_empty"] = float(reward([_completion(text)], image=[image], mask=[nothing])[0])
    out["fmt"] = float(json_validity_reward([_completion(text)])[0])
    out["shape"] = float(think_answer_shape_reward([_completion(text)])[0])
    return out


def embed_once(predictor_class):
    """A `SAM2ImagePredictor` that embeds an image once: a `set_image` of the pixels it holds is skipped. Every
    call of the audit is on one image, so each side's answers are scored on one embedding (computed the same
    way), and the CPU run takes minutes rather than an hour. SAM2's own code, not the reference's, is wrapped."""

    class EmbedOnce(predictor_class):
        _held = None

        def set_image(self, image):
            a = np.asarray(image)
            if self._is_image_set and self._held is not None and np.array_equal(a, self._held):
                return
            super().set_image(image)
            self._held = a.copy()

    return EmbedOnce


def load_reference(checkout: Path, segmenter, device: str):
    """The reference's reward class from a checkout, instantiated on our SAM2 model (see the module doc)."""
    path = Path(checkout) / REFERENCE_FILE
    if not path.is_file():
        raise SystemExit(f"{path} not found: --reference must be a checkout of Ricardo-XZ/Think2Seg-RS")
    spec = importlib.util.spec_from_file_location("think2seg_rs_reference_reward", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    ref = module.GEO_Reward_Func_Ultra.__new__(module.GEO_Reward_Func_Ultra)
    ref.pos_point_num, ref.neg_point_num = 2, 0  # as its __init__ sets them
    ref.sam_device = device
    ref.sam_model_size = segmenter.size
    ref.predictor = embed_once(SAM2ImagePredictor)(segmenter.predictor.model)
    return ref


def reference_side(ref, text: str, rgb: np.ndarray, gt: np.ndarray) -> dict:
    """The reference's own functions on one answer string, accounted as its evaluation scripts do."""
    from PIL import Image

    image = Image.fromarray(rgb)
    comp = [[{"content": text}]]
    parsed, msg = ref.parse_sam_json_test(text)
    out: dict = {"reason": msg}
    rewards, det = ref.sam_iou_reward_func_ultra_test(comp, [gt], [image], return_details=True)
    pred, inter, union = det["pred_masks"][0], det["intersection"][0], det["union"][0]
    if parsed is None:
        out["status"] = "unparsed"
    elif len(parsed) == 0:
        out["status"] = "empty"
    else:
        out["status"] = "ok" if pred is not None else "sam2_failed"
    out["instances"] = len(parsed) if parsed is not None and out["status"] == "ok" else 0
    if out["status"] == "ok":
        prompts = []
        for inst in parsed:  # what its loop hands predictor.predict
            box = np.array(inst["bbox_2d"]) if "bbox_2d" in inst else None
            pts = inst.get("positive_points")
            pts = np.array(pts) if pts is not None and len(pts) > 0 else None
            prompts.append([_flat(box) if box is not None else None, _flat(pts) if pts is not None else None])
        out["prompts"] = prompts
    out["eval_iou"] = float(rewards[0])
    # test_qwen.py:434-441 / test_ref.py:469-476: what this image adds to the cIoU sums
    if pred is not None and inter is not None and union is not None:
        out["ciou_share"] = [int(inter), int(union)]
    elif pred is not None and not pred.sum():
        out["ciou_share"] = [0, 0]
    else:
        out["ciou_share"] = [0, int(np.sum(gt > 0))]
    nothing = np.zeros_like(gt)
    out["eval_iou_empty"] = float(ref.sam_iou_reward_func_ultra_test(comp, [nothing], [image])[0])
    out["mask"] = float(ref.sam_reward_func_ultra(comp, [gt], [image])["final_reward"][0])
    out["mask_empty"] = float(ref.sam_reward_func_ultra(comp, [nothing], [image])["final_reward"][0])
    out["fmt"] = float(ref.sam_format_reward(comp)[0])
    out["shape"] = float(ref.thk_ans_format_reward(comp)[0])
    return out


def compare(ours: dict, theirs: dict) -> list[str]:
    """The columns where the two differ."""
    bad = []
    for col in COLUMNS:
        if col == "prompts" and not (ours["status"] == theirs["status"] == "ok"):
            continue
        if not _same(ours.get(col), theirs.get(col)):
            bad.append(col)
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", required=True, type=Path, help="a checkout of Ricardo-XZ/Think2Seg-RS")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--sam", default=str(ROOT / ".cache" / "tiny-models" / "sam2.1_hiera_t.pt"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit", type=int, default=None, help="the first N strings only")
    ap.add_argument("--json", type=Path, default=None, help="write every row's two sides here")
    args = ap.parse_args(argv)

    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    from think2seg.segmenter import Segmenter

    segmenter = Segmenter.from_pretrained(args.sam, device=args.device)
    rgb, gt = scene(segmenter)  # the label, before either side embeds the image (under its autocast)
    segmenter.predictor = embed_once(SAM2ImagePredictor)(segmenter.predictor.model)
    ref = load_reference(args.reference, segmenter, args.device)
    if torch.device(args.device).type == "cpu":  # the reference's autocast, on our calls too

        def autocast():
            return torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        autocast = contextlib.nullcontext  # ours autocasts on CUDA itself
    rows = load_corpus(args.corpus)[: args.limit]
    t0 = time.perf_counter()
    results, counts = [], dict.fromkeys(COLUMNS, 0)
    for row in rows:
        ours = our_side(row["text"], rgb, gt, segmenter, autocast)
        theirs = reference_side(ref, row["text"], rgb, gt)
        bad = compare(ours, theirs)
        for col in COLUMNS:
            counts[col] += col not in bad
        results.append({"name": row["name"], "source": row["source"], "differs": bad, "ours": ours, "ref": theirs})
    n = len(rows)
    exact = sum(not r["differs"] for r in results)
    print(
        f"{n} answer strings ({sum(r['source'] == 'test_parity' for r in rows)} from test_parity.py's TABLE), "
        f"SAM2 {segmenter.model_id} on {args.device}, {time.perf_counter() - t0:.0f} s"
    )
    print(f"agree on every column: {exact} of {n}")
    for col in COLUMNS:
        print(f"  {col:<15} {counts[col]:>4} / {n}")
    for who in ("ours", "ref"):
        pf = sum(r[who]["status"] == "unparsed" for r in results)
        sf = sum(r[who]["status"] == "sam2_failed" for r in results)
        print(f"  {who:<5} parse_failures {pf}, sam2_failures {sf}")
    for r in results:
        if r["differs"]:
            print(
                f"- {r['name']}: "
                + "; ".join(f"{c}: ours {r['ours'].get(c)!r} ref {r['ref'].get(c)!r}"[:300] for c in r["differs"])
            )
            if r["ours"].get("error"):
                print(f"    ours: {r['ours']['error']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
