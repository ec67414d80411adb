"""The result schema (think2seg.result) and its one writer (think2seg.output), without models: a result built
from a known prompt and a known mask, written to GeoPackage, GeoJSON and GeoParquet."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pytest
from affine import Affine
from shapely.geometry import GeometryCollection, LineString, MultiPolygon, Polygon, box
from think2seg.errors import BadInput
from think2seg.georef import tile_from_array
from think2seg.output import LayerWriter, write_results
from think2seg.polygons import as_multipolygon, mask_to_multipolygon
from think2seg.prompts import PromptInstance
from think2seg.result import (
    GEOMETRY_TYPES,
    LAYERS,
    InstanceResult,
    SegmentResult,
    area_text,
    columns,
    describe,
    found_sentence,
    layer_rows,
)


def one_tile_result(crs: str | None = "EPSG:32633") -> SegmentResult:
    """A 100 x 80 tile at 2 m with a 30 x 20 pixel mask, from one box and two points."""
    transform = Affine(2, 0, 500000, 0, -2, 4000000) if crs else None
    tile = tile_from_array(np.zeros((80, 100, 3), np.uint8), transform, crs)
    tile.source = "scene.tif"
    mask = np.zeros((80, 100), bool)
    mask[10:30, 20:50] = True
    geom = mask_to_multipolygon(mask, tile.transform, min_area_pixels=1)
    inst = InstanceResult.from_prompt(
        0, PromptInstance((20.0, 10.0, 50.0, 30.0), ((35.0, 20.0), (25.0, 15.0))), tile, geom, 0.9
    )
    r = SegmentResult(
        query="the field",
        status="ok",
        message="",
        reasoning="A bright rectangle.",
        answer="...",
        instances=[inst],
        tile=tile,
        timings={},
        models={"reasoner": "r", "segmenter": "s"},
    )
    r.message = describe("ok", 1, r.area, "m2" if crs else "pixels", "")
    return r


def test_schema_is_one_table():
    assert LAYERS == ("mask", "prompt_points", "prompt_boxes")
    assert GEOMETRY_TYPES == {"mask": "MultiPolygon", "prompt_points": "Point", "prompt_boxes": "MultiPolygon"}
    mask = columns("mask")
    assert list(mask)[:6] == ["query", "instance", "reasoner", "segmenter", "created", "source"]
    assert mask["area_m2"] is float and mask["instance"] is int and "tile" not in mask
    assert "area_px" in columns("mask", georeferenced=False) and "area_m2" not in columns("mask", georeferenced=False)
    tiled = columns("mask", tiled=True)
    assert {"raster", "tile", "tiles", "parts"} <= set(tiled)
    assert columns("prompt_points", tiled=True)["point"] is int and "tiles" not in columns("prompt_boxes", tiled=True)


def test_rows_fit_the_schema():
    r = one_tile_result()
    rows = layer_rows(r)
    for name in LAYERS:
        for geom, attrs in rows[name]:
            assert set(attrs) <= set(columns(name)), name
            assert geom.geom_type == GEOMETRY_TYPES[name]
    ((geom, attrs),) = rows["mask"]
    assert attrs["area_m2"] == pytest.approx(30 * 20 * 4.0) and attrs["reasoning"] == "A bright rectangle."
    assert [a["point"] for _, a in rows["prompt_points"]] == [1, 2]
    assert rows["prompt_points"][0][0].coords[0] == (500000 + 2 * 35.0, 4000000 - 2 * 20.0)


def test_sentences():
    assert (
        area_text(25_000, "m2") == "2.50 ha"
        and area_text(900, "m2") == "900 m²"
        and area_text(12, "pixels") == "12 pixels"
    )
    assert found_sentence(1, "instance", 900, "m2") == "1 instance found, 900 m² in all."
    assert found_sentence(3, "feature", 25_000, "m2", " in 4 tiles") == "3 features found in 4 tiles, 2.50 ha in all."
    assert one_tile_result().message == "1 instance found, 2400 m² in all."


def test_as_multipolygon():
    a, b = box(0, 0, 1, 1), box(2, 0, 3, 1)
    assert as_multipolygon(None).is_empty and as_multipolygon(Polygon()).is_empty
    assert as_multipolygon(a).equals(MultiPolygon([a]))
    assert len(as_multipolygon(GeometryCollection([a, LineString([(0, 0), (5, 5)]), b])).geoms) == 2
    overlapping = as_multipolygon(GeometryCollection([a, box(0.5, 0, 1.5, 1)]))
    assert overlapping.is_valid and overlapping.area == pytest.approx(1.5)


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".parquet"])
def test_one_writer_three_formats(tmp_path, suffix):
    written = write_results([one_tile_result()], tmp_path / f"out{suffix}")
    assert set(written) == set(LAYERS)
    for name in LAYERS:
        path = written[name]
        if suffix == ".parquet":
            table = pq.read_table(path)
            assert table.column_names == list(columns(name)) + ["geometry"]
            geo = json.loads(table.schema.metadata[b"geo"])
            assert geo["columns"]["geometry"]["geometry_types"] == [GEOMETRY_TYPES[name]]
            n = table.num_rows
        else:
            info = pyogrio.read_info(path, layer=name if suffix == ".gpkg" else None)
            assert list(info["fields"]) == list(columns(name))
            assert info["crs"] == "EPSG:32633"
            n = info["features"]
        assert n == {"mask": 1, "prompt_points": 2, "prompt_boxes": 1}[name]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name], "no temporary file is left"


def test_pixel_only_results_have_area_px(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no warning that the CRS is missing: pixel coordinates are meant
        out = write_results([one_tile_result(crs=None)], tmp_path / "px.gpkg")["mask"]
    info = pyogrio.read_info(out, layer="mask")
    assert "area_px" in info["fields"] and "area_m2" not in info["fields"]
    _, _, _, fields = pyogrio.raw.read(out, layer="mask")
    assert fields[list(info["fields"]).index("area_px")][0] == pytest.approx(600)


def test_an_output_is_never_half_written(tmp_path):
    out = tmp_path / "answers.gpkg"
    write_results([one_tile_result()], out)
    before = out.read_bytes()
    writer = LayerWriter(out, one_tile_result().crs.to_wkt())
    writer.write_rows(layer_rows(one_tile_result()))
    assert out.read_bytes() == before, "rows go to a temporary file until close()"
    writer.abort()
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["answers.gpkg"]
    LayerWriter(out, one_tile_result().crs.to_wkt()).close()  # nothing written: three empty layers replace it
    assert {name: pyogrio.read_info(out, layer=name)["features"] for name in LAYERS} == dict.fromkeys(LAYERS, 0)


def test_bad_outputs_are_sentences(tmp_path):
    with pytest.raises(BadInput, match="must end in .gpkg or .geojson or .parquet") as e:
        write_results([one_tile_result()], tmp_path / "out.shp")
    assert e.value.code == "bad_output"
    with pytest.raises(BadInput) as e:
        write_results([one_tile_result(), one_tile_result(crs="EPSG:4326")], tmp_path / "mixed.gpkg")
    assert e.value.code == "mixed_crs"


@pytest.fixture
def full_disk(tmp_path):
    """A real 1 MiB tmpfs, filled to the last block."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _fill(disk) -> None:
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


