"""`think2seg dataset build|check`: a user's images, masks and questions -> the EarthReason layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_raster
from PIL import Image
from think2seg.cli import main
from think2seg.errors import BadInput
from think2seg.evaluation.dataset_builder import build_dataset, read_questions
from think2seg.evaluation.earthreason import load_sample, scan_split


def make_inputs(root, n=5):
    images, masks = root / "imgs", root / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for k in range(n):
        h, w = 60 + 10 * k, 80
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / f"tile_{k}.png")
        m = np.zeros((h, w), dtype=np.uint8)
        if k:  # tile_0 has no target
            m[10:30, 20:50] = 1
        Image.fromarray(m).save(masks / f"tile_{k}.png")
    questions = {
        f"tile_{k}.png": {"questions": [f"where is the pond {k}?", "what holds water?"], "category": "water"}
        for k in range(n)
    }
    qfile = root / "questions.json"
    qfile.write_text(json.dumps(questions))
    return images, masks, qfile


def test_build_writes_the_layout_eval_reads(tmp_path):
    images, masks, qfile = make_inputs(tmp_path)
    s = build_dataset(images, masks, qfile, tmp_path / "out", split="train", val_fraction=0.4, seed=1)
    assert s.splits == {"train": 3, "val": 2} and s.empty_targets == 1 and s.questions == 10
    assert "Wrote 5 samples" in s.sentence()
    for split, n in s.splits.items():
        samples, problems = scan_split(tmp_path / "out", split)
        assert len(samples) == n and not problems
        for smp in samples:
            rgb, mask = load_sample(smp)
            assert rgb.shape[:2] == mask.shape
            assert smp.category == "water" and len(smp.questions) == 2
            label = np.asarray(Image.open(smp.label_path))
            assert set(np.unique(label)) <= {0, 255}
    qa = json.loads(next((tmp_path / "out" / "train" / "QAs").glob("*.json")).read_text())
    assert set(qa) == {"questions", "answer", "category"}


def test_csv_and_json_lines_questions(tmp_path):
    (tmp_path / "q.csv").write_text("image,question,category\na.png,first?,roads\na.png,second?,roads\nb,third?,\n")
    t = read_questions(tmp_path / "q.csv")
    assert t["a"] == {"questions": ["first?", "second?"], "category": "roads"} and t["b"]["questions"] == ["third?"]
    (tmp_path / "q.jsonl").write_text('{"image": "a.tif", "question": "x?"}\n\n{"image": "a", "questions": ["y?"]}\n')
    assert read_questions(tmp_path / "q.jsonl")["a"]["questions"] == ["x?", "y?"]
    (tmp_path / "bad.csv").write_text("file,text\na,b\n")
    with pytest.raises(BadInput, match="columns image and question"):
        read_questions(tmp_path / "bad.csv")


def test_every_problem_is_listed_together(tmp_path):
    images, masks, qfile = make_inputs(tmp_path)
    (masks / "tile_1.png").unlink()  # an image without a mask
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(masks / "stray.png")  # a mask without an image
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "tile_2.png")  # wrong size
    m = np.zeros((90, 80), np.uint8)
    m[0, 0], m[1, 1] = 3, 7
    Image.fromarray(m).save(masks / "tile_3.png")  # three values: not a binary mask
    q = json.loads(qfile.read_text())
    del q["tile_4.png"]
    q["ghost.png"] = ["where?"]
    q["tile_0.png"] = {"questions": ["  "]}
    qfile.write_text(json.dumps(q))
    with pytest.raises(BadInput) as e:
        build_dataset(images, masks, qfile, tmp_path / "out")
    msg = e.value.message
    assert e.value.code == "bad_dataset"
    for needle in (
        "'tile_0.png' has an empty or non-text question",
        "image tile_0.png has no non-empty question",
        "image tile_1.png has no mask",
        "mask stray.png has no image",
        "tile_2.png is 10 x 10 px",
        "tile_3.png is not binary",
        "tile_4.png has no question",
        "no such image",
        "ghost",
    ):
        assert needle in msg, needle
    assert not (tmp_path / "out").exists()  # nothing written when anything is wrong


def test_existing_output_needs_overwrite(tmp_path):
    images, masks, qfile = make_inputs(tmp_path, n=2)
    build_dataset(images, masks, qfile, tmp_path / "out")
    with pytest.raises(BadInput, match="--overwrite") as e:
        build_dataset(images, masks, qfile, tmp_path / "out")
    assert e.value.code == "output_exists"
    assert build_dataset(images, masks, qfile, tmp_path / "out", overwrite=True).splits == {"train": 2}


def test_geotiff_with_four_bands_becomes_png(tmp_path):
    images, masks, qfile = make_inputs(tmp_path, n=1)
    (images / "tile_0.png").unlink()
    data = np.random.default_rng(1).integers(1, 4000, (4, 60, 80)).astype(np.uint16)
    write_raster(images / "tile_0.tif", data)
    s = build_dataset(images, masks, qfile, tmp_path / "out")
    assert s.splits == {"train": 1}
    img = Image.open(tmp_path / "out" / "train" / "images" / "tile_0.png")
    assert img.mode == "RGB" and img.size == (80, 60)


def test_cli_build_and_check(tmp_path, capsys):
    images, masks, qfile = make_inputs(tmp_path, n=3)
    out = tmp_path / "ds"
    assert (
        main(
            [
                "dataset",
                "build",
                "--images",
                str(images),
                "--masks",
                str(masks),
                "--questions",
                str(qfile),
                "-o",
                str(out),
                "--split",
                "val",
            ]
        )
        == 0
    )
    assert "Wrote 3 samples" in capsys.readouterr().out
    assert main(["dataset", "check", str(out), "--split", "val"]) == 0
    assert "3 usable samples (1 without a target), 0 with problems" in capsys.readouterr().out
    (out / "val" / "QAs" / "tile_1.json").write_text("not json")
    assert main(["dataset", "check", str(out), "--split", "val"]) == 1
    assert (
        main(
            [
                "dataset",
                "build",
                "--images",
                str(images),
                "--masks",
                str(tmp_path / "nope"),
                "--questions",
                str(qfile),
                "-o",
                str(out),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
