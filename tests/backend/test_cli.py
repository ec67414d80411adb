"""`think2seg segment` as a user runs it: exit codes, sentences, and the GeoPackage it writes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import tiny_model_args
from think2seg.testing.tiny_models import KNOWN_REASONING


def cli(*args, env=None, timeout=300):
    e = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "think2seg", *args], capture_output=True, text=True, env=e, timeout=timeout
    )


@pytest.fixture(scope="module")
def models(tiny_models_dir):
    return tiny_model_args(tiny_models_dir)


@pytest.mark.slow
def test_segment_writes_three_layers_in_the_raster_crs(tmp_path, naip, models):
    import pyogrio

    out = tmp_path / "wetlands.gpkg"
    p = cli("segment", str(naip), "--query", "the wetlands that hold water all year", "-o", str(out), *models)
    assert p.returncode == 0, p.stderr
    assert "1 instance found" in p.stdout and "wetlands.gpkg" in p.stdout
    assert "reasoning:" not in p.stderr  # the token meter is for terminals, not for logs
    layers = dict(pyogrio.list_layers(out))
    assert layers == {"mask": "MultiPolygon", "prompt_points": "Point", "prompt_boxes": "MultiPolygon"}
    mask = pyogrio.read_info(out, layer="mask")
    assert mask["crs"] == "EPSG:26914" and mask["features"] == 1
    assert KNOWN_REASONING in mask["layer_metadata"]["DESCRIPTION"]
    meta, _, geoms, fields = pyogrio.raw.read(out, layer="prompt_points")
    names = list(meta["fields"])
    for col in ("query", "instance", "reasoner", "segmenter", "created", "point"):
        assert col in names
    assert fields[names.index("query")][0] == "the wetlands that hold water all year"
    assert sorted(fields[names.index("point")].tolist()) == [1, 2]
    _, _, _, mfields = pyogrio.raw.read(out, layer="mask")
    mnames = list(pyogrio.read_info(out, layer="mask")["fields"])
    assert mfields[mnames.index("reasoning")][0] == KNOWN_REASONING
    assert mfields[mnames.index("area_m2")][0] > 0


@pytest.mark.slow
def test_segment_in_a_terminal_shows_the_tokens_as_the_reasoner_writes(tmp_path, naip, models):
    """On a CPU an answer is minutes of silence otherwise: one line, redrawn, ends with the count."""
    import pty

    leader, follower = pty.openpty()
    out = tmp_path / "w.gpkg"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "think2seg", "segment", str(naip), "-q", "the wetlands", "-o", str(out), *models]
    p = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=follower, env=env)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the process closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert p.wait(timeout=300) == 0, seen[-2000:]
    text = seen.decode(errors="replace")
    assert "\rreasoning: 1 token written (at most " in text, text[-2000:]
    assert re.search(r"\rreasoning: \d+ tokens written +\r?\n", text), text[-2000:]


@pytest.mark.slow
def test_geojson_output(tmp_path, landsat, models):
    out = tmp_path / "river.geojson"
    p = cli("segment", str(landsat), "-q", "the river", "-o", str(out), "--bands", "3,2,1", *models)
    assert p.returncode == 0, p.stderr
    assert out.exists() and (tmp_path / "river.points.geojson").exists() and (tmp_path / "river.boxes.geojson").exists()
    assert "32618" in out.read_text()


@pytest.mark.parametrize(
    "args, sentence",
    [
        (["README.md", "-q", "x", "-o", "o.gpkg"], "not a raster GDAL can read"),
        (["missing.tif", "-q", "x", "-o", "o.gpkg"], "does not exist"),
        (["RASTER", "-q", "   ", "-o", "o.gpkg"], "The query is empty"),
        (["RASTER", "-q", "x", "-o", "o.shp"], "must end in .gpkg or .geojson"),
        (["RASTER", "-q", "x", "-o", "o.gpkg", "--bands", "9"], "between 1 and 4"),
        (["RASTER", "-q", "x", "-o", "o.gpkg", "--bands", "red"], "band numbers separated by commas"),
    ],
)
def test_bad_input_exits_2_with_a_sentence(tmp_path, naip, args, sentence):
    args = [str(naip) if a == "RASTER" else a for a in args]
    if args[0] == "README.md":
        (tmp_path / "README.md").write_text("# not a raster")
        args[0] = str(tmp_path / "README.md")
    p = cli("segment", *args)
    assert p.returncode == 2
    assert sentence in p.stderr and "Traceback" not in p.stderr


def test_vector_file_is_not_a_raster(tmp_path):
    import numpy as np
    import shapely
    from pyogrio.raw import write

    gpkg = tmp_path / "fields.gpkg"
    write(
        gpkg,
        np.array([shapely.to_wkb(shapely.Point(0, 0))], dtype=object),
        [],
        [],
        layer="pts",
        driver="GPKG",
        geometry_type="Point",
        crs="EPSG:4326",
    )
    p = cli("segment", str(gpkg), "-q", "x", "-o", str(tmp_path / "o.gpkg"))
    assert p.returncode == 2 and "not a raster GDAL can read" in p.stderr


def test_offline_without_weights_says_what_to_fetch(tmp_path, naip):
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    p = cli("segment", str(naip), "-q", "x", "-o", str(tmp_path / "o.gpkg"), "--device", "cpu", env=env)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "RicardoString/Think2Seg-RS-3B" in p.stderr and "hf download" in p.stderr


def test_sam_checkpoint_size_read_from_file_name():
    from think2seg.weights import sam_size_from_filename

    assert sam_size_from_filename("sam2.1_hiera_t.pt").name == "tiny"
    assert sam_size_from_filename("/x/sam2.1_hiera_small.pt").name == "small"
    assert sam_size_from_filename("sam2.1_hiera_b+.pt").name == "base_plus"
    assert sam_size_from_filename("sam2.1_hiera_base_plus.pt").name == "base_plus"
    assert sam_size_from_filename("sam2.1_hiera_large.pt").name == "large"
    assert sam_size_from_filename("my_weights.pt") is None


def test_unknown_sam_checkpoint_size_asks_for_sam_size(tmp_path, naip):
    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"x")
    p = cli(
        "segment", str(naip), "-q", "x", "-o", str(tmp_path / "o.gpkg"), "--model", str(tmp_path), "--sam", str(ckpt)
    )
    assert p.returncode == 1 and ("--sam-size" in p.stderr or "config.json" in p.stderr)


def test_models_lists_published_reasoners(tmp_path):
    p = cli("models", env={"HF_HOME": str(tmp_path / "hf")})
    assert p.returncode == 0 and "RicardoString/Think2Seg-RS-7B" in p.stdout


def test_bbox_outside_the_raster_is_a_sentence(tmp_path, naip):
    p = cli("segment", str(naip), "-q", "x", "-o", str(tmp_path / "o.gpkg"), "--bbox", "0,0,10,10")
    assert p.returncode == 2 and "does not overlap the raster" in p.stderr


@pytest.mark.slow
def test_bbox_reads_a_window(tmp_path, naip, models):
    import json

    p = cli(
        "segment",
        str(naip),
        "-q",
        "ponds",
        "-o",
        str(tmp_path / "o.gpkg"),
        "--json",
        "--bbox",
        "486000,5206000,487000,5207000",
        *models,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["read"]["window"] == [20, 449, 200, 200]
    # frame (420, 336) -> window px (100, 80) -> raster px (120, 529) -> (485899 + 600, 5209246 - 2645)
    assert d["instances"][0]["points_crs"][0] == [486499.0, 5206601.0]


@pytest.mark.parametrize(
    "args, sentence",
    [
        (["segment", "RASTER", "-q", "x", "-o", "OUT", "--bbox", "nan,nan,nan,nan"], "four finite numbers"),
        (["segment", "RASTER", "-q", "x", "-o", "/proc/o.gpkg"], "Cannot write /proc/o.gpkg"),
        # missing folders are created (a batch into a new folder is normal); a file in the way is a mistake
        (["segment", "RASTER", "-q", "x", "-o", "RASTER_AS_FOLDER"], "is not a folder"),
        (["batch", "RASTER", "-q", "x", "-o", "/proc/o.gpkg"], "Cannot write /proc/o.gpkg"),
        (["serve", "--token-file", "TMP"], "is a folder"),
        (["serve", "--token-file", "/proc/think2seg/token"], "Cannot use the token file"),
        (["serve", "--host", "0.0.0.0"], "--allow-remote"),
        (["serve", "--max-queue", "0"], "--max-queue must be at least 1"),
        (["serve", "--max-views", "0"], "--max-views must be at least 1"),
        (["serve", "--max-view-mb", "-5"], "--max-view-mb must be at least 1"),
        (["serve", "--view-store-mb", "-1"], "--view-store-mb must be 0 or more"),
        (["serve", "--header-timeout", "0"], "--header-timeout must be a positive number"),
        # probe finding 14: torch's traceback for a GPU this machine lacks; an empty folder exited 0
        (["segment", "RASTER", "-q", "x", "-o", "OUT", "--device", "cuda:7"], "--device cuda:7"),
        (["batch", "RASTER", "-q", "x", "-o", "OUT", "--device", "cuda:7"], "--device cuda:7"),
        (["segment", "RASTER", "-q", "x", "-o", "OUT", "--device", "gpu"], "is not a device"),
        (["batch", "EMPTY", "-q", "x", "-o", "OUT"], "No rasters in"),
    ],
)
def test_user_mistakes_exit_2_with_a_sentence_before_models_load(tmp_path, naip, args, sentence, capsys):
    from think2seg.cli import main

    subs = {
        "RASTER": str(naip),
        "OUT": str(tmp_path / "o.gpkg"),
        "TMP": str(tmp_path),
        "RASTER_AS_FOLDER": str(naip / "sub" / "o.gpkg"),
        "EMPTY": str(tmp_path / "empty"),
    }
    (tmp_path / "empty").mkdir()
    # in-process (fast): main() is what the console script runs; a traceback would escape as an exception here
    code = main([*[subs.get(a, a) for a in args], "--model", str(tmp_path / "never-loaded")])
    err = capsys.readouterr().err
    assert code == 2 and sentence in err, err
    assert "loading" not in err  # refused before the models load
    assert not (tmp_path / "o.gpkg.state").exists() and not (tmp_path / "o.gpkg").exists()


def test_serve_on_a_busy_port_is_a_sentence_and_exit_2(tmp_path):
    """Probe finding 14: uvicorn's raw line and exit 3, outside the exit codes the README promises."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = cli(
            "serve",
            "--port",
            str(port),
            "--token-file",
            str(tmp_path / "token"),
            "--model",
            str(tmp_path / "never-loaded"),
            timeout=120,
        )
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert f"Port {port} on 127.0.0.1 is in use" in p.stderr and "--port" in p.stderr and "Traceback" not in p.stderr


