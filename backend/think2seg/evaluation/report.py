"""The visual report of an evaluation: best and worst cases, an IoU histogram, one HTML page holding them.

Each case is one PNG: the image | the ground truth | the prediction with the model's boxes and points drawn,
titled with the question and the IoU. Figures go to REPORT_DIR/figures, the page is REPORT_DIR/report.html.
"""

from __future__ import annotations

import html
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from .earthreason import Sample, SampleProblem, load_mask, load_rgb
from .metrics import Protocol

DISPLAY_SIDE = 640  # long side of the images drawn in a case figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, dpi: int) -> Path:
    """Lay out, write and close a figure; returns its path."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def pick_cases(records: list[dict], k: int) -> tuple[list[dict], list[dict]]:
    """The k best and k worst images by IoU (ties by id), without showing an image twice."""
    ranked = sorted(records, key=lambda r: (-r["iou"], r["image_id"]))
    best = ranked[:k]
    seen = {r["image_id"] for r in best}
    worst = [r for r in reversed(ranked) if r["image_id"] not in seen][:k]
    return best, worst


def _overlay(rgb: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], alpha: float = 0.45) -> np.ndarray:
    out = rgb.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.array(color, dtype=np.float32)
    return out.clip(0, 255).astype(np.uint8)


def _display(rgb: np.ndarray, *masks: np.ndarray) -> tuple[float, np.ndarray, list[np.ndarray]]:
    h, w = rgb.shape[:2]
    s = min(1.0, DISPLAY_SIDE / max(h, w))
    if s == 1.0:
        return 1.0, rgb, list(masks)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    return (
        s,
        small,
        [np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0 for m in masks],
    )


def draw_case(rec: dict, sample: Sample, pred_path: Path, path: Path) -> Path:
    """image | ground truth | prediction + prompts, one PNG."""
    plt = _pyplot()
    rgb = load_rgb(sample.image_path)
    gt = sample.read_mask()
    pred = load_mask(pred_path) if pred_path.exists() else np.zeros_like(gt)
    s, rgb, (gt, pred) = _display(rgb, gt, pred)
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 5.2))
    panels = [
        (rgb, "image"),
        (_overlay(rgb, gt, (40, 220, 90)), f"ground truth ({rec['gt_area']} px)"),
        (_overlay(rgb, pred, (30, 144, 255)), f"prediction ({rec['pred_area']} px, {rec['status']})"),
    ]
    for ax, (img, title) in zip(axes, panels, strict=True):
        ax.imshow(img)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    ax = axes[2]
    for p in rec.get("prompts", []):
        x1, y1, x2, y2 = (v * s for v in p["box"])
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, edgecolor="red", facecolor="none", lw=1.5, ls="--"))
        pts = np.asarray(p["points"], dtype=float) * s
        if len(pts):
            ax.scatter(pts[:, 0], pts[:, 1], color="lime", marker="*", s=160, edgecolor="white", linewidth=1)
    question = textwrap.shorten(rec["question"], 300)
    fig.suptitle(
        "\n".join(textwrap.wrap(f"{rec['image_id']}: {question}", 120))
        + f"\nIoU {rec['iou']:.3f}"
        + ("  (no target in this image)" if rec["empty_target"] else ""),
        fontsize=10,
    )
    return _save(plt, fig, path, dpi=90)


def draw_histogram(records: list[dict], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    bins = np.linspace(0, 1, 21)
    target = [r["iou"] for r in records if not r["empty_target"]]
    empty = [r["iou"] for r in records if r["empty_target"]]
    ax.hist(
        [target, empty],
        bins=bins,
        stacked=True,
        color=["#1e90ff", "#bbbbbb"],
        label=[f"with a target ({len(target)})", f"no target ({len(empty)})"],
    )
    ax.set_xlabel("IoU per image")
    ax.set_ylabel("images")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    return _save(plt, fig, path, dpi=100)


def draw_categories(per_category: dict, path: Path) -> Path:
    plt = _pyplot()
    names = list(per_category)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.45 * len(names) + 2), 3.8))
    x = np.arange(len(names))
    giou = [per_category[c]["giou"] or 0 for c in names]
    ciou = [per_category[c]["ciou"] or 0 for c in names]
    ax.bar(x - 0.2, giou, 0.4, label="gIoU", color="#1e90ff")
    ax.bar(x + 0.2, ciou, 0.4, label="cIoU", color="#ff8c00")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _save(plt, fig, path, dpi=100)


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def _case_html(rec: dict, img: str) -> str:
    e = html.escape
    reasoning = textwrap.shorten(rec.get("reasoning") or "", 600, placeholder=" ...")
    return (
        f'<div class="case"><img src="{e(img)}" alt="{e(rec["image_id"])}">'
        f"<p><b>{e(rec['image_id'])}</b> IoU {rec['iou']:.3f}, {e(rec['status'])}: {e(rec.get('message', ''))}</p>"
        f'<p><i>{e(rec["question"])}</i></p><p class="small">reasoning: {e(reasoning)}</p></div>'
    )


#: The precision thresholds the page shows (the reference's zero-shot runs report Pr@0.5; metrics.json has all).
PR_REPORTED = ("0.5", "0.7", "0.9")


def write_report(
    out: Path,
    records: list[dict],
    metrics: dict,
    samples: dict[str, Sample],
    problems: list[SampleProblem],
    protocol: Protocol,
    k: int = 4,
) -> Path:
    """Draw the figures and write REPORT_DIR/report.html; returns the page's path."""
    out = Path(out)
    fig_dir = out / "figures"
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Think2Seg evaluation</title><style>"
        "body{font-family:sans-serif;max-width:1300px;margin:1em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        ".case img{max-width:100%}.case{margin-bottom:1.5em}.small{font-size:85%;color:#444}"
        "</style></head><body>",
        f"<h1>Think2Seg evaluation: {e(str(metrics.get('split', '')))}</h1>",
        f"<p>Protocol <b>{e(protocol.name)}</b>: {e(protocol.description)}. Figures of the two protocols are not "
        "comparable.</p>",
        f"<p>Reasoner {e(str(metrics.get('models', {}).get('reasoner')))}, segmenter "
        f"{e(str(metrics.get('models', {}).get('segmenter')))}; data {e(str(metrics.get('data')))}.</p>",
        f"<p>Benchmark {e(str(metrics.get('benchmark', 'earthreason')))}, decoding "
        f"<b>{e(str(metrics.get('decoding', '?')))}</b>.</p>",
        "<table><tr><th>images</th><th>gIoU</th><th>cIoU</th>"
        + "".join(f"<th>Pr@{t}</th>" for t in PR_REPORTED)
        + "<th>parse failures</th><th>SAM2 failures</th><th>empty answers</th>"
        "<th>no-target images</th><th>skipped (bad data)</th></tr>",
        f"<tr><td>{metrics['n']}</td><td>{_pct(metrics['giou'])}</td><td>{_pct(metrics['ciou'])}</td>"
        + "".join(f"<td>{_pct(metrics.get('precision_at', {}).get(t))}</td>" for t in PR_REPORTED)
        + f"<td>{metrics['parse_failures']}</td><td>{metrics.get('sam2_failures', 0)}</td>"
        f"<td>{metrics['empty_answers']}</td><td>{metrics['empty_target']}</td>"
        f"<td>{metrics.get('skipped', 0)}</td></tr></table>",
        f"<p class='small'>Pr@X: {e(str(metrics.get('precision_definition', '')))} "
        f"({metrics.get('precision_images', metrics['n'])} images).</p>",
    ]
    if records:
        draw_histogram(records, fig_dir / "iou_histogram.png")
        parts.append("<h2>IoU per image</h2><img src='figures/iou_histogram.png' alt='IoU histogram'>")
    per_cat = metrics.get("per_category")
    if per_cat:
        draw_categories(per_cat, fig_dir / "categories.png")
        rows = "".join(
            f"<tr><td style='text-align:left'>{e(c)}</td><td>{v['n']}</td><td>{_pct(v['giou'])}</td>"
            f"<td>{_pct(v['ciou'])}</td></tr>"
            for c, v in per_cat.items()
        )
        parts.append(
            "<h2>Per category</h2><img src='figures/categories.png' alt='per category'>"
            f"<table><tr><th>category</th><th>images</th><th>gIoU</th><th>cIoU</th></tr>{rows}</table>"
        )
    best, worst = pick_cases(records, k)
    for title, cases in (("Best cases", best), ("Worst cases", worst)):
        if not cases:
            continue
        parts.append(f"<h2>{title}</h2>")
        for rec in cases:
            sample = samples.get(rec["image_id"])
            if sample is None:
                continue
            name = f"case_{rec['image_id']}.png"
            try:
                draw_case(rec, sample, out / "pred" / f"{rec['image_id']}.png", fig_dir / name)
            except ValueError as err:  # the image went missing since it was evaluated
                parts.append(f"<p>{e(rec['image_id'])}: cannot draw ({e(str(err))})</p>")
                continue
            parts.append(_case_html(rec, f"figures/{name}"))
    if problems:
        items = "".join(f"<li><b>{e(p.image_id)}</b>: {e(p.message)}</li>" for p in problems)
        parts.append(f"<h2>Skipped samples ({len(problems)})</h2><ul>{items}</ul>")
    parts.append(
        "<p class='small'>Every answer and reasoning: samples.jsonl; predicted masks: pred/; "
        "figures: metrics.json.</p></body></html>"
    )
    page = out / "report.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page
