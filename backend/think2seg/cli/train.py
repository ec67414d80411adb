"""`think2seg train --data DIR --model BASE -o OUT`: mask-only GRPO of the reasoner (TRL), as the paper trains it."""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_BASE = "Qwen/Qwen2.5-VL-3B-Instruct"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a reasoner with mask-only GRPO on an EarthReason-layout dataset",
        description="GRPO from the final mask alone: reward = 2 x IoU(SAM2 mask, label) + JSON validity + "
        "think/answer shape. Defaults mirror the paper's 3B run. OUT loads in `think2seg segment "
        "--model OUT`; OUT/training holds the reward curves (rewards.csv, rewards.png).",
    )
    p.add_argument("--data", required=True, help="dataset root: DATA/{split}/images, labels, QAs")
    p.add_argument("--split", default="train", help="split folder to train on (default train)")
    p.add_argument(
        "--model",
        default=DEFAULT_BASE,
        help=f"base reasoner, hub id or folder (default {DEFAULT_BASE}; check its licence)",
    )
    p.add_argument("--output", "-o", required=True, help="folder for the trained model")
    g = p.add_argument_group("GRPO (defaults: the paper's 3B run)")
    g.add_argument("--num-generations", type=int, default=16, help="completions per prompt (default 16)")
    g.add_argument(
        "--batch-size", type=int, default=None, help="completions per device step (default = --num-generations)"
    )
    g.add_argument("--grad-accum", type=int, default=2, help="gradient accumulation steps (default 2)")
    g.add_argument(
        "--completions-per-step",
        type=int,
        default=None,
        help="completions per optimizer step; sets --grad-accum to it / --batch-size (the reference's "
        "3B run had 64: 16 per GPU x 2 GPUs x 2 accumulation; one GPU matches it with 64)",
    )
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    g.add_argument(
        "--top-k",
        type=int,
        default=50,
        help="sampling top-k (default 50, the reference's; 0 turns it off as TRL's default does)",
    )
    g.add_argument("--beta", type=float, default=0.001, help="KL coefficient against the base model (default 0.001)")
    g.add_argument("--lr", type=float, default=1e-6, help="learning rate (default 1e-6)")
    g.add_argument(
        "--max-prompt-length",
        type=int,
        default=1024,
        help="checked, never cut: cutting a multimodal prompt cuts image tokens (default 1024)",
    )
    g.add_argument("--max-completion-length", type=int, default=1024, help="tokens per completion (default 1024)")
    g.add_argument("--epochs", type=float, default=5.0, help="passes over the images (default 5)")
    g.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps (default: epochs)")
    g.add_argument(
        "--loss-type", default="grpo", help="TRL loss: grpo (the reference's), dapo, dr_grpo ... (default grpo)"
    )
    g.add_argument(
        "--image-size",
        type=int,
        default=840,
        help="side of the square image the model is shown (default 840, the published weights' frame)",
    )
    g.add_argument(
        "--reference-group-zero",
        action="store_true",
        help="one SAM2 failure in a reward call zeroes the mask reward of every completion of the call, as the "
        "reference does (default: only that completion scores 0; docs/method.md row 8f)",
    )
    g.add_argument("--seed", type=int, default=42, help="seed of the question draw and of training (default 42)")
    g.add_argument("--limit", type=int, default=None, help="train on N images (a seeded subset)")
    m = p.add_argument_group("memory and models")
    m.add_argument("--lora", action="store_true", help="train LoRA adapters (merged into the saved weights)")
    m.add_argument("--lora-r", type=int, default=64, help="LoRA rank (default 64)")
    m.add_argument("--lora-alpha", type=int, default=128, help="LoRA alpha (default 128)")
    m.add_argument("--lora-dropout", type=float, default=0.05, help="LoRA dropout (default 0.05)")
    m.add_argument("--lora-target", default="all-linear", help="LoRA target modules (default all-linear)")
    m.add_argument("--no-gradient-checkpointing", action="store_true", help="faster, more memory")
    m.add_argument("--freeze-vision", action="store_true", help="do not train the vision tower (the paper trains it)")
    m.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), bf16, fp16, fp32")
    m.add_argument("--attn-implementation", default=None, help="e.g. sdpa or flash_attention_2")
    m.add_argument(
        "--sam",
        default=os.environ.get("THINK2SEG_SAM", "small"),
        help="frozen SAM2.1 of the mask reward: size or checkpoint file (default small)",
    )
    m.add_argument("--sam-size", default=None, help="the size of a --sam checkpoint whose name does not tell it")
    m.add_argument("--sam-device", default="auto", help="device of SAM2, e.g. cuda:1 to keep it off the policy's GPU")
    o = p.add_argument_group("output")
    o.add_argument("--save-steps", type=int, default=100, help="checkpoint every N steps in OUT/training (0: never)")
    o.add_argument("--report-to", default="none", help="trainer loggers: none, tensorboard, wandb ...")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import BadInput

    try:
        import peft  # noqa: F401
        import trl  # noqa: F401
    except ImportError as e:
        raise BadInput(
            f"Training needs TRL and PEFT ({e.name} is missing): pip install 'think2seg[train]'.",
            code="missing_dependency",
        ) from e
    from ..evaluation.earthreason import scan_split
    from ..training.grpo import train

    samples, problems = scan_split(args.data, args.split)  # says where to get the data when it is absent
    print(
        f"{len(samples)} usable training images in {args.data}/{args.split}"
        + (f" ({len(problems)} skipped)" if problems else ""),
        file=sys.stderr,
    )
    result = train(settings_from_args(args))
    last = result.last_rewards
    summary = ", ".join(
        f"{k.split('/')[1] if '/' in k else k} {last[k]:.3f}"
        for k in ("reward", "rewards/mask_reward/mean")
        if k in last
    )
    print(
        f"Trained {result.steps} steps ({summary}). Model: {result.output} "
        f"(think2seg segment --model {result.output}); reward curves: {result.curves_csv}"
        + (f", {result.curves_png}" if result.curves_png else "")
    )
    return 0


def settings_from_args(args: argparse.Namespace):
    """The `TrainSettings` the command line describes (what the run records in think2seg_training.json)."""
    from ..training.grpo import TrainSettings

    return TrainSettings(
        data=args.data,
        model=args.model,
        output=args.output,
        split=args.split,
        sam=args.sam,
        sam_size=args.sam_size,
        sam_device=args.sam_device,
        num_generations=args.num_generations,
        per_device_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        temperature=args.temperature,
        beta=args.beta,
        top_k=args.top_k,
        completions_per_step=args.completions_per_step,
        learning_rate=args.lr,
        max_prompt_length=args.max_prompt_length,
        max_completion_length=args.max_completion_length,
        epochs=args.epochs,
        max_steps=args.max_steps,
        loss_type=args.loss_type,
        lora=args.lora,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        lora_target=args.lora_target,
        gradient_checkpointing=not args.no_gradient_checkpointing,
        freeze_vision=args.freeze_vision,
        frame=args.image_size,
        seed=args.seed,
        limit=args.limit,
        save_steps=args.save_steps,
        dtype=args.dtype,
        attn_implementation=args.attn_implementation,
        report_to=args.report_to,
        reference_group_zero=args.reference_group_zero,
    )