def test_the_cli_makes_openmp_threads_wait_asleep_before_torch_loads(tmp_path):
    """Set before torch loads (else it is too late): spinning OpenMP waits made a busy CPU 5-10x slower."""
    code = (
        "import os, sys\nfrom think2seg.cli import main\nassert 'torch' not in sys.modules\n"
        "main(['models'])\nprint(os.environ['OMP_WAIT_POLICY'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["HF_HOME"] = str(tmp_path / "hf")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "PASSIVE"


@pytest.mark.parametrize("command", ["segment", "batch"])
@pytest.mark.parametrize(
    "sam, sentence",
    [
        ("SAM_MISSING", "does not exist"),
        ("medium", "Unknown SAM2 size 'medium'"),
        ("SAM_UNNAMED", "Cannot tell the SAM2 size"),
    ],
)
def test_a_wrong_sam_is_told_before_the_reasoner_loads(tmp_path, naip, command, sam, sentence, capsys):
    """`serve` is the exception: it listens first and reports a failed load through /v1/health."""
    from think2seg.cli import main

    (tmp_path / "weights.pt").write_bytes(b"")
    subs = {"SAM_MISSING": str(tmp_path / "sam2.1_hiera_tiny.pt"), "SAM_UNNAMED": str(tmp_path / "weights.pt")}
    code = main(
        [
            command,
            str(naip),
            "-q",
            "x",
            "-o",
            str(tmp_path / "o.gpkg"),
            "--sam",
            subs.get(sam, sam),
            "--model",
            str(tmp_path / "never-loaded"),
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and sentence in err and "Traceback" not in err, err
    assert "loading" not in err
