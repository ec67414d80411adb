"""Refine over real loopback HTTP with the tiny models: SAM2's decoder on a cached view, no reasoner."""

from __future__ import annotations

import itertools

import httpx
import pytest
from affine import Affine
from conftest import tiny_service
from shapely.affinity import affine_transform
from shapely.geometry import box, shape
from test_service import auth, post_segment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tiny_models_dir, tmp_path_factory):
    """The service on the tiny models, keeping no embedding but the current one: the next image evicts it."""
    with tiny_service(
        tiny_models_dir, tmp_path_factory.mktemp("cfg") / "think2seg", "--embedding-cache-mb", "0", "--max-views", "8"
    ) as svc:
        yield svc.url, svc.token, svc.token_file


def refine(url, token, view_id, body=None, content=None):
    kw = (
        {"content": content, "headers": {**auth(token), "Content-Type": "application/json"}}
        if content
        else {"json": body, "headers": auth(token)}
    )
    return httpx.post(f"{url}/v1/views/{view_id}/refine", timeout=120, **kw)


def crs_box(ring):
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return [min(xs), min(ys), max(xs), max(ys)]


@pytest.fixture(scope="module")
def answer(service, naip):
    url, token, _ = service
    r = post_segment(url, token, naip, "the wetlands that hold water all year")
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["view_id"]) == 32 and body["instances"]
    return body


def iou(a, b) -> float:
    return a.intersection(b).area / a.union(b).area


