"""Run the pipeline over a benchmark split (EarthReason, RRSIS-D, RefSegRS, RISBench: `benchmarks`) in batches,
score each image, write masks, metrics and report.

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
from ..prompts import parse_answer
from .benchmarks import get_benchmark
from .earthreason import (
    Sample,
    SampleProblem,
    label_channel_pixels,
    load_sample,
    resize_mask,
    resize_rgb,
)
from .metrics import (
    Protocol,
    SampleScore,
    get_protocol,
    multichannel_label_score,
    score_sample,
    summarize,
)

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
    benchmark: str = "earthreason"  # benchmarks.BENCHMARKS


def select_samples(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """All samples, or `limit` of them drawn by a seeded hash of the id (a larger limit keeps the smaller set)."""
    if not limit or limit >= len(samples):
        return samples
    order = sorted(samples, key=lambda s: hashlib.sha1(f"{seed}:{s.image_id}".encode()).hexdigest())
    keep = {s.image_id for s in order[:limit]}
    return [s for s in samples if s.image_id in keep]


def draw_questions(
    samples: list[Sample], settings: EvalSettings, proto: Protocol
) -> list[tuple[Sample, int, str | None]]:
    """The (sample, question index, question) triples a protocol evaluates, in its order.

    think2seg: the reference's draw over the split's listing (`earthreason.reference_draw`), indexing the QA
    file's list as written (a blank question drawn is None; the question kept with its surrounding blanks
    where the protocol says `question_as_written`); an entry this reader rejected (now in problems)
    keeps its draw but is not evaluated. Others: `select_samples` and the protocol's question rule.
    """
    if proto.question == "reference":
        by_id = {s.image_id: s for s in samples}
        draw = get_benchmark(settings.benchmark).draw(
            settings.data, settings.split, settings.seed, settings.limit, samples
        )
        as_written = proto.question_as_written
        return [(by_id[i], k, by_id[i].question_text(k, as_written)) for i, k in draw if i in by_id]
    return [
        (s, *s.question(proto.question, settings.seed)) for s in select_samples(samples, settings.limit, settings.seed)
    ]


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


def _run_header(settings: EvalSettings, proto: Protocol, models: dict, decoding: str) -> dict:
    return {
        "data": str(Path(settings.data).resolve()),
        "split": settings.split,
        "protocol": proto.name,
        "benchmark": settings.benchmark,
        "decoding": decoding,
        "seed": settings.seed,
        "max_reasoning_tokens": settings.max_reasoning_tokens,
        "reasoner": models.get("reasoner"),
        "segmenter": models.get("segmenter"),
        "prompt_template": models.get("prompt_template"),
        "parse_mode": models.get("parse_mode"),
        "generation": models.get("generation"),
        "transformers": models.get("transformers"),
    }


def _check_resume(out: Path, header: dict) -> None:
    path = out / "run.json"
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return
    # a run written before these keys existed: EarthReason, its decoding not recorded (not compared)
    before = {"benchmark": "earthreason", "decoding": header.get("decoding")}
    diff = [k for k in header if (old[k] if k in old else before.get(k)) != header[k]]
    if diff:
        what = ", ".join(f"{k} {old.get(k)!r} -> {header[k]!r}" for k in diff)
        raise BadInput(
            f"{out} holds an evaluation run with other settings ({what}); pass --restart to start over there "
            "or choose another output folder.",
            code="report_dir_mismatch",
        )


def _prompts_in_label_pixels(result, sx: float, sy: float) -> list[dict]:
    def box(b):
        return None if b is None else [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]

    return [
        {"box": box(inst.box_pixel), "points": [[x * sx, y * sy] for x, y in inst.points_pixel], "score": inst.score}
        for inst in result.instances
    ]


def status_label(result, parse_mode: str) -> str:
    """The result's status as the reference counts it: an answer its parser accepts and its SAM2 call cannot
    take is `sam2_failed`, not a parse failure (`prompts.ParsedAnswer.label`)."""
    if result.status != "unparsed":
        return result.status
    return parse_answer(result.answer, mode=parse_mode).label


def _record(
    sample: Sample,
    q_index: int,
    question: str,
    result,
    score: SampleScore,
    gt: np.ndarray,
    pred_label: np.ndarray,
    frame: tuple[int, int],
    seconds: float,
) -> dict:
    h, w = gt.shape
    return {
        "image_id": sample.image_id,
        "question": question,
        "question_index": q_index,
        "category": sample.category,
        "status": score.status,
        "message": result.message,
        "reasoning": result.reasoning,
        "answer": result.answer,
        "iou": score.iou,
        "intersection": score.intersection,
        "union": score.union,
        "empty_target": score.empty_target,
        "width": w,
        "height": h,
        "frame": list(frame),
        "gt_area": int(gt.sum()),
        "pred_area": int(pred_label.sum()),
        "prompts": _prompts_in_label_pixels(result, w / frame[0], h / frame[1]),
        "seconds": round(seconds, 3),
        "timings": {k: round(v, 4) for k, v in result.timings.items()},
    }


def run_samples(pipeline, chunk: list[tuple[Sample, int, str | None]], proto: Protocol, opts) -> list[tuple]:
    """Evaluate one chunk of (sample, question index, question): one generate call for its readable samples.

    Returns (image id, record, problem, predicted mask as PNG bytes) per sample, a record or a problem each:
    what `evaluate` writes, here or from a Ray actor (`distributed`)."""
    import io

    from ..georef import tile_from_array

    outcomes, batch = [], []
    for sample, q_index, question in chunk:
        try:
            rgb, gt = load_sample(sample, resize_label=proto.resize_mismatched_labels)
        except ValueError as e:
            outcomes.append((sample.image_id, None, str(e), None))
            continue
        if question is None:
            outcomes.append((sample.image_id, None, f"question {q_index} (the one drawn) is empty", None))
            continue
        frame = proto.frame_size(rgb.shape[1], rgb.shape[0])
        batch.append((sample, q_index, question, gt, frame, tile_from_array(resize_rgb(rgb, frame))))
    if not batch:
        return outcomes
    t0 = time.perf_counter()
    results = pipeline.segment_tiles(
        [b[5] for b in batch], [b[2] for b in batch], opts, query_as_written=proto.question_as_written
    )
    per = (time.perf_counter() - t0) / len(batch)
    for (sample, q_index, question, gt, frame, _), result in zip(batch, results, strict=True):
        h, w = gt.shape
        gt_frame = resize_mask(gt, frame)
        score = score_sample(result.merged_mask, gt_frame, status_label(result, proto.parse_mode), proto)
        if proto.reference_label_channels and sample.mask_reader is None and not score.empty_target:
            channels, pixels = label_channel_pixels(sample.label_path, frame)
            if channels > 1:
                score = multichannel_label_score(score, pixels)
        pred_label = resize_mask(result.merged_mask, (w, h))
        buf = io.BytesIO()
        Image.fromarray(pred_label.astype(np.uint8) * 255).save(buf, format="PNG")
        rec = _record(sample, q_index, question, result, score, gt, pred_label, frame, per)
        outcomes.append((sample.image_id, rec, None, buf.getvalue()))
    return outcomes


def segment_options(settings: EvalSettings, proto: Protocol):
    """The pipeline options of an evaluation: the pixel mask only (polygons would cost ~0.5 s an image for
    nothing), the protocol's parser and forced-answer rule."""
    from ..options import SegmentOptions
    from ..reasoner import ANSWER_BUDGET

    return SegmentOptions(
        max_reasoning_tokens=settings.max_reasoning_tokens,
        polygonise=False,
        parse_mode=proto.parse_mode,
        answer_budget=ANSWER_BUDGET if proto.forced_answer else 0,
    )


