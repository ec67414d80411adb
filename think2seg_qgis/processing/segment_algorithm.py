"""``think2seg:segment``: reasoning segmentation of a raster, for the toolbox, batch mode, the modeler and scripts."""

from __future__ import annotations

import shutil
import tempfile

from qgis.core import (
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtGui import QIcon

from ..errors import CANCELLED, MODELS_LOADING, Think2SegError, backend_sentence
from ..export import RasterSource, export_raster_area
from ..layers import (
    ResultContext,
    answer_is_empty,
    box_features,
    box_fields,
    empty_sentence,
    kept_instances,
    mask_features,
    mask_fields,
    point_features,
    point_fields,
    sam_size_note,
)
from ..resource_files import icon_path
from ..segmentation import SegmentationOptions, run_segmentation
from ..settings import (
    DEFAULT_REASONING_TOKENS,
    DEFAULT_SAM_SIZE,
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILE_SIZE,
    SAM_SIZES,
    load_backend_settings,
    load_run_settings,
)


class SegmentAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    QUERY = "QUERY"
    EXTENT = "EXTENT"
    SAM_MODEL = "SAM_MODEL"
    MAX_REASONING_TOKENS = "MAX_REASONING_TOKENS"
    OUTPUT = "OUTPUT"
    OUTPUT_POINTS = "OUTPUT_POINTS"
    OUTPUT_BOXES = "OUTPUT_BOXES"

    def __init__(self):
        super().__init__()
        self._source: RasterSource | None = None
        self._area = None

    def createInstance(self):
        return SegmentAlgorithm()

    def name(self) -> str:
        return "segment"

    def displayName(self) -> str:
        return "Reasoning segmentation"

    def group(self) -> str:
        return "Segmentation"

    def groupId(self) -> str:
        return "segmentation"

    def tags(self) -> list[str]:
        return ["think2seg", "sam2", "segment", "mask", "reasoning", "vlm", "ai", "polygons"]

    def icon(self) -> QIcon:
        return QIcon(icon_path("think2seg.svg"))

    def shortHelpString(self) -> str:
        return (
            "Asks the Think2Seg backend to find what a reasoning query describes in a raster (for example "
            "“the wetlands that hold water all year”) and returns its masks as polygons, with the prompt points "
            "and boxes the model chose. The area (the whole layer by default) is exported as a GeoTIFF and sent "
            "to the backend configured in the Think2Seg panel (or $THINK2SEG_BACKEND_URL and "
            "$THINK2SEG_TOKEN_FILE). Areas larger than the export bound are sent at full resolution and tiled "
            "by the backend (jobs API). Outputs are in the raster's CRS; every feature carries the query, the "
            "instance, its area, the model ids, the SAM2 size, the source layer and the time."
        )

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Raster layer"))
        self.addParameter(QgsProcessingParameterString(self.QUERY, "Query (what to find)", multiLine=False))
        self.addParameter(
            QgsProcessingParameterExtent(
                self.EXTENT, "Area to read (default: the whole layer)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.SAM_MODEL,
                "SAM2 size",
                options=list(SAM_SIZES),
                defaultValue=SAM_SIZES.index(DEFAULT_SAM_SIZE),
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MAX_REASONING_TOKENS,
                "Reasoning budget (tokens)",
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=DEFAULT_REASONING_TOKENS,
                minValue=16,
                maxValue=8192,
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, "Masks", QgsProcessing.SourceType.TypeVectorPolygon)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_POINTS,
                "Prompt points",
                QgsProcessing.SourceType.TypeVectorPoint,
                optional=True,
                createByDefault=False,
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_BOXES,
                "Prompt boxes",
                QgsProcessing.SourceType.TypeVectorPolygon,
                optional=True,
                createByDefault=False,
            )
        )

    def prepareAlgorithm(self, parameters, context, feedback) -> bool:
        # Main thread: read what the export needs from the layer (a clone for drawing non-file layers).
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("Choose a raster layer to segment.")
        try:
            self._source = RasterSource.from_layer(layer)
        except Think2SegError as error:
            raise QgsProcessingException(error.message) from None
        if parameters.get(self.EXTENT) not in (None, ""):
            self._area = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
        else:
            self._area = self._source.extent
        return True

    def processAlgorithm(self, parameters, context, feedback):
        source, area = self._source, self._area
        query = self.parameterAsString(parameters, self.QUERY, context).strip()
        if not query:
            raise QgsProcessingException("Type a query: what should be found in the raster?")
        sam_size = SAM_SIZES[self.parameterAsEnum(parameters, self.SAM_MODEL, context)]
        budget = self.parameterAsInt(parameters, self.MAX_REASONING_TOKENS, context)
        backend = load_backend_settings()
        run = load_run_settings()
        client = backend.client()
        try:
            health = client.health()
        except Think2SegError as error:
            raise QgsProcessingException(error.message) from None
        if not health.loaded:
            raise QgsProcessingException(backend_sentence(MODELS_LOADING, ""))
        feedback.pushInfo(f"{health.sentence()} ({backend.effective_url()})")

        work_dir = tempfile.mkdtemp(prefix="think2seg_")
        try:
            feedback.setProgressText(f"Reading “{source.name}”")
            exported = export_raster_area(
                source, area, f"{work_dir}/area.tif", run.tiled_max_size, feedback.isCanceled
            )
            if feedback.isCanceled():
                return {}
            tiled = max(exported.width, exported.height) > run.export_max_size
            options = SegmentationOptions(
                sam_size=sam_size, max_reasoning_tokens=budget, bands=exported.bands
            )
            if tiled:
                # Tiles no larger than the export bound, so that each read stays within it.
                options.tile_size = min(DEFAULT_TILE_SIZE, run.export_max_size)
                options.overlap = min(DEFAULT_TILE_OVERLAP, options.tile_size // 8)
                options.max_read_size = run.export_max_size
            feedback.pushInfo(
                f"Sending {exported.width} × {exported.height} px ({exported.mode})"
                + (f", tiled by the backend in {options.tile_size} px tiles" if tiled else "")
            )
            feedback.setProgress(5)

            def progress(fraction: float, message: str) -> None:
                feedback.setProgress(5 + 90 * max(0.0, min(1.0, fraction)))
                if message:
                    feedback.setProgressText(message)

            answer = run_segmentation(
                backend.client(), exported.path, query, options, progress, feedback.isCanceled, use_jobs=tiled
            )
        except Think2SegError as error:
            if error.code == CANCELLED:
                feedback.reportError(error.message)
                return {}
            raise QgsProcessingException(error.message) from None
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

        reasoning = str(answer.get("reasoning") or "").strip()
        if reasoning:
            feedback.pushInfo(f"Reasoning: {reasoning}")
        result_context = ResultContext(
            query=query, source_layer=source.name, crs=source.crs, sam_size=sam_size
        )
        if answer_is_empty(answer):
            sentence = empty_sentence(answer, query, source.name)
            if hasattr(feedback, "pushWarning"):
                feedback.pushWarning(sentence)
            else:
                feedback.reportError(sentence)
            masks = []
        else:
            masks = mask_features(answer, result_context)
            feedback.pushInfo(str(answer.get("message") or f"{len(masks)} instance(s) found"))
        note = sam_size_note(answer, sam_size)
        if note:
            feedback.pushInfo(note)
        keep = kept_instances(masks)
        outputs = {}
        for key, fields, wkb, features in (
            (self.OUTPUT, mask_fields(), QgsWkbTypes.Type.MultiPolygon, masks),
            (self.OUTPUT_POINTS, point_fields(), QgsWkbTypes.Type.Point, None),
            (self.OUTPUT_BOXES, box_fields(), QgsWkbTypes.Type.Polygon, None),
        ):
            sink, dest_id = self.parameterAsSink(parameters, key, context, fields, wkb, source.crs)
            if sink is None:
                if key == self.OUTPUT:
                    raise QgsProcessingException(self.invalidSinkError(parameters, key))
                continue
            if features is None:
                features = (
                    point_features(answer, result_context, keep)
                    if key == self.OUTPUT_POINTS
                    else box_features(answer, result_context, keep)
                )
            sink.addFeatures(features, QgsFeatureSink.Flag.FastInsert)
            outputs[key] = dest_id
        feedback.setProgress(100)
        return outputs
