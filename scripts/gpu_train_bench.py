#!/usr/bin/env python3
"""Seconds per GRPO step and peak GPU memory of Think2Seg training, with random weights of the real shapes.

The policy is a Qwen2.5-VL-3B (config built from its published values: hidden 2048, 36 layers, 16 heads,
2 KV heads, MLP 11008, vocabulary 151,936; vision tower depth 32, hidden 1280, out 2048) with random bf16
weights, saved to a work folder so that it loads through the same code as a real checkpoint; the frozen
segmenter is a random SAM2.1-small. Random weights cost the same compute as trained ones; they never
write an end-of-sequence token, so every completion runs to --completion-tokens (the worst case).

Two ways to run a step:
- `trl`: `think2seg.training.grpo.build_trainer` (TRL's GRPOTrainer with our rewards and dataset), the path
  `think2seg train` takes. Needs trl and datasets (and their dill, multiprocess) on the path.
- `plain`: the same GRPO step written out here (sample G completions, rewards, group advantages, policy
  and reference log-probs, clipped loss + beta KL, AdamW): needs only torch, transformers, peft (for LoRA),
  sam2 and its hydra/omegaconf/iopath, json_repair.
`--engine auto` takes trl when it imports, plain otherwise. Each mode (`full`: all weights trained, float32
master weights under bf16 autocast, bf16 reference model; `lora`: rank-64 adapters on a bf16 base, no
reference copy) runs in turn; an out-of-memory error is reported for its mode and the next mode still runs.

Here (CPU, tiny shapes, a minute):
    .venv/bin/python scripts/gpu_train_bench.py --tiny
Before a GPU run, here:
    .venv/bin/python scripts/gpu_train_bench.py --export-processor .cache/bench/processor   # ~11 MB
    (plus wheels of the packages that machine lacks, see the device README: json_repair, hydra-core,
     omegaconf, iopath, antlr4-python3-runtime 4.9.3 (build its wheel here), and for the trl engine trl,
     datasets, dill, multiprocess; sam2 travels as its source folder)
There (carry .cache/bench and the wheels folder; sam2's package folder on PYTHONPATH):
    PYTHONUNBUFFERED=1 PYTHONPATH=backend:/tmp/site:$SAM2_PARENT python3 scripts/gpu_train_bench.py \
        --processor .cache/bench/processor --json $OUT/gpu_train_bench.json
Defaults on the GPU: 3 steps a mode (the first is warm-up), 8 completions of 256 tokens per step, one
840 px image per step, gradient checkpointing on; about 5 minutes for both modes on an H100.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

QWEN25_VL_3B = {  # the published Qwen2.5-VL-3B-Instruct config values
    "text": {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
             "num_attention_heads": 16, "num_key_value_heads": 2, "max_position_embeddings": 128000,
             "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "hidden_act": "silu",
             "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
             "bos_token_id": 151643, "eos_token_id": 151645, "pad_token_id": 151643},
    "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 2048,
               "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112, "patch_size": 14,
               "spatial_merge_size": 2, "temporal_patch_size": 2, "hidden_act": "silu", "in_channels": 3,
               "tokens_per_second": 2},
}
IDS = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
       "vision_end_token_id": 151653}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def missing_modules(engine: str, lora: bool) -> list[str]:
    need = ["torch", "transformers", "PIL", "numpy", "json_repair", "sam2", "hydra", "omegaconf", "iopath"]
    if lora or engine == "trl":
        need.append("peft")
    if engine == "trl":
        need += ["trl", "datasets"]
    out = []
    for name in need:
        try:
            importlib.import_module(name)
        except Exception as e:  # a half-installed package fails with other errors than ImportError
            out.append(f"{name} ({type(e).__name__}: {e})")
    return out


def qwen_config(tiny: bool):
    from transformers import Qwen2_5_VLConfig

    if tiny:
        from think2seg.testing.tiny_models import tiny_qwen25_vl_config

        return tiny_qwen25_vl_config()
    return Qwen2_5_VLConfig(text_config=QWEN25_VL_3B["text"], vision_config=QWEN25_VL_3B["vision"],
                            tie_word_embeddings=True, **IDS)


def find_processor(arg: str | None) -> Path:
    for cand in [arg, ROOT / ".cache/bench/processor", ROOT / ".cache/tiny-models/reasoner"]:
        if cand and (Path(cand) / "tokenizer.json").exists():
            return Path(cand)
    sys.exit("No Qwen processor found: pass --processor DIR (made here with --export-processor DIR).")


def build_policy_folder(tiny: bool, processor_dir: Path, work: Path, device: str) -> Path:
    """Random weights of the shape, saved (bf16 on CUDA) with the processor: a folder like a checkpoint."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    folder = work / ("policy-tiny" if tiny else "policy-3b")
    if (folder / "config.json").exists():
        return folder
    t0 = time.perf_counter()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(qwen_config(tiny))
    finally:
        torch.set_default_dtype(old)
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.pad_token_id = 151643
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    AutoProcessor.from_pretrained(processor_dir).save_pretrained(folder)
    log(f"random policy: {n / 1e9:.2f} B parameters, built and saved in {time.perf_counter() - t0:.0f} s -> {folder}")
    del model
    gc.collect()
    return folder


