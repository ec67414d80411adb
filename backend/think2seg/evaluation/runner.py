"""Run the pipeline over an EarthReason split in batches, score each image, write masks, metrics and report.

REPORT_DIR holds:
- `run.json`: what was evaluated (data, split, protocol, seed, models); a resumed run must match it;
- `samples.jsonl`: one line per finished image (question, answer, reasoning, status, IoU, prompts): the
  resume log: a rerun skips the images already there;
- `pred/<image id>.png`: the predicted mask, 0/255, at the label's size;
- `problems.jsonl`: the samples skipped for bad data, each with a sentence;
- `metrics.json`, `report.html` and its figures (see `report`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import BadInput
from .earthreason import (
    Sample,
    SampleProblem,
    load_sample,
    reference_draw,
    resize_mask,
    resize_rgb,
    scan_split,
)
from .metrics import Protocol, SampleScore, get_protocol, score_sample, summarize

SAMPLES_FILE = "samples.jsonl"


@dataclass
class EvalSettings:
    data: str
    split: str
    out: str
    protocol: str = "think2seg"
    seed: int = 0  # the reference's run scripts pass --seed 0
    limit: int | None = None
    batch_size: int = 4
    max_reasoning_tokens: int = 2048  # the reference generates up to 2,048 new tokens
    restart: bool = False
    report_cases: int = 4


def select_samples(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """All samples, or `limit` of them drawn by a seeded hash of the id (a larger limit keeps the smaller set)."""
    if not limit or limit >= len(samples):
        return samples
    order = sorted(samples, key=lambda s: hashlib.sha1(f"{seed}:{s.image_id}".encode()).hexdigest())
    keep = {s.image_id for s in order[:limit]}
    return [s for s in samples if s.image_id in keep]


def draw_questions(samples: list[Sample], settings: EvalSettings,
                   proto: Protocol) -> list[tuple[Sample, int, str | None]]:
    """The (sample, question index, question) triples a protocol evaluates, in its order.

    think2seg: the reference's draw over the split's listing (`earthreason.reference_draw`), indexing the QA
    file's list as written (a blank question drawn is None); an entry this reader rejected (now in problems)
    keeps its draw but is not evaluated. Others: `select_samples` and the protocol's question rule.
    """
    if proto.question == "reference":
        by_id = {s.image_id: s for s in samples}
        draw = reference_draw(settings.data, settings.split, settings.seed, settings.limit)
        return [(by_id[i], k, by_id[i].question_text(k)) for i, k in draw if i in by_id]
    return [(s, *s.question(proto.question, settings.seed)) for s in select_samples(samples, settings.limit,
                                                                                     settings.seed)]


def read_finished(path: Path) -> dict[str, dict]:
    """The finished samples of an earlier run. A line cut short by a crash is dropped and the log rewritten
    without it, so the records appended next start on a line of their own."""
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    text = path.read_text(encoding="utf-8")
    clean = True
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            clean = False
            continue
        if isinstance(rec, dict) and "image_id" in rec and "iou" in rec:
            done[rec["image_id"]] = rec
        else:
            clean = False
    if not clean or (text and not text.endswith("\n")):
        path.write_text("".join(json.dumps(r) + "\n" for r in done.values()), encoding="utf-8")
    return done


def _run_header(settings: EvalSettings, proto: Protocol, models: dict) -> dict:
    return {
        "data": str(Path(settings.data).resolve()), "split": settings.split, "protocol": proto.name,
        "seed": settings.seed, "max_reasoning_tokens": settings.max_reasoning_tokens,
        "reasoner": models.get("reasoner"), "segmenter": models.get("segmenter"),
        "prompt_template": models.get("prompt_template"), "parse_mode": models.get("parse_mode"),
        "generation": models.get("generation"), "transformers": models.get("transformers"),
    }


def _check_resume(out: Path, header: dict) -> None:
    path = out / "run.json"
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return
    diff = [k for k in header if old.get(k) != header[k]]
    if diff:
        what = ", ".join(f"{k} {old.get(k)!r} -> {header[k]!r}" for k in diff)
        raise BadInput(
            f"{out} holds an evaluation run with other settings ({what}); pass --restart to start over there "
            "or choose another output folder.", code="report_dir_mismatch",
        )


def _prompts_in_label_pixels(result, sx: float, sy: float) -> list[dict]:
    def box(b):
        return None if b is None else [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]

    return [{"box": box(inst.box_pixel), "points": [[x * sx, y * sy] for x, y in inst.points_pixel],
             "score": inst.score} for inst in result.instances]


def _record(sample: Sample, q_index: int, question: str, result, score: SampleScore, gt: np.ndarray,
            pred_label: np.ndarray, frame: tuple[int, int], seconds: float) -> dict:
    h, w = gt.shape
    return {
        "image_id": sample.image_id, "question": question, "question_index": q_index,
        "category": sample.category, "status": result.status, "message": result.message,
        "reasoning": result.reasoning, "answer": result.answer,
        "iou": score.iou, "intersection": score.intersection, "union": score.union,
        "empty_target": score.empty_target, "width": w, "height": h, "frame": list(frame),
        "gt_area": int(gt.sum()), "pred_area": int(pred_label.sum()),
        "prompts": _prompts_in_label_pixels(result, w / frame[0], h / frame[1]),
        "seconds": round(seconds, 3),
        "timings": {k: round(v, 4) for k, v in result.timings.items()},
    }


def evaluate(pipeline, settings: EvalSettings, progress: bool = True, log=None) -> dict:
    """Evaluate `pipeline` on a split; returns the metrics written to REPORT_DIR/metrics.json.

    Every prompt is prefilled whole, as the reference did: no prefix reused across questions (Reasoner,
    `THINK2SEG_PREFIX_REUSE`), whose cut prefill may differ in bf16's last bits; an image here is asked once
    anyway. The run's provenance (`generation.prefix_reuse`) says so."""
    reuse, pipeline.reasoner.prefix_reuse = pipeline.reasoner.prefix_reuse, False
    try:
        return _evaluate(pipeline, settings, progress, log)
    finally:
        pipeline.reasoner.prefix_reuse = reuse