def evaluate(
    pipeline,
    settings: EvalSettings,
    progress: bool = True,
    log=None,
    executor=None,
    provenance: dict | None = None,
    decoding: str | None = None,
) -> dict:
    """Evaluate `pipeline` on a split; returns the metrics written to REPORT_DIR/metrics.json.

    Every prompt is prefilled whole, as the reference did: no prefix reused across questions (Reasoner,
    `THINK2SEG_PREFIX_REUSE`), whose cut prefill may differ in bf16's last bits; an image here is asked once
    anyway. The run's provenance (`generation.prefix_reuse`) says so."""
    if pipeline is None:  # the models are elsewhere (Ray actors: `distributed.evaluate_ray`)
        return _evaluate(None, settings, progress, log, executor, provenance, decoding)
    reuse, pipeline.reasoner.prefix_reuse = pipeline.reasoner.prefix_reuse, False
    try:
        with pipeline.keeping_at_most(max(1, settings.batch_size)):  # no image is asked again after its call
            return _evaluate(pipeline, settings, progress, log, executor, provenance, decoding)
    finally:
        pipeline.reasoner.prefix_reuse = reuse


def _evaluate(pipeline, settings: EvalSettings, progress: bool, log, executor, provenance, decoding) -> dict:
    from tqdm.auto import tqdm

    from .report import write_report

    log = log or (lambda msg: print(msg, file=sys.stderr))
    proto = get_protocol(settings.protocol)
    if settings.batch_size < 1:
        raise BadInput("--batch-size must be at least 1.", code="bad_options")
    bench = get_benchmark(settings.benchmark)
    samples, problems = bench.scan(settings.data, settings.split)
    if not samples:
        raise BadInput(
            f"No usable {bench.name} sample in {settings.data} (split {settings.split}; {len(problems)} "
            f"with problems; first: {problems[0].message if problems else 'the images folder is empty'}).",
            code="dataset_empty",
        )
    drawn = draw_questions(samples, settings, proto)
    selected = [s for s, _, _ in drawn]
    question_of = {s.image_id: (k, q) for s, k, q in drawn}

    out = Path(settings.out)
    if settings.restart and out.exists():
        for name in (SAMPLES_FILE, "run.json", "metrics.json", "problems.jsonl", "report.html"):
            (out / name).unlink(missing_ok=True)
        for name in ("pred", "figures"):
            shutil.rmtree(out / name, ignore_errors=True)
    opts = segment_options(settings, proto)

    if pipeline is not None:
        provenance = pipeline.provenance(opts)
        decoding = pipeline.reasoner.decoding
    header = _run_header(settings, proto, provenance, decoding)
    _check_resume(out, header)
    (out / "pred").mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps(header, indent=1), encoding="utf-8")

    log_path = out / SAMPLES_FILE
    done = read_finished(log_path)
    # The reference's draw gives an image another question under another --limit: such a record is redone.
    pending = [
        s
        for s in selected
        if s.image_id not in done or done[s.image_id].get("question_index") != question_of[s.image_id][0]
    ]
    if done:
        log(f"resuming: {len(selected) - len(pending)} of {len(selected)} images already evaluated in {out}")
    t_start = time.perf_counter()
    bar = tqdm(
        total=len(selected),
        initial=len(selected) - len(pending),
        desc=f"{settings.split} ({proto.name})",
        unit="img",
        disable=not progress,
        file=sys.stderr,
    )
    chunks = [
        [(sample, *question_of[sample.image_id]) for sample in pending[i : i + settings.batch_size]]
        for i in range(0, len(pending), settings.batch_size)
    ]
    outcomes = (
        executor(chunks) if executor is not None else (run_samples(pipeline, chunk, proto, opts) for chunk in chunks)
    )
    with log_path.open("a", encoding="utf-8") as fh:
        for chunk_out in outcomes:
            for image_id, rec, problem, pred_png in chunk_out:
                if problem is not None:
                    problems.append(SampleProblem(image_id, problem))
                else:
                    (out / "pred" / f"{image_id}.png").write_bytes(pred_png)
                    fh.write(json.dumps(rec) + "\n")
                    fh.flush()
                    done[image_id] = rec
                bar.update(1)
    bar.close()

    records = [done[s.image_id] for s in selected if s.image_id in done]
    with (out / "problems.jsonl").open("w", encoding="utf-8") as fh:
        for p in problems:
            fh.write(json.dumps(p.to_dict()) + "\n")
    scores = [SampleScore(r["iou"], r["intersection"], r["union"], r["empty_target"], r["status"]) for r in records]
    metrics = summarize(scores, [r.get("category") for r in records], proto)
    metrics.update(
        {
            "split": settings.split,
            "benchmark": settings.benchmark,
            "decoding": decoding,
            "data": header["data"],
            "seed": settings.seed,
            "limit": settings.limit,
            "selected": len(selected),
            "skipped": len(problems),
            "models": provenance,
            "parse_mode": provenance["parse_mode"],
            "generation": provenance["generation"],
            "prompt_template": provenance["prompt_template"],
            "transformers": provenance["transformers"],
            "max_reasoning_tokens": settings.max_reasoning_tokens,
            "seconds_this_run": round(time.perf_counter() - t_start, 1),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    write_report(out, records, metrics, {s.image_id: s for s in samples}, problems, proto, settings.report_cases)
    return metrics
