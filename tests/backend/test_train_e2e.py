"""`think2seg train`: two GRPO steps on the CPU with the tiny models; the result loads in `think2seg segment`.

The tiny reasoner answers its known completion most of the time when sampled at temperature 1 and
wanders off otherwise, so a group of 4 completions mixes well-formed answers (format rewards 2, plus the
mask reward) and wandering ones (0): the advantages are not all zero and the weights must move.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from earthreason_fixture import make_mini_earthreason
from safetensors.torch import load_file
from think2seg.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mini_train(tiny_models_dir, tmp_path_factory):
    return make_mini_earthreason(
        tmp_path_factory.mktemp("train_data"), tiny_models_dir / "sam2.1_hiera_t.pt", split="train", n_rect=1
    )


def train_args(mini_train, tiny_models_dir, out, steps):
    return [
        "train",
        "--data",
        str(mini_train["root"]),
        "--model",
        str(tiny_models_dir / "reasoner"),
        "-o",
        str(out),
        "--sam",
        str(tiny_models_dir / "sam2.1_hiera_t.pt"),
        "--sam-device",
        "cpu",
        "--num-generations",
        "4",
        "--batch-size",
        "4",
        "--grad-accum",
        "1",
        "--max-completion-length",
        "96",
        "--max-steps",
        str(steps),
        "--lr",
        "1e-4",
        "--save-steps",
        "0",
        # a 336 px view (144 image tokens instead of 900) keeps a CPU step short; 840 is the default
        "--image-size",
        "336",
    ]


def changed_tensors(base_dir, out_dir) -> list[str]:
    base = load_file(base_dir / "model.safetensors")
    new = load_file(out_dir / "model.safetensors")
    assert set(base) == set(new)  # same names: the folder is a plain model folder, no adapter
    return [k for k in base if not torch.equal(base[k], new[k])]


def test_two_grpo_steps_then_segment_with_the_result(mini_train, tiny_models_dir, tmp_path, naip, capsys):
    out = tmp_path / "trained"
    assert main(train_args(mini_train, tiny_models_dir, out, 2)) == 0
    assert "Trained 2 steps" in capsys.readouterr().out
    assert changed_tensors(tiny_models_dir / "reasoner", out), "GRPO left every weight as it was"

    # reward curves: one row per step, each reward's mean, and the plot
    rows = list(csv.DictReader((out / "training" / "rewards.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2]
    for r in rows:
        for key in (
            "reward",
            "rewards/mask_reward/mean",
            "rewards/json_validity_reward/mean",
            "rewards/think_answer_shape_reward/mean",
        ):
            assert 0.0 <= float(r[key]) <= 4.0
    assert (out / "training" / "rewards.png").stat().st_size > 1000
    prov = json.loads((out / "think2seg_training.json").read_text())
    assert prov["steps"] == 2 and prov["prompt_template"] == "think2seg-rs/v1"
    assert prov["settings"]["beta"] == 0.001 and prov["settings"]["num_generations"] == 4
    assert prov["settings"]["top_k"] == 50  # the reference sampled with top-k 50 (TRL's default is 0)
    assert prov["settings"]["reference_group_zero"] is False  # ours: one SAM2 failure zeroes that completion only
    assert json.loads((out / "config.json").read_text()).get("use_cache") is True

    # the folder loads where the published weights load
    gpkg = tmp_path / "ponds.gpkg"
    assert (
        main(
            [
                "segment",
                str(naip),
                "-q",
                "the ponds",
                "-o",
                str(gpkg),
                "--model",
                str(out),
                "--sam",
                str(tiny_models_dir / "sam2.1_hiera_t.pt"),
                "--device",
                "cpu",
                "--max-reasoning-tokens",
                "100",
            ]
        )
        == 0
    )  # the updated model may ramble: keep the CPU run short
    assert gpkg.exists()


def test_lora_is_merged_into_a_plain_folder(mini_train, tiny_models_dir, tmp_path):
    from think2seg.reasoner import Reasoner

    out = tmp_path / "lora"
    assert (
        main(
            train_args(mini_train, tiny_models_dir, out, 1)
            + ["--lora", "--lora-r", "8", "--lora-alpha", "16", "--no-gradient-checkpointing"]
            + ["--reference-group-zero"]
        )
        == 0
    )
    # the run records the reference's group rule it trained with
    assert json.loads((out / "think2seg_training.json").read_text())["settings"]["reference_group_zero"] is True
    assert not (out / "adapter_config.json").exists()
    assert changed_tensors(tiny_models_dir / "reasoner", out)
    r = Reasoner.from_pretrained(str(out), device="cpu")
    assert r.model.config.model_type == "qwen2_5_vl"


def test_reference_group_zero_reaches_the_mask_reward_from_the_command_line(mini_train, tiny_models_dir, tmp_path):
    """`--reference-group-zero` (docs/method.md row 8f) goes from the parser through the settings into the
    trainer's mask reward; without it the reward keeps ours (one failure zeroes that completion only)."""
    from think2seg.cli import build_parser
    from think2seg.cli.train import settings_from_args
    from think2seg.training.grpo import build_trainer
    from think2seg.training.rewards import MaskReward

    base = train_args(mini_train, tiny_models_dir, tmp_path / "o", 1)
    for extra, expected in (([], False), (["--reference-group-zero"], True)):
        settings = settings_from_args(build_parser().parse_args(base + extra))
        assert settings.reference_group_zero is expected
        trainer, _ = build_trainer(settings, log=lambda _msg: None)
        (reward,) = [f for f in trainer.reward_funcs if isinstance(f, MaskReward)]
        assert reward.reference_group_zero is expected
    # docs/method.md, "What cannot match exactly": TRL suppresses the image token in sampling (the reference's
    # trainer does not), and its completion mask ends at the first of both end tokens (the reference's at the
    # first <|im_end|> only)
    tok = trainer.processing_class.tokenizer
    im_end, end_of_text = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert trainer.generation_config.suppress_tokens == [trainer.model.config.image_token_id]
    assert tok.convert_ids_to_tokens(trainer.model.config.image_token_id) == "<|image_pad|>"
    assert set(trainer.eos_token_ids) == {im_end, end_of_text} and tok.pad_token_id == end_of_text


def test_bad_settings_stop_before_loading(tmp_path, capsys, mini_train):
    assert main(["train", "--data", str(tmp_path / "none"), "-o", str(tmp_path / "o")]) == 2
    assert "earth-insights/EarthReason" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--data",
                str(mini_train["root"]),
                "-o",
                str(tmp_path / "o"),
                "--num-generations",
                "3",
                "--batch-size",
                "4",
                "--grad-accum",
                "1",
                "--model",
                "unused",
            ]
        )
        == 2
    )
    assert "multiple of --num-generations" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--data",
                str(mini_train["root"]),
                "-o",
                str(tmp_path / "o"),
                "--num-generations",
                "4",
                "--batch-size",
                "4",
                "--completions-per-step",
                "6",
                "--model",
                "unused",
            ]
        )
        == 2
    )
    assert "--completions-per-step (6)" in capsys.readouterr().err