def _evaluate(pipeline, settings: EvalSettings, progress: bool, log) -> dict:
    from tqdm.auto import tqdm

    from ..georef import tile_from_array
    from ..options import SegmentOptions
    from ..reasoner import ANSWER_BUDGET
    from .report import write_report

    log = log or (lambda msg: print(msg, file=sys.stderr))
    proto = get_protocol(settings.protocol)
    if settings.batch_size < 1:
        raise BadInput("--batch-size must be at least 1.", code="bad_options")
    samples, problems = scan_split(settings.data, settings.split)
    if not samples:
        raise BadInput(f"No usable sample in {settings.data}/{settings.split} ({len(problems)} with problems; "
                       f"first: {problems[0].message if problems else 'the images folder is empty'}).",
                       code="dataset_empty")
    drawn = draw_questions(samples, settings, proto)
    selected = [s for s, _, _ in drawn]
    question_of = {s.image_id: (k, q) for s, k, q in drawn}

    out = Path(settings.out)
    if settings.restart and out.exists():
        for name in (SAMPLES_FILE, "run.json", "metrics.json", "problems.jsonl", "report.html"):
            (out / name).unlink(missing_ok=True)
        for name in ("pred", "figures"):
            shutil.rmtree(out / name, ignore_errors=True)
    # Scores use the pixel mask; polygons would cost ~0.5 s an image for nothing.
    opts = SegmentOptions(max_reasoning_tokens=settings.max_reasoning_tokens, polygonise=False,
                          parse_mode=proto.parse_mode, answer_budget=ANSWER_BUDGET if proto.forced_answer else 0)
    provenance = pipeline.provenance(opts)
    header = _run_header(settings, proto, provenance)
    _check_resume(out, header)
    (out / "pred").mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps(header, indent=1), encoding="utf-8")

    log_path = out / SAMPLES_FILE
    done = read_finished(log_path)
    # The reference's draw gives an image another question under another --limit: such a record is redone.
    pending = [s for s in selected
               if s.image_id not in done or done[s.image_id].get("question_index") != question_of[s.image_id][0]]
    if done:
        log(f"resuming: {len(selected) - len(pending)} of {len(selected)} images already evaluated in {out}")
    t_start = time.perf_counter()
    bar = tqdm(total=len(selected), initial=len(selected) - len(pending), desc=f"{settings.split} ({proto.name})",
               unit="img", disable=not progress, file=sys.stderr)
    with log_path.open("a", encoding="utf-8") as fh:
        for i in range(0, len(pending), settings.batch_size):
            batch = []
            for sample in pending[i:i + settings.batch_size]:
                try:
                    rgb, gt = load_sample(sample, resize_label=proto.resize_mismatched_labels)
                except ValueError as e:
                    problems.append(SampleProblem(sample.image_id, str(e)))
                    bar.update(1)
                    continue
                q_index, question = question_of[sample.image_id]
                if question is None:
                    problems.append(SampleProblem(sample.image_id, f"question {q_index} (the one drawn) is empty"))
                    bar.update(1)
                    continue
                frame = proto.frame_size(rgb.shape[1], rgb.shape[0])
                batch.append((sample, q_index, question, gt, frame, tile_from_array(resize_rgb(rgb, frame))))
            if not batch:
                continue
            t0 = time.perf_counter()
            results = pipeline.segment_tiles([b[5] for b in batch], [b[2] for b in batch], opts)
            per = (time.perf_counter() - t0) / len(batch)
            for (sample, q_index, question, gt, frame, _), result in zip(batch, results, strict=True):
                h, w = gt.shape
                gt_frame = resize_mask(gt, frame)
                score = score_sample(result.merged_mask, gt_frame, result.status, proto)
                pred_label = resize_mask(result.merged_mask, (w, h))
                Image.fromarray(pred_label.astype(np.uint8) * 255).save(out / "pred" / f"{sample.image_id}.png")
                rec = _record(sample, q_index, question, result, score, gt, pred_label, frame, per)
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                done[sample.image_id] = rec
                bar.update(1)
    bar.close()

    records = [done[s.image_id] for s in selected if s.image_id in done]
    with (out / "problems.jsonl").open("w", encoding="utf-8") as fh:
        for p in problems:
            fh.write(json.dumps(p.to_dict()) + "\n")
    scores = [SampleScore(r["iou"], r["intersection"], r["union"], r["empty_target"], r["status"]) for r in records]
    metrics = summarize(scores, [r.get("category") for r in records], proto)
    metrics.update({
        "split": settings.split, "data": header["data"], "seed": settings.seed, "limit": settings.limit,
        "selected": len(selected), "skipped": len(problems), "models": provenance,
        "parse_mode": provenance["parse_mode"], "generation": provenance["generation"],
        "prompt_template": provenance["prompt_template"], "transformers": provenance["transformers"],
        "max_reasoning_tokens": settings.max_reasoning_tokens,
        "seconds_this_run": round(time.perf_counter() - t_start, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    write_report(out, records, metrics, {s.image_id: s for s in samples}, problems, proto, settings.report_cases)
    return metrics
