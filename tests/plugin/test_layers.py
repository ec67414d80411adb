"""Result layers from an answer shaped exactly as docs/api.md shows (a canned answer: layer building only)."""

from __future__ import annotations

import os

from osgeo import ogr
from qgis.core import QgsCoordinateReferenceSystem, QgsGeometry, QgsRectangle, QgsWkbTypes

from think2seg_qgis.layers import (
    ResultContext,
    add_to_project,
    answer_extent,
    answer_is_empty,
    build_result_layers,
    empty_sentence,
    geopackage_path_for,
)

CRS = QgsCoordinateReferenceSystem("EPSG:26914")
X0, Y0 = 500000.0, 5200000.0  # any place in UTM 14N


def canned_answer(status: str = "ok") -> dict:
    square = [[X0, Y0], [X0 + 100, Y0], [X0 + 100, Y0 + 80], [X0, Y0 + 80], [X0, Y0]]
    second = [[X0 + 300, Y0], [X0 + 340, Y0], [X0 + 340, Y0 + 40], [X0 + 300, Y0 + 40], [X0 + 300, Y0]]
    return {
        "query": "the wetlands that hold water all year",
        "status": status,
        "message": "2 instances found",
        "reasoning": "Dark, smooth patches surrounded by vegetation are open water.",
        "answer": '<answer>```json[{"bbox_2d": [0, 0, 20, 16], "points": [[10, 8]]}]```</answer>',
        "instances": [
            {
                "instance": 0,
                "box_pixel": [0, 0, 20, 16],
                "points_pixel": [[10, 8], [12, 9]],
                "box_crs": [[X0, Y0 + 80], [X0 + 100, Y0 + 80], [X0 + 100, Y0], [X0, Y0], [X0, Y0 + 80]],
                "points_crs": [[X0 + 50, Y0 + 40], [X0 + 60, Y0 + 35]],
                "area": 8000.0,
            },
            {
                "instance": 1,
                "box_pixel": [60, 8, 68, 16],
                "points_pixel": [[64, 12]],
                "box_crs": [
                    [X0 + 300, Y0 + 40],
                    [X0 + 340, Y0 + 40],
                    [X0 + 340, Y0],
                    [X0 + 300, Y0],
                    [X0 + 300, Y0 + 40],
                ],
                "points_crs": [[X0 + 320, Y0 + 20]],
                "area": 1600.0,
            },
        ],
        "mask": {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "geometry": {"type": "MultiPolygon", "coordinates": [[square]]},
                    "properties": {"instance": 0, "area": 8000.0},
                },
                {
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": [second]},
                    "properties": {"instance": 1, "area": 1600.0},
                },
            ],
        },
        "crs": CRS.toWkt(),
        "epsg": 26914,
        "area_unit": "m2",
        "read": {"mode": "resampled", "width": 934, "height": 723, "read_width": 934, "read_height": 723},
        "timings": {"read": 0.01, "reasoner": 1.2, "segmenter": 0.05},
        "models": {
            "reasoner": "RicardoString/Think2Seg-RS-3B",
            "segmenter": "sam2.1_hiera_small",
            "prompt_template": "think2seg-rs/v1",
        },
    }


def context(**kwargs) -> ResultContext:
    return ResultContext(
        query="the wetlands that hold water all year",
        source_layer="naip",
        crs=CRS,
        sam_size="small",
        **kwargs,
    )


def test_three_layers_with_provenance(qgis_app):
    result = build_result_layers(canned_answer(), context())
    masks, points, boxes = result.masks, result.points, result.boxes
    assert (masks.featureCount(), points.featureCount(), boxes.featureCount()) == (2, 3, 2)
    for layer in result.layers():
        assert layer.crs().authid() == "EPSG:26914"
    assert masks.wkbType() == QgsWkbTypes.MultiPolygon
    assert points.geometryType() == QgsWkbTypes.PointGeometry
    first = next(masks.getFeatures())
    assert first["query"] == "the wetlands that hold water all year"
    assert first["instance"] == 0 and first["area_m2"] == 8000.0
    assert first["reasoner"] == "RicardoString/Think2Seg-RS-3B" and first["segmenter"] == "sam2.1_hiera_small"
    assert first["sam_size"] == "small" and first["source_layer"] == "naip"
    assert first["created"].isValid()
    assert "open water" in first["reasoning"]
    assert first.geometry().area() == 8000.0
    assert "open water" in masks.metadata().abstract()
    box = next(boxes.getFeatures())
    assert box.geometry().boundingBox() == QgsRectangle(X0, Y0, X0 + 100, Y0 + 80)
    assert box["box_pixel"] == "0,0,20,16"
    pts = sorted((f["instance"], f["point"], f["x_pixel"]) for f in points.getFeatures())
    assert pts == [(0, 0, 10.0), (0, 1, 12.0), (1, 0, 64.0)]
    # Styled from resources/styles: a semi-transparent fill.
    symbol = masks.renderer().symbol()
    assert 0 < symbol.color().alpha() < 255 or symbol.opacity() < 1