@pytest.mark.parametrize("features", [0, 50])
@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".parquet"])
def test_a_full_disk_never_replaces_the_earlier_output(full_disk, suffix, features):
    """GDAL's GeoJSON writer lost its flush on a full disk without a word and the empty files were renamed over
    the user's earlier output: now the writer checks each file before the rename, says the disk is full, and
    leaves the earlier output and no temporary file behind."""
    from think2seg.errors import DiskFull

    out = full_disk / f"out{suffix}"
    writer = LayerWriter(out, None)
    writer.write("mask", [(box(0, 0, 1, 1), {"query": "earlier", "instance": 1})])
    earlier = writer.close()
    before = {p: open(p, "rb").read() for p in set(earlier.values())}
    _fill(full_disk)
    writer = LayerWriter(out, None)
    with pytest.raises((DiskFull, OSError, pyogrio.errors.DataSourceError, pyogrio.errors.FeatureError)) as e:
        try:
            rows = [(box(i, i, i + 1, i + 1), {"query": "q" * 40, "instance": i}) for i in range(features)]
            writer.write("mask", rows)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    if isinstance(e.value, DiskFull):
        assert "earlier output is kept" in e.value.message and "MB free" in e.value.message
    assert {p: open(p, "rb").read() for p in before} == before, "the earlier output is as it was"
    assert sorted(p.name for p in full_disk.iterdir()) == sorted([*(p.rsplit("/", 1)[-1] for p in before), "filler"])
