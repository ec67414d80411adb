"""Georeferencing against hand-computed coordinates, band handling, stretching and bad rasters."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.enums import ColorInterp
from think2seg.errors import BadInput
from think2seg.georef import area_m2, read_tile
from think2seg.polygons import mask_to_multipolygon

NORTH_UP = Affine(10, 0, 500000, 0, -10, 4000000)
# 10 m pixels rotated by 30 degrees: a = 10 cos 30, b = 10 sin 30
ROTATED = Affine(8.660254037844386, 5.0, 1000.0, 5.0, -8.660254037844386, 2000.0)


def rgb(h=40, w=60, dtype=np.uint8, value=100):
    return np.full((3, h, w), value, dtype=dtype)


def test_north_up_pixel_to_crs(make_raster):
    tile = read_tile(make_raster(data=rgb(), transform=NORTH_UP))
    assert tile.crs.to_epsg() == 32633
    # pixel (12.5, 7): x = 500000 + 10 * 12.5, y = 4000000 - 10 * 7
    assert tile.pixel_to_crs([[12.5, 7]]).tolist() == [[500125.0, 3999930.0]]
    assert tile.pixel_to_crs([[0, 0], [60, 40]]).tolist() == [[500000.0, 4000000.0], [500600.0, 3999600.0]]
    assert tile.read["mode"] == "full"


def test_rotated_geotransform(make_raster):
    tile = read_tile(make_raster(data=rgb(), transform=ROTATED))
    # x = 8.660254 * 2 + 5 * 4 + 1000 = 1037.320508; y = 5 * 2 - 8.660254 * 4 + 2000 = 1975.358984
    x, y = tile.pixel_to_crs([[2, 4]])[0]
    assert x == pytest.approx(1037.320508, abs=1e-6)
    assert y == pytest.approx(1975.358984, abs=1e-6)
    # a mask polygon keeps its area (100 m2 a pixel) under rotation
    mask = np.zeros((40, 60), bool)
    mask[10:20, 10:30] = True
    poly = mask_to_multipolygon(mask, tile.transform, min_area_pixels=1, simplify_pixels=0)
    assert poly.area == pytest.approx(200 * 100.0)
    corners = {tuple(np.round(c, 6)) for c in poly.geoms[0].exterior.coords}
    assert tuple(np.round(ROTATED @ (10, 10), 6)) in corners


def test_geographic_crs_and_geodesic_area(make_raster):
    t = Affine(0.001, 0, 10.0, 0, -0.001, 50.0)
    tile = read_tile(make_raster(data=rgb(), transform=t, crs="EPSG:4326"))
    assert tile.pixel_to_crs([[100, 200]]).tolist() == [[pytest.approx(10.1), pytest.approx(49.8)]]
    mask = np.zeros((40, 60), bool)
    mask[0:10, 0:10] = True  # 0.01 x 0.01 degrees near 50 N
    poly = mask_to_multipolygon(mask, tile.transform, min_area_pixels=1, simplify_pixels=0)
    # 0.01 deg of latitude ~ 1112 m, of longitude at 49.995 N ~ 716 m -> ~ 796,000 m2
    assert area_m2(poly, tile.crs) == pytest.approx(796_000, rel=0.01)


def test_sixteen_bit_four_bands_stretched_ignoring_nodata(make_raster):
    data = np.zeros((4, 50, 50), dtype=np.uint16)
    ramp = np.linspace(1000, 3000, 40 * 40).reshape(40, 40).astype(np.uint16)
    data[:, 5:45, 5:45] = ramp
    tile = read_tile(make_raster(data=data, nodata=0))
    assert tile.rgb.dtype == np.uint8 and tile.rgb.shape == (50, 50, 3)
    assert tile.valid is not None and not tile.valid[0, 0] and tile.valid[20, 20]
    inner = tile.rgb[5:45, 5:45, 0]
    assert inner.min() == 0 and inner.max() == 255  # the 2-98 % stretch spans the valid range
    assert (tile.rgb[0:5] == 0).all()
    assert tile.read["bands"] == [1, 2, 3]


def test_float_data_with_nan(make_raster):
    data = np.random.default_rng(0).random((3, 30, 30)).astype(np.float32)
    data[:, :3] = np.nan
    tile = read_tile(make_raster(data=data))
    assert tile.rgb.dtype == np.uint8 and not tile.valid[0].any() and tile.valid[10].all()


def test_single_band_repeated(make_raster):
    data = np.arange(30 * 30, dtype=np.uint8).reshape(1, 30, 30)
    tile = read_tile(make_raster(data=data))
    assert (tile.rgb[..., 0] == tile.rgb[..., 1]).all() and (tile.rgb[..., 1] == tile.rgb[..., 2]).all()
    assert tile.read["bands"] == [1, 1, 1]


def test_colour_interpretation_and_user_bands(make_raster):
    data = np.stack([np.full((20, 20), v, np.uint8) for v in (10, 20, 30, 40)])
    path = make_raster(
        data=data, colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    )
    assert read_tile(path).rgb[0, 0].tolist() == [30, 20, 10]
    assert read_tile(path, bands=[4, 1, 2]).rgb[0, 0].tolist() == [40, 10, 20]
    with pytest.raises(BadInput) as e:
        read_tile(path, bands=[5, 1, 2])
    assert e.value.code == "bad_bands" and "between 1 and 4" in e.value.message


def test_sample_naip_has_no_colour_interp_so_bands_1_2_3(naip):
    tile = read_tile(naip)
    assert tile.read["bands"] == [1, 2, 3] and tile.crs.to_epsg() == 26914
    assert tile.pixel_to_crs([[0, 0]]).tolist() == [[485899.0, 5209246.0]]


def test_large_raster_read_resampled_to_bound(make_raster):
    tile = read_tile(make_raster(data=rgb(1000, 3000), transform=NORTH_UP), max_size=1500)
    assert tile.shape == (500, 1500) and tile.read["mode"] == "resampled"
    # each read pixel covers 2 x 2 raster pixels; corners still match the raster's
    assert tile.pixel_to_crs([[1500, 500]]).tolist() == [[530000.0, 3990000.0]]
    assert (tile.to_source_pixel @ (750, 250)) == (1500, 500)


def test_window_read(make_raster):
    from rasterio.windows import Window

    tile = read_tile(make_raster(data=rgb(), transform=NORTH_UP), window=Window(20, 10, 30, 20))
    assert tile.shape == (20, 30) and tile.read["mode"] == "window"
    assert tile.pixel_to_crs([[0, 0]]).tolist() == [[500200.0, 3999900.0]]
    assert tile.to_source_pixel @ (0, 0) == (20, 10)


def test_no_crs_means_pixel_coordinates(make_raster):
    tile = read_tile(make_raster(data=rgb(), transform=Affine.identity(), crs=None))
    assert tile.crs is None
    assert tile.pixel_to_crs([[3, 4]]).tolist() == [[3.0, 4.0]]


def test_bad_inputs_get_sentences(tmp_path):
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    with pytest.raises(BadInput) as e:
        read_tile(text)
    assert e.value.code == "not_a_raster" and "not a raster GDAL can read" in e.value.message
    with pytest.raises(BadInput) as e:
        read_tile(tmp_path / "missing.tif")
    assert e.value.code == "not_found"
    truncated = tmp_path / "truncated.tif"
    from conftest import write_raster

    write_raster(tmp_path / "ok.tif", rgb(200, 200))
    truncated.write_bytes((tmp_path / "ok.tif").read_bytes()[:5000])
    with pytest.raises(BadInput) as e:
        read_tile(truncated)
    assert e.value.code in ("not_a_raster", "read_failed")


def test_polygons_keep_holes_and_drop_specks(make_raster):
    tile = read_tile(make_raster(data=rgb(), transform=NORTH_UP))
    mask = np.zeros((40, 60), bool)
    mask[5:25, 5:25] = True
    mask[10:15, 10:15] = False  # a 25-pixel hole: kept
    mask[30, 50] = True  # a 1-pixel speck: dropped
    poly = mask_to_multipolygon(mask, tile.transform, min_area_pixels=16)
    assert poly.is_valid and len(poly.geoms) == 1
    assert len(poly.geoms[0].interiors) == 1
    assert poly.area == pytest.approx((400 - 25) * 100.0)
    assert poly.bounds == (500050.0, 3999750.0, 500250.0, 3999950.0)


@pytest.mark.parametrize("sieved", [True, False])
@pytest.mark.parametrize("cut", [True, False])
def test_specks_and_holes_at_the_area_threshold(make_raster, monkeypatch, sieved, cut):
    """Specks are sieved on the raster before polygonising when the mask is ragged (fast on noisy masks), and
    not on a clean one; objects apart are polygonised apart (cut along empty rows and columns) or together:
    the same polygons every way. A region of exactly `min_area_pixels` stays, one pixel fewer goes; holes are
    judged as before (the sieve never fills one), and a speck inside a hole that is kept stays."""
    import think2seg.polygons as polygons

    monkeypatch.setattr(polygons, "RAGGED_CHANGES_PER_SIDE_PIXEL", 0 if sieved else 10**9)
    monkeypatch.setattr(polygons, "CALL_PIXELS", 0 if cut else 10**9)
    calls, scans = [], []
    real_sieve, real_shapes = polygons.features.sieve, polygons.features.shapes
    monkeypatch.setattr(polygons.features, "sieve", lambda *a, **k: calls.append(1) or real_sieve(*a, **k))
    monkeypatch.setattr(polygons.features, "shapes", lambda m, **k: scans.append(m.shape) or real_shapes(m, **k))
    tile = read_tile(make_raster(data=rgb(), transform=NORTH_UP))
    mask = np.zeros((40, 60), bool)
    mask[2:6, 40:44] = True  # 16 px: kept
    mask[10:13, 40:45] = True  # 15 px: dropped
    mask[20:38, 2:36] = True
    mask[22:26, 4:8] = False  # a 16-pixel hole: kept
    mask[22:25, 12:17] = False  # a 15-pixel hole: filled
    mask[28:36, 20:34] = False  # a 112-pixel hole with a 16-pixel island in it: both kept
    mask[30:34, 24:28] = True
    mask[29, 31] = True  # a one-pixel island in that hole: dropped
    poly = mask_to_multipolygon(mask, tile.transform, min_area_pixels=16, simplify_pixels=0)
    assert poly.is_valid and len(poly.geoms) == 3
    assert poly.area == pytest.approx((16 + 18 * 34 - 16 - 112 + 16) * 100.0)
    assert sorted(len(p.interiors) for p in poly.geoms) == [0, 0, 2]
    assert mask.sum() == 16 + 15 + 18 * 34 - 16 - 15 - 112 + 16 + 1  # the caller's mask is left as it was
    assert len(calls) == (1 if sieved else 0)
    # GDAL scans the bounding box of the mask, or of each object apart (the 15-pixel one is sieved first)
    boxes = {
        (True, True): [(18, 34), (4, 4)],
        (True, False): [(18, 34), (3, 5), (4, 4)],
        (False, True): [(36, 42)],
        (False, False): [(36, 43)],
    }
    assert scans == boxes[cut, sieved]


def test_objects_apart_give_the_polygons_of_the_whole_mask(monkeypatch):
    """Scattered objects of every size, polygonised in pieces cut along empty rows and columns, give exactly the
    polygons of one pass over the whole mask (simplified as usual)."""
    import think2seg.polygons as polygons

    scans = []
    real_shapes = polygons.features.shapes
    monkeypatch.setattr(polygons.features, "shapes", lambda m, **k: scans.append(m.size) or real_shapes(m, **k))
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:300, :400]
    for _ in range(5):
        mask = np.zeros((300, 400), bool)
        for cy, cx, r in zip(rng.integers(0, 300, 9), rng.integers(0, 400, 9), rng.integers(2, 40, 9)):
            mask |= (yy - cy) ** 2 / r**2 + (xx - cx) ** 2 / (r * rng.uniform(0.4, 2)) ** 2 < 1
        out = {}
        for cut in (True, False):
            monkeypatch.setattr(polygons, "CALL_PIXELS", 0 if cut else 10**9)
            scans.clear()
            out[cut] = mask_to_multipolygon(mask, NORTH_UP)
            if cut:
                assert len(scans) > 1 and sum(scans) < mask.size
        assert out[True].is_valid and not out[True].is_empty
        assert out[True].equals(out[False]) and out[True].area == pytest.approx(out[False].area)


def test_the_polygons_of_a_noisy_mask_are_exactly_its_pixels():
    """Speckle with diagonal contacts, holes and islands in holes (GDAL's rings touch themselves there): the
    polygons, merged as a coverage, are valid and cover exactly the mask's pixels."""
    import shapely

    rng = np.random.default_rng(7)
    for density in (0.3, 0.5, 0.7):
        mask = rng.random((40, 50)) < density
        got = mask_to_multipolygon(mask, Affine.identity(), min_area_pixels=1, simplify_pixels=0)
        rows, cols = np.nonzero(mask)
        want = shapely.union_all(shapely.box(cols, rows, cols + 1, rows + 1))
        assert got.is_valid and got.equals(want) and got.area == mask.sum()
