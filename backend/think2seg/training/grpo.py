"""Mask-only GRPO of the reasoner with TRL's `GRPOTrainer`, as the paper trains Think2Seg-RS.

The dataset is an EarthReason-layout split: one question per image, drawn once with a seed (the reference
draws one per image when it loads the data), the image resized to 840 x 840 (LANCZOS) and shown in the
exact conversation the published weights learned (`prompt_template.build_conversation`). The rewards are
`rewards.MaskReward` (frozen SAM2, on its own device if asked), `json_validity_reward` and
`think_answer_shape_reward`. Defaults mirror the reference 3B run (run_grpo_geo_ultra-qwen-3B.sh):
16 completions per prompt, 16 completions per device step, 2 accumulation steps, temperature 1.0, top-k 50
(transformers 4.49's default, which the reference sampled with; TRL's own default is 0), KL beta 0.001,
lr 1e-6, 1,024 completion tokens, 5 epochs, the per-sequence GRPO loss, vision tower trained. The reference
ran on 2 GPUs, so 64 completions per optimizer step; `completions_per_step=64` matches it on one GPU.

The result is one folder that `Reasoner.from_pretrained(folder)` and `think2seg segment --model folder` load:
the weights (LoRA merged into them), the processor, `think2seg_training.json` (what was trained how), and
`training/` with the reward curves (`rewards.csv`, `rewards.png`) and the trainer's checkpoints.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image
from transformers import TrainerCallback

from ..errors import BadInput
from ..prompt_template import MODEL_FRAME, TEMPLATE_ID, build_conversation

REWARD_NAMES = ("mask_reward", "json_validity_reward", "think_answer_shape_reward")


@dataclass
class TrainSettings:
    data: str
    model: str
    output: str
    split: str = "train"
    sam: str = "small"
    sam_size: str | None = None
    sam_device: str = "auto"
    num_generations: int = 16
    per_device_batch_size: int | None = None  # completions per device step; None = num_generations
    gradient_accumulation_steps: int = 2
    #: completions per optimizer step; when set, gradient_accumulation_steps = this / per_device_batch_size
    #: (the reference's 3B run: 64 = 16 per GPU x 2 GPUs x 2 accumulation steps)
    completions_per_step: int | None = None
    temperature: float = 1.0
    top_k: int = 50  # transformers 4.49's default, which the reference sampled with (TRL's default is 0: off)
    beta: float = 0.001
    learning_rate: float = 1e-6
    max_prompt_length: int = 1024
    max_completion_length: int = 1024
    epochs: float = 5.0
    max_steps: int = -1
    loss_type: str = "grpo"  # the reference's loss: per-sequence mean, then mean over the batch
    lora: bool = False
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    lora_target: str = "all-linear"
    gradient_checkpointing: bool = True
    freeze_vision: bool = False
    seed: int = 42
    limit: int | None = None
    logging_steps: int = 1
    save_steps: int = 100
    save_total_limit: int = 3
    frame: int = MODEL_FRAME
    dtype: str = "auto"  # see weight_dtype
    attn_implementation: str | None = None
    report_to: str = "none"
    #: True: one SAM2 failure in a reward call zeroes the mask reward of every completion of that call, as the
    #: reference's single `try` does (docs/method.md row 8f); False (ours): only that completion scores 0
    reference_group_zero: bool = False
    extra: dict = field(default_factory=dict)  # more GRPOConfig fields, passed as they are

    def check(self) -> None:
        if self.num_generations < 2:
            raise BadInput("GRPO needs at least 2 generations per prompt.", code="bad_options")
        bs = self.per_device_batch_size or self.num_generations
        if self.completions_per_step is not None:
            if self.completions_per_step < bs or self.completions_per_step % bs:
                raise BadInput(
                    f"--completions-per-step ({self.completions_per_step}) must be a multiple of the "
                    f"completions per device step ({bs}).",
                    code="bad_options",
                )
            self.gradient_accumulation_steps = self.completions_per_step // bs
        if self.top_k < 0:
            raise BadInput("--top-k must be 0 (off) or more.", code="bad_options")
        if (bs * self.gradient_accumulation_steps) % self.num_generations:
            raise BadInput(
                f"The completions of one optimizer step (batch {bs} x accumulation {self.gradient_accumulation_steps})"
                f" must be a multiple of --num-generations ({self.num_generations}).",
                code="bad_options",
            )
        if self.max_completion_length < 8:
            raise BadInput("--max-completion-length must be at least 8 tokens.", code="bad_options")
        if not 56 <= self.frame <= 4096:
            raise BadInput("--image-size must be between 56 and 4096 pixels.", code="bad_options")
        if self.lora and self.lora_r < 1:
            raise BadInput("--lora-r must be at least 1.", code="bad_options")


# -- data ---------------------------------------------------------------------------------------------------
def load_train_rows(data: str, split: str, seed: int, limit: int | None = None, log=print) -> list[dict]:
    """One row per usable image: its id, image and label paths and the question drawn for it."""
    from ..evaluation.earthreason import scan_split
    from ..evaluation.runner import select_samples

    samples, problems = scan_split(data, split)
    rows = []
    for s in select_samples(samples, limit, seed):
        try:
            with Image.open(s.image_path) as im:
                w, h = im.size
            with Image.open(s.label_path) as lm:
                lw, lh = lm.size
        except Exception as e:  # a broken file would stop training mid-epoch: skip it now
            problems.append(_problem(s.image_id, f"cannot be opened ({type(e).__name__}: {e})"))
            continue
        if (w, h) != (lw, lh):
            problems.append(_problem(s.image_id, f"label is {lw} x {lh} px but the image is {w} x {h} px"))
            continue
        q_index, question = s.question("random", seed)
        rows.append(
            {
                "image_id": s.image_id,
                "image_path": str(s.image_path),
                "mask_path": str(s.label_path),
                "question": question,
                "question_index": q_index,
            }
        )
    for p in problems:
        log(f"skipped {p.image_id}: {p.message}")
    if not rows:
        raise BadInput(f"No usable training sample in {data}/{split}.", code="dataset_empty")
    return rows


def _problem(image_id: str, message: str):
    from ..evaluation.earthreason import SampleProblem

    return SampleProblem(image_id, message)


def build_train_dataset(rows: list[dict], frame: int = MODEL_FRAME):
    """A `datasets.Dataset` whose rows become, when read, {prompt, image (frame x frame), mask_path, image_id}.

    Images are read lazily (EarthReason's 2,371 training images would not fit in memory at 840 px).
    """
    import datasets

    ds = datasets.Dataset.from_list(rows)

    # TRL reads a row once per generation (16 times in a row by default): decode and resize it once.
    @functools.lru_cache(maxsize=64)
    def model_image(path: str) -> Image.Image:
        with Image.open(path) as im:
            return im.convert("RGB").resize((frame, frame), Image.LANCZOS)

    def to_example(batch: dict) -> dict:
        images = [model_image(path) for path in batch["image_path"]]
        return {
            "prompt": [build_conversation(q) for q in batch["question"]],
            "image": images,
            "mask_path": list(batch["mask_path"]),
            "image_id": list(batch["image_id"]),
        }

    ds.set_transform(to_example)
    return ds


# -- reward curves ------------------------------------------------------------------------------------------
class RewardCurves(TrainerCallback):
    """Writes every logged reward figure to training/rewards.csv and plots training/rewards.png at the end."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.rows: list[dict] = []

    @property
    def csv_path(self) -> Path:
        return self.folder / "rewards.csv"

    @property
    def png_path(self) -> Path:
        return self.folder / "rewards.png"

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        keep = {
            k: v
            for k, v in logs.items()
            if (k.startswith("reward") or k in ("kl", "loss", "mask_iou", "completions/mean_length"))
            and isinstance(v, (int, float))
        }
        if not any(k.startswith("reward") for k in keep):
            return
        self.rows.append({"step": state.global_step, "epoch": round(float(state.epoch or 0), 4), **keep})
        self.write_csv()

    def write_csv(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        cols = ["step", "epoch"] + sorted({k for r in self.rows for k in r} - {"step", "epoch"})
        with self.csv_path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(self.rows)

    def on_train_end(self, args, state, control, **kwargs):
        if self.rows:
            self.plot()

    def plot(self) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in self.rows]
        fig, ax = plt.subplots(figsize=(7, 4))
        series = [("reward", "total (max 4)")] + [(f"rewards/{n}/mean", n) for n in REWARD_NAMES]
        for key, label in series:
            ys = [r.get(key) for r in self.rows]
            if any(y is not None for y in ys):
                ax.plot(steps, [float("nan") if y is None else y for y in ys], marker="o", ms=3, label=label)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("mean reward")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(self.png_path, dpi=100)
        plt.close(fig)
        return self.png_path


# -- trainer ------------------------------------------------------------------------------------------------
def weight_dtype(settings: TrainSettings, cuda: bool):
    """(dtype the policy's weights are held in, whether bf16 autocast runs on top).

    auto: on CUDA, full fine-tuning keeps float32 master weights under bf16 autocast, as the reference's
    DeepSpeed bf16 run does: in pure bf16 an update of lr 1e-6 is mostly rounded away. LoRA keeps the frozen
    base in bf16 (PEFT holds the adapters in float32). The CPU trains in float32. An explicit bf16 / fp16 /
    fp32 holds the weights in that type (bf16: half the memory, at that cost in precision).
    """
    import torch

    name = settings.dtype
    if name == "auto":
        if not cuda:
            return torch.float32, False
        return (torch.bfloat16 if settings.lora else torch.float32), True
    try:
        dtype = {
            "bf16": torch.bfloat16,
            "bfloat16": torch.bfloat16,
            "fp16": torch.float16,
            "float16": torch.float16,
            "fp32": torch.float32,
            "float32": torch.float32,
        }[name]
    except KeyError:
        raise BadInput(f"Unknown --dtype '{name}': use auto, bf16, fp16 or fp32.", code="bad_options") from None
    return dtype, cuda and dtype == torch.bfloat16


def load_policy(settings: TrainSettings):
    """The model to train and its processor, from a hub id or a folder."""
    import torch
    from transformers import AutoModelForImageTextToText

    from ..reasoner import load_processor, neutral_generation_config
    from ..weights import resolve_reasoner

    path = resolve_reasoner(settings.model)
    dtype, _ = weight_dtype(settings, torch.cuda.is_available())
    kwargs = {"dtype": dtype}
    if settings.attn_implementation:
        kwargs["attn_implementation"] = settings.attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    # TRL sets the sampling settings it knows; the checkpoint's file must not fill the others (n-gram bans...).
    model.generation_config = neutral_generation_config(model.generation_config)
    processor = load_processor(path)
    processor.tokenizer.padding_side = "left"
    if settings.freeze_vision:
        for name, p in model.named_parameters():
            if "visual" in name:
                p.requires_grad_(False)
    return model, processor


def prompt_tokens(processor, frame: int = MODEL_FRAME) -> int:
    """Tokens of one training prompt (the image's included), for the max_prompt_length check."""
    text = processor.apply_chat_template(build_conversation("x" * 40), add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], images=[Image.new("RGB", (frame, frame))], return_tensors="pt")
    return int(enc["input_ids"].shape[1])