def build_data(work: Path, n: int = 8) -> Path:
    """A small EarthReason-layout split of 840 px scenes with a rectangle as the target."""
    import numpy as np
    from PIL import Image

    root = work / "data"
    base = root / "train"
    if (base / "QAs").exists() and len(list((base / "QAs").iterdir())) >= n:
        return root
    rng = np.random.default_rng(0)
    for d in ("images", "labels", "QAs"):
        (base / d).mkdir(parents=True, exist_ok=True)
    for k in range(n):
        img = rng.integers(0, 255, (840, 840, 3), dtype=np.uint8)
        m = np.zeros((840, 840), dtype=np.uint8)
        m[100 + 20 * k: 400 + 20 * k, 200: 500] = 255
        img[m > 0] = (40, 90, 160)
        Image.fromarray(img).save(base / "images" / f"s{k}.png")
        Image.fromarray(m).save(base / "labels" / f"s{k}.png")
        (base / "QAs" / f"s{k}.json").write_text(json.dumps(
            {"questions": [f"Which area would flood first after heavy rain near block {k}?"], "answer": []}))
    return root


def sam_checkpoint(tiny: bool, work: Path) -> Path:
    from think2seg.testing.tiny_models import build_sam

    size = "tiny" if tiny else "small"
    path = work / f"sam2.1_hiera_{'t' if tiny else 's'}.pt"
    return path if path.exists() else build_sam(work, size)


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_memory():
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


# -- TRL engine ---------------------------------------------------------------------------------------------
def run_trl(mode: str, args, policy: Path, data: Path, sam: Path, work: Path) -> dict:
    from think2seg.training.grpo import TrainSettings, build_trainer
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.t0 = [], None

        def on_step_begin(self, *a, **k):
            sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            sync()
            self.times.append(time.perf_counter() - self.t0)
            log(f"  {mode} step {len(self.times)}: {self.times[-1]:.2f} s, peak {peak_gb() or 0:.1f} GiB")

    settings = TrainSettings(
        data=str(data), model=str(policy), output=str(work / f"out-{mode}"), sam=str(sam),
        sam_device=args.device, num_generations=args.generations, per_device_batch_size=args.generations,
        gradient_accumulation_steps=1, max_completion_length=args.completion_tokens, max_steps=args.steps,
        lora=mode == "lora", save_steps=0, gradient_checkpointing=not args.no_gradient_checkpointing,
        attn_implementation=args.attn, logging_steps=1,
    )
    t0 = time.perf_counter()
    trainer, curves = build_trainer(settings, log=log)
    timer = StepTimer()
    trainer.add_callback(timer)
    load_s = time.perf_counter() - t0
    trainer.train()
    last = curves.rows[-1] if curves.rows else {}
    out = {"steps_s": timer.times, "load_s": load_s, "last_log": last}
    del trainer
    return out


# -- plain engine -------------------------------------------------------------------------------------------
def completion_logps(model, batch: dict, comp, temperature: float, autocast):
    """Log-probabilities of the sampled completion tokens (the logits of the last len+1 positions only)."""
    import torch

    with autocast():
        logits = model(**batch).logits
    lp = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)
    return lp.gather(-1, comp[..., None]).squeeze(-1)