def test_a_tiled_answers_prompts_are_numbered_as_its_merged_masks(qgis_app):
    """A tiled answer numbers prompts per tile and masks per merged region: a prompt goes with the feature
    whose parts hold its tile:instance (a part dropped as a speck takes its prompts with it)."""
    answer = canned_answer()
    a, b = answer["instances"]
    answer["read"] = {"mode": "tiled"}
    answer["instances"] = [
        {**a, "tile": "r0c0", "instance": 0},
        {**b, "tile": "r0c0", "instance": 1},
        {**a, "tile": "r0c1", "instance": 0},
        {**b, "tile": "r1c1", "instance": 0},
    ]
    first, second = answer["mask"]["features"]
    first["properties"].update(instance=0, score=0.8, parts=["r0c0:1", "r0c1:0"])  # one region over a border
    second["properties"].update(instance=1, score=0.6, parts=["r0c0:0"])  # r1c1:0 was a speck
    result = build_result_layers(answer, context())
    boxes = sorted((f["instance"], f["box_pixel"]) for f in result.boxes.getFeatures())
    assert boxes == [(0, "0,0,20,16"), (0, "60,8,68,16"), (1, "0,0,20,16")]
    points = sorted((f["instance"], f["point"], f["x_pixel"]) for f in result.points.getFeatures())
    assert points == [(0, 0, 64.0), (0, 1, 10.0), (0, 2, 12.0), (1, 0, 10.0), (1, 1, 12.0)]  # numbered per mask
    assert sorted(f["score"] for f in result.masks.getFeatures()) == [0.6, 0.8]  # the merged feature's own


def test_group_named_after_the_query_and_zoom_extent(project):
    result = build_result_layers(canned_answer(), context())
    group = add_to_project(result, project)
    assert group.name() == "the wetlands that hold water all year"
    assert [node.layer().name() for node in group.findLayers()] == [
        "the wetlands that hold water all year — masks",
        "the wetlands that hold water all year — prompt points",
        "the wetlands that hold water all year — prompt boxes",
    ]
    extent = answer_extent(result, QgsCoordinateReferenceSystem("EPSG:4326"))
    assert -100 < extent.center().x() < -90 and 40 < extent.center().y() < 50  # UTM 14N, in degrees


def test_empty_and_unparsed_answers(qgis_app):
    empty = canned_answer("empty")
    empty["instances"], empty["mask"]["features"] = [], []
    assert answer_is_empty(empty)
    assert empty_sentence(empty, "q", "naip") == "Nothing matches “q” in “naip”."
    unparsed = dict(empty, status="unparsed")
    assert "no usable answer" in empty_sentence(unparsed, "q", "naip")
    assert not answer_is_empty(canned_answer())


def test_selected_polygons_clip_the_masks(qgis_app):
    clip = QgsGeometry.fromRect(QgsRectangle(X0, Y0, X0 + 50, Y0 + 80))
    result = build_result_layers(canned_answer(), context(clip_geometry=clip))
    assert result.masks.featureCount() == 1  # the second instance lies outside
    feature = next(result.masks.getFeatures())
    assert feature.geometry().area() == 4000.0 and feature["area_m2"] == 4000.0
    assert result.points.featureCount() == 2 and result.boxes.featureCount() == 1


def test_area_is_geodesic_for_lon_lat_and_scaled_for_feet(qgis_app):
    from think2seg_qgis.layers import area_m2

    # 0.01° × 0.01° at the equator: about 1113 m × 1106 m on WGS84, never 0.0001 "square degrees".
    square = QgsGeometry.fromRect(QgsRectangle(0.0, 0.0, 0.01, 0.01))
    assert abs(area_m2(square, QgsCoordinateReferenceSystem("EPSG:4326")) - 1_231_000) < 5_000
    # A US-feet CRS: 1000 ft × 1000 ft = 92,903 m².
    feet = QgsGeometry.fromRect(QgsRectangle(0.0, 0.0, 1000.0, 1000.0))
    assert abs(area_m2(feet, QgsCoordinateReferenceSystem("EPSG:2263")) - 92_903) < 10


def test_the_sam_size_used_is_recorded_from_the_answer(qgis_app):
    from think2seg_qgis.layers import sam_size_note, sam_size_used

    answer = canned_answer()
    answer["models"]["sam_size"] = "base_plus"  # the backend says which size drew the masks
    assert sam_size_used(answer, "small") == "base_plus"
    assert "base_plus" in sam_size_note(answer, "small")
    result = build_result_layers(answer, context())
    assert {f["sam_size"] for f in result.masks.getFeatures()} == {"base_plus"}
    del answer["models"]["sam_size"]  # an older backend: read from its segmenter id
    assert sam_size_used(answer, "large") == "small"


def test_geopackage_next_to_the_raster(qgis_app, tmp_path):
    raster = tmp_path / "scene.tif"
    raster.write_bytes(b"")
    path = geopackage_path_for(str(raster), str(tmp_path / "fallback"))
    assert path == str(tmp_path / "scene_think2seg.gpkg")
    result = build_result_layers(canned_answer(), context(), "geopackage", path)
    assert os.path.isfile(path)
    for layer in result.layers():
        assert layer.providerType() == "ogr" and layer.isValid()
        assert layer.crs().authid() == "EPSG:26914"
    assert result.masks.featureCount() == 2
    # A second run adds new tables to the same file, it does not replace the first.
    build_result_layers(canned_answer(), context(), "geopackage", path)
    dataset = ogr.Open(path)
    tables = sorted(dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount()))
    assert len(tables) == 6, tables