def build_trainer(settings: TrainSettings, model=None, processor=None, segmenter=None, log=print):
    """The configured `GRPOTrainer` (and its reward-curve callback); models are loaded unless passed in."""
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from ..segmenter import Segmenter
    from .rewards import MaskReward, json_validity_reward, think_answer_shape_reward

    settings.check()
    rows = load_train_rows(settings.data, settings.split, settings.seed, settings.limit, log=log)
    dataset = build_train_dataset(rows, settings.frame)
    if model is None:
        model, processor = load_policy(settings)
    if segmenter is None:
        segmenter = Segmenter.from_pretrained(settings.sam, settings.sam_size, device=settings.sam_device)
    n_prompt = prompt_tokens(processor, settings.frame)
    if n_prompt > settings.max_prompt_length:
        log(
            f"note: prompts are {n_prompt} tokens (the 840 px image is most of them), above max_prompt_length "
            f"{settings.max_prompt_length}; a multimodal prompt is never cut (that would cut image tokens), as in "
            "the reference trainer"
        )
    out = Path(settings.output)
    cuda = torch.cuda.is_available()
    _, bf16_amp = weight_dtype(settings, cuda)
    extra = dict(settings.extra)
    if cuda and settings.beta and not settings.lora:
        # The frozen reference only runs forward passes: bf16 is enough and saves half its memory.
        extra.setdefault("model_init_kwargs", {"dtype": "bfloat16"})
    generation = dict(extra.pop("generation_kwargs", None) or {})
    image_token = getattr(model.config, "image_token_id", None)
    if image_token is not None and not extra.get("use_vllm"):  # vLLM's SamplingParams take no suppress_tokens
        # A sampled image token would not match the image's features in the log-prob forward. Recent TRL
        # suppresses it itself; named here so an older TRL does too (docs/method.md, "What cannot match").
        generation.setdefault("suppress_tokens", [image_token])
    config = GRPOConfig(
        output_dir=str(out / "training" / "checkpoints"),
        num_generations=settings.num_generations,
        per_device_train_batch_size=settings.per_device_batch_size or settings.num_generations,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        temperature=settings.temperature,
        top_k=settings.top_k,
        beta=settings.beta,
        learning_rate=settings.learning_rate,
        max_completion_length=settings.max_completion_length,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        loss_type=settings.loss_type,
        gradient_checkpointing=settings.gradient_checkpointing,
        bf16=bf16_amp,
        fp16=cuda and next(model.parameters()).dtype == torch.float16,
        use_cpu=not cuda,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_steps=settings.logging_steps,
        save_strategy="steps" if settings.save_steps > 0 else "no",
        save_steps=max(settings.save_steps, 1),
        save_total_limit=settings.save_total_limit,
        save_only_model=True,
        report_to=settings.report_to,
        dataloader_num_workers=0,
        log_completions=False,
        # TrainingArguments turns the model's KV cache off; TRL generates with the model's config, so without
        # this every sampled token would recompute the whole 1,100-token prompt.
        use_cache=True,
        generation_kwargs=generation,
        **extra,
    )
    peft_config = None
    if settings.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=settings.lora_target,
            task_type="CAUSAL_LM",
        )
    curves = RewardCurves(out / "training")
    mask_reward = MaskReward(segmenter, frame=settings.frame, reference_group_zero=settings.reference_group_zero)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[mask_reward, json_validity_reward, think_answer_shape_reward],
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=[curves],
    )
    return trainer, curves