def test_refine_with_the_models_prompts_gives_the_models_mask(service, answer):
    url, token, _ = service
    inst = answer["instances"][0]
    r = refine(
        url,
        token,
        answer["view_id"],
        {"box": crs_box(inst["box_crs"]), "positive_points": inst["points_crs"], "instance": 0},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    model_mask = shape(answer["mask"]["features"][0]["geometry"])
    assert out["instance"] == 0 and out["edited"] is True and out["labels"] == [1, 1]
    assert iou(shape(out["geometry"]), model_mask) > 0.98
    assert out["area_m2"] == pytest.approx(model_mask.area, rel=0.03) and out["area_unit"] == "m2"
    assert out["reembedded"] is False  # the answer's embedding is still loaded
    assert 0 < out["timings"]["decoder"] <= out["timings"]["total"]  # figures: scripts/refine_bench.py
    # the same prompts in pixels give the same mask
    px = refine(
        url,
        token,
        answer["view_id"],
        {"frame": "pixel", "box": inst["box_pixel"], "positive_points": inst["points_pixel"]},
    ).json()
    assert iou(shape(px["geometry"]), shape(out["geometry"])) > 0.999
    assert px["instance"] is None


def test_prompt_changes_change_the_mask_and_an_evicted_embedding_is_rebuilt(service, answer, landsat):
    url, token, _ = service
    inst = answer["instances"][0]
    box = crs_box(inst["box_crs"])
    base = refine(url, token, answer["view_id"], {"box": box, "positive_points": inst["points_crs"]}).json()
    # a negative click where the model put its first positive point
    neg = refine(
        url,
        token,
        answer["view_id"],
        {"box": box, "positive_points": inst["points_crs"][1:], "negative_points": inst["points_crs"][:1]},
    ).json()
    assert neg["labels"] == [1, 0]
    assert shape(neg["geometry"]).symmetric_difference(shape(base["geometry"])).area > 0
    # a smaller box (the top-left quarter)
    x1, y1, x2, y2 = box
    small = refine(url, token, answer["view_id"], {"box": [x1, (y1 + y2) / 2, (x1 + x2) / 2, y2]}).json()
    assert shape(small["geometry"]).symmetric_difference(shape(base["geometry"])).area > 0
    # another answer takes the segmenter; the first view's embedding is rebuilt from its kept pixels
    assert post_segment(url, token, landsat, "the water").status_code == 200
    again = refine(
        url,
        token,
        answer["view_id"],
        {"box": box, "positive_points": inst["points_crs"][1:], "negative_points": inst["points_crs"][:1]},
    ).json()
    assert again["reembedded"] is True and again["timings"]["embed"] > 0
    assert again["geometry"] == neg["geometry"] and again["score"] == pytest.approx(neg["score"], abs=1e-6)


def test_unknown_views_instances_and_bad_prompts_are_refused(service, answer):
    url, token, _ = service
    inst = answer["instances"][0]
    r = refine(url, token, "0" * 32, {"positive_points": inst["points_crs"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "view_not_found"
    r = refine(url, token, answer["view_id"], {"positive_points": inst["points_crs"], "instance": 7})
    assert r.status_code == 404 and r.json()["error"]["code"] == "instance_not_found"
    for body in ({}, {"positive_points": [[0, 0]]}, {"box": [0, 0, 1, 1]}):  # no prompt; outside (CRS origin)
        r = refine(url, token, answer["view_id"], body)
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_prompt", r.text
    r = refine(url, token, answer["view_id"], content=b'{"positive_points": [[NaN, 5207800.0]]}')
    assert r.status_code == 422 and "finite" in r.json()["error"]["message"]
    r = refine(url, token, answer["view_id"], {"frame": "metres", "box": [0, 0, 1, 1]})
    assert r.status_code == 400
    spec = httpx.get(url + "/openapi.json").json()
    assert "RefineRequest" in spec["components"]["schemas"] and "/v1/views/{view_id}/refine" in spec["paths"]


def test_refine_on_a_tiled_job_resegments_the_tiles_it_reaches_and_merges_them_seamlessly(service, naip):
    import time

    url, token, _ = service
    # 934 x 723 px in 512 px tiles overlapping by 64: a 2 x 2 grid, core borders at x = 467 and y = 361
    opts = {"max_read_size": 512, "tile_size": 512, "overlap": 64}
    job = post_segment(url, token, naip, "the wetlands", options=opts, endpoint="/v1/jobs").json()
    deadline = time.time() + 300
    while time.time() < deadline:
        st = httpx.get(f"{url}/v1/jobs/{job['job_id']}", headers=auth(token)).json()
        if st["status"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert st["status"] == "done", st
    answer = httpx.get(f"{url}/v1/jobs/{job['job_id']}/result", headers=auth(token)).json()
    assert answer["read"]["mode"] == "tiled" and len(answer["tiles"]) == 4 and answer["view_id"]
    assert all(len(t["view_id"]) == 32 for t in answer["tiles"])
    # a box across the vertical core border, in the raster's pixels
    body = {
        "frame": "pixel",
        "box": [380, 60, 560, 300],
        "positive_points": [[420, 180], [520, 200]],
        "negative_points": [[470, 250]],
    }
    r = refine(url, token, answer["view_id"], body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["tiles"] == ["r0c0", "r0c1"] and out["labels"] == [1, 1, 0] and out["geometry"]
    geom = shape(out["geometry"])
    assert geom.is_valid and geom.area > 0
    # seamless: no two parts share a stretch of border (they would have been dissolved into one)
    parts = list(geom.geoms)
    assert all(a.intersection(b).length == 0 for a, b in itertools.combinations(parts, 2))
    # a refine on one tile only touches that tile; the same prompts give the same answer
    one = refine(url, token, answer["view_id"], {"frame": "pixel", "positive_points": [[100, 100]]}).json()
    assert one["tiles"] == ["r0c0"]
    again = refine(url, token, answer["view_id"], body).json()
    assert again["geometry"] == out["geometry"]
    r = refine(url, token, answer["view_id"], {"frame": "pixel", "positive_points": [[2000, 100]]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_prompt"

    # An edit of a merged instance that reaches one tile re-segments that tile only; the instance keeps its
    # pieces elsewhere, as the run merged them, and they are dissolved with the new piece across the border.
    (feature,) = [f for f in answer["mask"]["features"] if len(f["properties"]["tiles"]) == 4]  # the tiny models'
    k = feature["properties"]["instance"]
    edit = refine(url, token, answer["view_id"], {"frame": "pixel", "positive_points": [[100, 100]], "instance": k})
    assert edit.status_code == 200, edit.text
    edit = edit.json()
    assert edit["tiles"] == ["r0c0"] and edit["tiles_kept"] == ["r0c1", "r1c0", "r1c1"] and one["tiles_kept"] == []
    to_crs = Affine(*answer["read"]["transform"])
    r0c0_core = affine_transform(box(0, 0, 467, 361), [to_crs.a, to_crs.b, to_crs.d, to_crs.e, to_crs.c, to_crs.f])
    original, edited, new_only = shape(feature["geometry"]), shape(edit["geometry"]), shape(one["geometry"])
    assert (
        original.difference(r0c0_core).symmetric_difference(edited.difference(r0c0_core)).area < 1e-6 * original.area
    )  # untouched outside the tile the edit reached
    # in the tile it reached: that tile's new mask
    assert (
        edited.intersection(r0c0_core).symmetric_difference(new_only.intersection(r0c0_core)).area
        < 1e-6 * original.area
    )
    assert not edited.equals(original) and edited.is_valid
    edited_parts = list(edited.geoms)
    assert all(a.intersection(b).length == 0 for a, b in itertools.combinations(edited_parts, 2))  # dissolved