def run_plain(mode: str, args, policy: Path, data: Path, sam: Path, work: Path) -> dict:
    import torch
    from PIL import Image
    from think2seg.prompt_template import build_conversation
    from think2seg.segmenter import Segmenter
    from think2seg.testing.tiny_models import KNOWN_COMPLETION
    from think2seg.training.grpo import TrainSettings, load_train_rows, weight_dtype
    from think2seg.training.rewards import MaskReward, json_validity_reward, think_answer_shape_reward
    from transformers import AutoModelForImageTextToText, AutoProcessor

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    settings = TrainSettings(data=str(data), model=str(policy), output="", lora=mode == "lora")
    dtype, amp = weight_dtype(settings, cuda)
    beta, eps, temperature, lr = 0.001, 0.2, 1.0, 1e-6
    t0 = time.perf_counter()
    kw = {"attn_implementation": args.attn} if args.attn else {}
    model = AutoModelForImageTextToText.from_pretrained(policy, dtype=dtype, **kw).to(dev)
    processor = AutoProcessor.from_pretrained(policy)
    processor.tokenizer.padding_side = "left"
    ref = None
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=64, lora_alpha=128, lora_dropout=0.05, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    elif beta:
        ref = AutoModelForImageTextToText.from_pretrained(
            policy, dtype=torch.bfloat16 if cuda else dtype, **kw).to(dev).eval().requires_grad_(False)
    if not args.no_gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if mode == "lora":
            model.enable_input_require_grads()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    seg = Segmenter.from_pretrained(str(sam), device=args.device)
    rewards_fn = MaskReward(seg)
    rows = load_train_rows(str(data), "train", 42, log=log)
    load_s = time.perf_counter() - t0
    tok = processor.tokenizer
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id]
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else (lambda: torch.autocast("cpu", enabled=False))
    times, parts = [], []
    G, T = args.generations, args.completion_tokens
    for step in range(args.steps):
        row = rows[step % len(rows)]
        image = Image.open(row["image_path"]).convert("RGB").resize((840, 840), Image.LANCZOS)
        text = processor.apply_chat_template(build_conversation(row["question"]), add_generation_prompt=True,
                                             tokenize=False)
        enc = processor(text=[text] * G, images=[image] * G, return_tensors="pt", padding=True)
        enc = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in enc.items()}
        sync()
        ts = time.perf_counter()
        # 1. sample G completions (KV cache on, checkpointing off)
        model.eval()
        with torch.no_grad(), autocast():
            out = model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, max_new_tokens=T,
                                 min_new_tokens=T, use_cache=True, eos_token_id=eos,  # as random weights do
                                 pad_token_id=tok.pad_token_id)
        model.train()
        sync()
        tg = time.perf_counter()
        L = enc["input_ids"].shape[1]
        comp = out[:, L:]
        is_eos = torch.isin(comp, torch.tensor(eos, device=dev))
        first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full((G,), comp.shape[1], device=dev))
        cmask = (torch.arange(comp.shape[1], device=dev)[None] <= first[:, None]).float()
        texts = tok.batch_decode(comp, skip_special_tokens=True)
        # 2. rewards and group-relative advantages
        r = torch.tensor(rewards_fn(texts, image=[image] * G, mask_path=[row["mask_path"]] * G,
                                    image_id=[row["image_id"]] * G), dtype=torch.float32)
        r += torch.tensor(json_validity_reward(texts)) + torch.tensor(think_answer_shape_reward(texts))
        adv = ((r - r.mean()) / (r.std() + 1e-4)).to(dev)
        sync()
        tr = time.perf_counter()
        # 3. log-probs of the sampled tokens under the policy (with grad) and the reference
        attn = torch.cat([enc["attention_mask"], torch.ones_like(comp)], dim=1)
        fwd = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
        if "mm_token_type_ids" in fwd:
            fwd["mm_token_type_ids"] = torch.cat([fwd["mm_token_type_ids"], torch.zeros_like(comp)], dim=1)

        batch = {"input_ids": out, "attention_mask": attn, "logits_to_keep": comp.shape[1] + 1, "use_cache": False,
                 **fwd}
        logp = completion_logps(model, batch, comp, temperature, autocast)
        with torch.no_grad():
            if ref is not None:
                ref_logp = completion_logps(ref, batch, comp, temperature, autocast)
            elif mode == "lora":
                with model.disable_adapter():
                    ref_logp = completion_logps(model, batch, comp, temperature, autocast)
            else:
                ref_logp = logp.detach()
        ratio = torch.exp(logp - logp.detach())
        clipped = torch.clamp(ratio, 1 - eps, 1 + eps)
        per_token = -torch.min(ratio * adv[:, None], clipped * adv[:, None])
        d = ref_logp - logp
        per_token = per_token + beta * (torch.exp(d) - d - 1)
        loss = ((per_token * cmask).sum(1) / cmask.sum(1).clamp(min=1)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        te = time.perf_counter()
        times.append(te - ts)
        # Random weights never write a usable answer, so the step above never ran SAM2: time what it costs for
        # G valid answers on this image (one embedding, G decodes), outside the step.
        rewards_fn([KNOWN_COMPLETION] * G, image=[image] * G, mask_path=[row["mask_path"]] * G,
                   image_id=[f"{row['image_id']}-{step}"] * G)
        sync()
        sam_s = time.perf_counter() - te
        parts.append({"generate_s": tg - ts, "reward_s": tr - tg, "update_s": te - tr, "sam_if_valid_s": sam_s,
                      "new_tokens": int(cmask.sum().item()), "reward_mean": float(r.mean())})
        log(f"  {mode} step {step + 1}: {te - ts:.2f} s (generate {tg - ts:.2f}, rewards {tr - tg:.2f}, "
            f"update {te - tr:.2f}; SAM2 for {G} valid answers {sam_s:.2f}), peak {peak_gb() or 0:.1f} GiB, "
            f"loss {loss.item():.4f}")
    del model, ref, opt, seg
    return {"steps_s": times, "load_s": load_s, "parts": parts, "prompt_tokens": int(L)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU: checks the script, measures nothing")
    ap.add_argument("--engine", choices=("auto", "trl", "plain"), default="auto")
    ap.add_argument("--modes", default="full,lora", help="comma list of full, lora (default both)")
    ap.add_argument("--steps", type=int, default=None, help="steps per mode (default 3; tiny 2)")
    ap.add_argument("--generations", type=int, default=None, help="completions per step (default 8; tiny 2)")
    ap.add_argument("--completion-tokens", type=int, default=None, help="tokens per completion (default 256; tiny 24)")
    ap.add_argument("--no-gradient-checkpointing", action="store_true")
    ap.add_argument("--attn", default=None, help="attention implementation (default: transformers' choice, sdpa)")
    ap.add_argument("--device", default=None, help="default cuda when present, else cpu")
    ap.add_argument("--processor", default=None, help="folder with the Qwen tokenizer/processor files")
    ap.add_argument("--work", default=None, help="work folder (default a temporary one)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--export-processor", default=None, metavar="DIR",
                    help="only write the processor files (from the tiny reasoner) to DIR, to carry to the GPU")
    args = ap.parse_args(argv)

    if args.export_processor:
        from transformers import AutoProcessor

        AutoProcessor.from_pretrained(find_processor(None)).save_pretrained(args.export_processor)
        print(f"processor files written to {args.export_processor}")
        return 0

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"full", "lora"}:
        sys.exit("--modes takes full and/or lora")
    engine = args.engine
    if engine == "auto":
        engine = "trl" if not missing_modules("trl", "lora" in modes) else "plain"
    missing = missing_modules(engine, "lora" in modes)
    if missing:
        sys.exit("missing on this machine: " + "; ".join(missing)
                 + ". Carry them (see this script's docstring), or use --engine plain.")
    import torch
    import transformers

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    steps = args.steps or (2 if args.tiny else 3)
    args.steps = steps
    args.generations = args.generations or (2 if args.tiny else 8)
    args.completion_tokens = args.completion_tokens or (24 if args.tiny else 256)
    work = Path(args.work or tempfile.mkdtemp(prefix="t2s-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    log(f"device {gpu}; torch {torch.__version__}, transformers {transformers.__version__}; engine {engine}; "
        f"{'tiny' if args.tiny else 'Qwen2.5-VL-3B'} shapes; {args.generations} x {args.completion_tokens} tokens, "
        f"{steps} steps per mode")
    processor_dir = find_processor(args.processor)
    policy = build_policy_folder(args.tiny, processor_dir, work, args.device)
    data = build_data(work)
    sam = sam_checkpoint(args.tiny, work)
    results = {"device": gpu, "engine": engine, "tiny": args.tiny, "torch": torch.__version__,
               "transformers": transformers.__version__, "generations": args.generations,
               "completion_tokens": args.completion_tokens, "gradient_checkpointing": not args.no_gradient_checkpointing,
               "modes": {}}
    for mode in modes:
        reset_memory()
        log(f"mode {mode} ...")
        try:
            r = (run_trl if engine == "trl" else run_plain)(mode, args, policy, data, sam, work)
        except torch.cuda.OutOfMemoryError as e:
            r = {"error": f"out of memory: {str(e).splitlines()[0]}"}
        times = r.get("steps_s", [])
        measured = times[1:] if len(times) > 1 else times
        r["median_step_s"] = statistics.median(measured) if measured else None
        r["peak_gib"] = peak_gb()
        if r["median_step_s"]:
            r["completion_tokens_per_s"] = args.generations * args.completion_tokens / r["median_step_s"]
        results["modes"][mode] = r
        reset_memory()
    print("\nmode   median s/step   peak GiB   completions x tokens   note")
    for mode, r in results["modes"].items():
        med = r.get("median_step_s")
        peak = r.get("peak_gib")
        print(f"{mode:6s} {med if med is None else f'{med:13.2f}':>13}   {'n/a' if peak is None else f'{peak:8.1f}':>8}   "
              f"{args.generations:>4} x {args.completion_tokens:<6}         {r.get('error', '')}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    ok = all("error" not in r and r.get("steps_s") for r in results["modes"].values())
    return 0 if ok and not any(math.isnan(t) for r in results["modes"].values() for t in r.get("steps_s", [])) else 1


if __name__ == "__main__":
    sys.exit(main())
