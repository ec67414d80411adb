"""The views kept on disk for refine after a restart (views.DiskViews): exact pixels back, bounded by bytes,
least recently used out, only view ids as names, a damaged entry "gone" in a sentence. No models needed; the
service-level checks (a real restart, the same mask) are in test_views_restart.py."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from think2seg.georef import RasterTile
from think2seg.segmenter import image_key
from think2seg.views import DiskViews, View, ViewNotFound, ViewStore


def view(seed: int, size: int = 200) -> View:
    rgb = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    tile = RasterTile(
        rgb,
        Affine(10, 0, 500000, 0, -10, 4000000),
        CRS.from_epsg(32633),
        rgb[..., 0] > 5,
        "",
        Affine(2, 0, 100, 0, 2, 50),
        {"mode": "full", "window": [100, 50, 400, 400]},
    )
    return View(image_key(rgb), tile, [0, 1], 4.0, "tiny")


def test_a_view_comes_back_exactly_from_a_new_store_on_the_same_folder(tmp_path):
    v = view(0)
    DiskViews(tmp_path / "kept").put(v)
    again = ViewStore(disk=DiskViews(tmp_path / "kept"), scratch=tmp_path / "scratch").get(v.view_id)
    assert again is not v and again.view_id == v.view_id
    assert np.array_equal(again.tile.rgb, v.tile.rgb) and np.array_equal(again.tile.valid, v.tile.valid)
    assert again.tile.transform == v.tile.transform and again.tile.to_source_pixel == v.tile.to_source_pixel
    assert again.tile.crs == v.tile.crs and again.tile.read == v.tile.read
    assert (again.instances, again.min_area_pixels, again.sam_size) == ([0, 1], 4.0, "tiny")


def test_the_store_never_exceeds_its_bytes_and_drops_the_least_recently_used(tmp_path):
    one = 200 * 200 * 4 + 2000  # pixels, mask, headers and meta: about 162 KB a view
    disk = DiskViews(tmp_path / "kept", 3 * one)
    views = [view(k) for k in range(5)]
    for v in views[:3]:
        disk.put(v)
    disk.get(views[0].view_id, tmp_path)  # used: now the newest
    for v in views[3:]:
        disk.put(v)
        assert disk.nbytes <= disk.max_bytes
    assert {p.name for p in (tmp_path / "kept").iterdir()} == {views[k].view_id for k in (0, 3, 4)}
    assert disk.get(views[1].view_id, tmp_path) is None
    DiskViews(tmp_path / "small", 1000).put(views[0])  # larger than the whole store: not kept, no error
    assert not [p for p in (tmp_path / "small").iterdir() if not p.name.startswith(".")]
    assert DiskViews(tmp_path / "none", 0).put(views[0]) is None and not (tmp_path / "none").exists()


@pytest.mark.parametrize("bad", ["../../etc/passwd", "..", "", "A" * 32, "0" * 31 + "g", "0" * 33, "0" * 16])
def test_only_view_ids_name_entries(tmp_path, bad):
    store = ViewStore(disk=DiskViews(tmp_path / "kept"), scratch=tmp_path)
    with pytest.raises(ViewNotFound, match="not a view id"):
        store.get(bad)
    assert not (tmp_path / "kept").exists()


def test_a_damaged_entry_is_gone_in_a_sentence_and_removed(tmp_path):
    disk = DiskViews(tmp_path / "kept")
    a, b = view(0), view(1)
    disk.put(a)
    disk.put(b)
    (tmp_path / "kept" / a.view_id / "rgb.npy").write_bytes(b"\x93NUMPY junk")
    np.save(tmp_path / "kept" / b.view_id / "rgb.npy", view(2).tile.rgb)  # a valid array, not this view's pixels
    for v in (a, b):
        with pytest.raises(ViewNotFound, match="damaged or was removed"):
            disk.get(v.view_id, tmp_path)
        assert not (tmp_path / "kept" / v.view_id).exists()
