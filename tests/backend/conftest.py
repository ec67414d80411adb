"""Shared fixtures: the tiny real-class models (built by `make tiny-models`) and synthetic rasters."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# OpenMP threads (torch, BLAS) that wait for work asleep, not spinning: in this process and in every service or
# CLI it starts (they inherit the environment); set before numpy and torch load. On a 2-core machine that is
# also running something else (a service beside the test, another job), spinning threads wait on each other
# for whole time slices: one tiny-reasoner answer (79 tokens) took 4.2-10.2 s with 2 spinning threads, 0.56-0.83 s
# with 2 passive ones and 0.56-0.80 s with 1 thread, at load 4-5 (2026-11-27); SAM2's encoder, which does use
# both cores, kept its speed (5.4-6.2 s passive, 5.3-6.5 s on 1 thread). Nothing a test asserts depends on it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "resources"
TINY = Path(os.environ.get("THINK2SEG_TINY_MODELS", ROOT / ".cache" / "tiny-models"))

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    if not (TINY / "reasoner" / "config.json").exists():
        from think2seg.testing.tiny_models import main

        assert main([str(TINY)]) == 0
    return TINY


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_models_dir):
    from think2seg.pipeline import Pipeline

    return Pipeline.from_pretrained(
        str(tiny_models_dir / "reasoner"), str(tiny_models_dir / "sam2.1_hiera_t.pt"), device="cpu"
    )


def tiny_model_args(models: Path) -> list[str]:
    """The command-line options that load the tiny models on the CPU (`serve`, `segment`, `batch`, `eval`)."""
    return ["--model", str(models / "reasoner"), "--sam", str(models / "sam2.1_hiera_t.pt"), "--device", "cpu"]


@contextmanager
def tiny_service(models: Path, folder: Path, *args: str) -> Iterator:
    """`think2seg serve` on the tiny models (CPU) with `args` added, as a user starts it; stopped at the end."""
    from think2seg.testing.live_service import live_service

    with live_service([*tiny_model_args(models), *args], folder, env={"HF_HUB_OFFLINE": "1"}, timeout=120) as svc:
        yield svc


@pytest.fixture(scope="session")
def naip() -> Path:
    return RESOURCES / "naip_prairie_potholes_2020.tif"


@pytest.fixture(scope="session")
def landsat() -> Path:
    return RESOURCES / "landsat_rgb_byte.tif"


def write_raster(path: Path, data: np.ndarray, transform=None, crs="EPSG:32633", nodata=None, colorinterp=None):
    """Write a (bands, H, W) array as a GeoTIFF."""
    import rasterio
    from affine import Affine

    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    count, h, w = data.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": count,
        "dtype": data.dtype,
        "transform": transform if transform is not None else Affine(10, 0, 500000, 0, -10, 4000000),
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if colorinterp:
            ds.colorinterp = colorinterp
    return path


@pytest.fixture
def make_raster(tmp_path):
    def make(name="r.tif", **kw):
        return write_raster(tmp_path / name, **kw)

    return make


sys.path.insert(0, str(Path(__file__).parent))