@dataclass
class TrainResult:
    output: Path
    steps: int
    last_rewards: dict
    curves_csv: Path
    curves_png: Path | None


def save_trained(trainer, processor, out: Path) -> Path:
    """The trained weights (LoRA merged) + processor in `out`, loadable by `Reasoner.from_pretrained`."""
    from peft import PeftModel  # peft ships with the train extra; TRL imports it too

    model = trainer.accelerator.unwrap_model(trainer.model)
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    # Training turns the KV cache off (gradient checkpointing); inference needs it back.
    for cfg in (model.config, model.config.get_text_config()):
        cfg.use_cache = True
    if hasattr(model, "gradient_checkpointing_disable"):
        model.gradient_checkpointing_disable()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def train(settings: TrainSettings, log=None, trainer_hook=None) -> TrainResult:
    """Build, train, save; `trainer_hook(trainer)` runs before training (tests read the initial weights)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    trainer, curves = build_trainer(settings, log=log)
    if trainer_hook is not None:
        trainer_hook(trainer)
    trainer.train()
    out = Path(settings.output)
    save_trained(trainer, trainer.processing_class, out)
    if curves.rows and not curves.png_path.exists():
        curves.plot()
    last = curves.rows[-1] if curves.rows else {}
    provenance = {
        "base_model": settings.model,
        "data": str(Path(settings.data).resolve()),
        "split": settings.split,
        "prompt_template": TEMPLATE_ID,
        "steps": trainer.state.global_step,
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("data", "output")},
        "rewards": [r.__name__ if hasattr(r, "__name__") else str(r) for r in trainer.reward_funcs],
        "last_rewards": last,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out / "think2seg_training.json").write_text(json.dumps(provenance, indent=1, default=str), encoding="utf-8")
    return TrainResult(
        out, trainer.state.global_step, last, curves.csv_path, curves.png_path if curves.png_path.exists() else None
    )
