"""``think2seg:segment``: reasoning segmentation of a raster, for the toolbox, batch mode, the modeler and scripts.

It runs the panel's run path (task.run_request: plan, export, send as a job, poll) and writes the panel's
features (layers.py), so both give the same layers and attributes. Outputs loaded into the project are named
after the query, styled like the panel's, and put in a group named after the query.
"""

from __future__ import annotations

import shutil
import tempfile

from qgis.core import (
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProject,
    QgsRasterLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtGui import QIcon

from ..errors import CANCELLED, CONNECTION_CODES, IN_PROCESSING, Think2SegError, backend_sentence
from ..export import RasterSource
from ..i18n import tr, tr_noop
from ..layers import (
    BOXES_STYLE,
    MASKS_STYLE,
    POINTS_STYLE,
    ResultContext,
    answer_is_empty,
    apply_style,
    box_features,
    box_fields,
    empty_sentence,
    found_sentence,
    group_name_for,
    kept_instances,
    layer_names,
    mask_features,
    mask_fields,
    point_features,
    point_fields,
    sam_size_note,
    sam_size_used,
)
from ..resource_files import icon_path, plugin_metadata
from ..segmentation import STRICT_ANSWER_HELP, STRICT_ANSWER_LABEL, SegmentationOptions
from ..settings import (
    DEFAULT_EXPORT_MAX_SIZE,
    DEFAULT_REASONING_TOKENS,
    SAM_SIZE_BACKEND,
    SAM_SIZES,
    backend_token,
    load_backend_settings,
    load_run_settings,
)
from ..task import SegmentationRequest, run_request

# The README section that documents this algorithm (GitHub's anchor for "## In QGIS: the Processing toolbox").
README_SECTION = "in-qgis-the-processing-toolbox"

SAM_LABELS = {
    "tiny": tr_noop("Tiny (fastest, coarsest)"),
    "small": tr_noop("Small"),
    "base_plus": tr_noop("Base+ (finer)"),
    "large": tr_noop("Large (finest, most memory)"),
}


def default_raster_id() -> str | None:
    """The raster the dialog starts with: the active layer when it is a raster, else the project's only raster.

    initAlgorithm runs each time the dialog opens (QgsProcessingAlgorithm.create), so this is the project's state
    then. None (the user chooses) with several rasters and none active, and headless (qgis_process: no iface).
    """
    try:
        import qgis.utils
    except ImportError:  # a QGIS without its Python utilities (standalone scripts)
        window = None
    else:
        window = getattr(qgis.utils, "iface", None)  # QGIS's interface; None in qgis_process and scripts
    active = window.activeLayer() if window is not None else None
    if isinstance(active, QgsRasterLayer) and active.isValid():
        return active.id()
    rasters = [layer for layer in QgsProject.instance().mapLayers().values() if isinstance(layer, QgsRasterLayer)]
    return rasters[0].id() if len(rasters) == 1 else None


class StyleAndGroup(QgsProcessingLayerPostProcessorInterface):
    """Applies the panel's style to a loaded output and moves it into a group named after the query."""

    def __init__(self, style: str, group: str):
        super().__init__()
        self.style = style
        self.group = group

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS naming
        apply_style(layer, self.style)
        project = context.project() or QgsProject.instance()
        root = project.layerTreeRoot()
        node = root.findLayer(layer.id())
        if node is None:
            return
        group = root.findGroup(self.group) or root.insertGroup(0, self.group)
        if node.parent() is not group:
            group.addChildNode(node.clone())
            node.parent().removeChildNode(node)
        # Users should see the results. A layer tree view that laid the group out while it was empty (QGIS selects
        # each added layer, which lays the tree out) shows it collapsed, and setExpanded(True) on a node already
        # expanded tells no view: collapse and expand, so that every view expands it with its layers inside.
        group.setExpanded(False)
        group.setExpanded(True)


class SegmentAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    QUERY = "QUERY"
    EXTENT = "EXTENT"
    SAM_MODEL = "SAM_MODEL"
    MAX_REASONING_TOKENS = "MAX_REASONING_TOKENS"
    BACKEND_URL = "BACKEND_URL"
    MAX_IMAGE_SIZE = "MAX_IMAGE_SIZE"
    CONSTRAIN_ANSWER = "CONSTRAIN_ANSWER"
    OUTPUT = "OUTPUT"
    OUTPUT_POINTS = "OUTPUT_POINTS"
    OUTPUT_BOXES = "OUTPUT_BOXES"
    REASONING = "REASONING"
    # Each output once: its parameter, its key in layers.layer_names, label, source type, geometry, style, fields.
    # The masks are required; the prompt points and boxes are optional, created unless the user skips them.
    OUTPUTS = (
        (OUTPUT, "masks", tr_noop("Masks"), QgsProcessing.SourceType.TypeVectorPolygon,
         QgsWkbTypes.Type.MultiPolygon, MASKS_STYLE, mask_fields),
        (OUTPUT_POINTS, "points", tr_noop("Prompt points"), QgsProcessing.SourceType.TypeVectorPoint,
         QgsWkbTypes.Type.Point, POINTS_STYLE, point_fields),
        (OUTPUT_BOXES, "boxes", tr_noop("Prompt boxes"), QgsProcessing.SourceType.TypeVectorPolygon,
         QgsWkbTypes.Type.Polygon, BOXES_STYLE, box_fields),
    )  # fmt: skip

    # Post-processors must outlive processAlgorithm (QGIS calls them after it returns, on the main thread).
    _post_processors: list = []

    def __init__(self):
        super().__init__()
        self._source: RasterSource | None = None
        self._area = None

    def createInstance(self):
        return SegmentAlgorithm()

    def name(self) -> str:
        return "segment"

    def displayName(self) -> str:  # noqa: N802
        return tr("Reasoning segmentation")

    def group(self) -> str:
        return tr("Segmentation")

    def groupId(self) -> str:  # noqa: N802
        return "segmentation"

    def tags(self) -> list[str]:
        return ["think2seg", "sam2", "segment", "mask", "reasoning", "vlm", "ai", "polygons"]

    def icon(self) -> QIcon:
        return QIcon(icon_path("think2seg.svg"))

    def helpUrl(self) -> str:  # noqa: N802
        """The README's section on this algorithm, on the repository's page (empty in an unpackaged checkout)."""
        repository = plugin_metadata("repository")
        return f"{repository.rstrip('/')}#{README_SECTION}" if repository else ""

    def shortHelpString(self) -> str:  # noqa: N802
        # HTML, as QGIS shows it in the dialog's help pane: no Markdown, nothing a QGIS user cannot act on.
        return tr(
            "<p>Finds what a query describes in a raster (for example <i>the wetlands that hold water all "
            "year</i>) and returns the masks as polygons, with the prompt points and boxes the model chose and its "
            "reasoning.</p>"
            "<p>The area (the whole layer by default) is sent to the Think2Seg backend set in the Think2Seg panel "
            "(<b>Raster &gt; Think2Seg</b>), with the panel's token, or to the one the <b>Backend URL</b> advanced "
            "parameter names. Areas larger than the image size bound are read at full resolution and tiled by "
            "the backend. <b>Strict answer format</b> holds the model's answer to its expected shape, as the "
            "panel's box of that name does.</p>"
            "<p>Outputs are in the raster's CRS. Every feature carries the query, its number in the answer "
            "(<i>instance</i>), its area (<i>area_m2</i>, square metres, geodesic for longitude/latitude), the "
            "model names, the SAM2 size used, the source layer and the time: the same layers and attributes as "
            "the panel's.</p>"
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        def add(parameter, help_text: str, advanced: bool = False):
            parameter.setHelp(help_text)
            if advanced:
                parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
            self.addParameter(parameter)

        def integer(name: str, label: str, minimum: int, maximum: int, default: int | None = None):
            """A whole number; without a default it is optional (empty: the panel's setting)."""
            return QgsProcessingParameterNumber(
                name,
                label,
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=default,
                optional=default is None,
                minValue=minimum,
                maxValue=maximum,
            )

        add(
            QgsProcessingParameterRasterLayer(self.INPUT, tr("Raster layer"), defaultValue=default_raster_id()),
            tr("The raster to read."),
        )
        add(
            QgsProcessingParameterString(self.QUERY, tr("Query (what to find)"), multiLine=False),
            tr("What to find, in words: an object, or a description that needs reasoning."),
        )
        add(
            QgsProcessingParameterExtent(self.EXTENT, tr("Area to read (default: the whole layer)"), optional=True),
            tr("Only this part of the raster is read; empty: the whole layer."),
        )
        add(
            QgsProcessingParameterEnum(
                self.SAM_MODEL,
                tr("SAM2 size"),
                # The backend's own size last, so that 0-3 keep meaning tiny..large in scripts and models.
                options=[tr(SAM_LABELS[size]) for size in SAM_SIZES] + [tr("As the backend started (default)")],
                defaultValue=len(SAM_SIZES),
            ),
            tr("The SAM2.1 model that draws the masks: larger is finer and needs more memory."),
        )
        add(
            integer(self.MAX_REASONING_TOKENS, tr("Reasoning budget (tokens)"), 16, 8192, DEFAULT_REASONING_TOKENS),
            tr("How long the model may reason before it answers."),
            advanced=True,
        )
        add(
            # Optional: models saved before it existed stay valid (a missing value is the default, off).
            QgsProcessingParameterBoolean(
                self.CONSTRAIN_ANSWER, tr(STRICT_ANSWER_LABEL), defaultValue=False, optional=True
            ),
            tr(STRICT_ANSWER_HELP),
            advanced=True,
        )
        add(
            QgsProcessingParameterString(self.BACKEND_URL, tr("Backend URL"), optional=True),
            tr("The Think2Seg backend to use, e.g. http://127.0.0.1:8765; empty: the panel's setting."),
            advanced=True,
        )
        add(
            integer(self.MAX_IMAGE_SIZE, tr("Image size bound (pixels, long side)"), 256, 16384),
            tr(
                "The largest image the model reads at once; larger areas are tiled by the backend. Empty: the "
                "panel's “Image size at most”."
            ),
            advanced=True,
        )
        for key, _, label, source_type, *_ in self.OUTPUTS:
            # The prompts are optional (a script or model may leave them out) but created by default in the
            # dialog: a user expects the points and boxes beside the masks, as the panel adds them.
            self.addParameter(
                QgsProcessingParameterFeatureSink(
                    key, tr(label), source_type, optional=key != self.OUTPUT, createByDefault=True
                )
            )
        self.addOutput(QgsProcessingOutputString(self.REASONING, tr("Reasoning")))

    def prepareAlgorithm(self, parameters, context, feedback) -> bool:  # noqa: N802
        # Main thread: read what the export needs from the layer (a clone for drawing non-file layers).
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(tr("Choose a raster layer to segment."))
        try:
            self._source = RasterSource.from_layer(layer)
        except Think2SegError as error:
            raise QgsProcessingException(error.message) from None
        if parameters.get(self.EXTENT) not in (None, ""):
            self._area = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
        else:
            self._area = self._source.extent
        return True

    def _request(self, parameters, context, query: str, sam_size: str) -> SegmentationRequest:
        backend = load_backend_settings()
        run = load_run_settings()
        url = self.parameterAsString(parameters, self.BACKEND_URL, context).strip().rstrip("/")
        max_size = (
            self.parameterAsInt(parameters, self.MAX_IMAGE_SIZE, context)
            if parameters.get(self.MAX_IMAGE_SIZE) not in (None, "")
            else (run.export_max_size or DEFAULT_EXPORT_MAX_SIZE)
        )
        return SegmentationRequest(
            query=query,
            source=self._source,
            area=self._area,
            options=SegmentationOptions(
                sam_size=sam_size,
                max_reasoning_tokens=self.parameterAsInt(parameters, self.MAX_REASONING_TOKENS, context),
                constrain_answer=self.parameterAsBoolean(parameters, self.CONSTRAIN_ANSWER, context),
            ),
            url=url or backend.effective_url(),
            token=backend_token(backend),  # the panel's credential, by the panel's function
            connect_timeout=backend.connect_timeout,
            request_timeout=backend.request_timeout,
            max_size=max_size,
            tiled_max_size=run.tiled_max_size,
        )

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        source = self._source
        query = " ".join(self.parameterAsString(parameters, self.QUERY, context).split())
        if not query:
            raise QgsProcessingException(tr("Type a query: what should be found in the raster?"))
        choice = self.parameterAsEnum(parameters, self.SAM_MODEL, context)
        sam_size = SAM_SIZES[choice] if choice < len(SAM_SIZES) else SAM_SIZE_BACKEND
        request = self._request(parameters, context, query, sam_size)
        feedback.pushInfo(
            tr("Backend: {url}; image size bound: {size} px").format(url=request.url, size=request.max_size)
        )

        def progress(fraction: float, message: str) -> None:
            feedback.setProgress(100 * max(0.0, min(1.0, fraction)))
            if message:
                feedback.setProgressText(message)

        work_dir = tempfile.mkdtemp(prefix="think2seg_")
        try:
            outcome = run_request(request, work_dir, progress, feedback.isCanceled)
        except Think2SegError as error:
            if error.code == CANCELLED:
                feedback.reportError(error.message)
                return {}
            if error.code in CONNECTION_CODES:  # worded for Processing: no panel may be open
                raise QgsProcessingException(
                    backend_sentence(error.code, error.message, request.url, where=IN_PROCESSING)
                ) from None
            raise QgsProcessingException(error.message) from None
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        answer = outcome.answer or {}
        if outcome.tiled:
            feedback.pushInfo(tr("The backend read the area in tiles (larger than the image size bound)."))

        reasoning = str(answer.get("reasoning") or "").strip()
        if reasoning:
            feedback.pushInfo(tr("Reasoning: {text}").format(text=reasoning))
        result_context = ResultContext(query=query, source_layer=source.name, crs=source.crs, sam_size=sam_size)
        if answer_is_empty(answer):
            feedback.pushWarning(empty_sentence(answer, query, source.name))
            masks = []
        else:
            masks = mask_features(answer, result_context)
            feedback.pushInfo(found_sentence(masks))
        note = sam_size_note(answer, sam_size)
        if note:
            feedback.pushInfo(note)
        feedback.pushInfo(tr("SAM2 size used: {size}").format(size=sam_size_used(answer, sam_size)))
        generation = (answer.get("models") or {}).get("generation") or {}
        if generation.get("constrain_answer"):
            feedback.pushInfo(tr("Strict answer format: the backend held the answer to its expected shape."))
        keep = kept_instances(masks)
        names = layer_names(query)
        group = group_name_for(query)
        outputs = {self.REASONING: reasoning}
        features_of = {  # built only for the outputs asked for
            self.OUTPUT: lambda: masks,
            self.OUTPUT_POINTS: lambda: point_features(answer, result_context, keep),
            self.OUTPUT_BOXES: lambda: box_features(answer, result_context, keep),
        }
        for key, name, _, _, wkb, style, fields in self.OUTPUTS:
            sink, dest_id = self.parameterAsSink(parameters, key, context, fields(), wkb, source.crs)
            if sink is None:
                if key == self.OUTPUT:
                    raise QgsProcessingException(self.invalidSinkError(parameters, key))
                continue
            sink.addFeatures(features_of[key](), QgsFeatureSink.Flag.FastInsert)
            outputs[key] = dest_id
            if context.willLoadLayerOnCompletion(dest_id):
                details = context.layerToLoadOnCompletionDetails(dest_id)
                details.name = names[name]
                details.forceName = True
                post = StyleAndGroup(style, group)
                SegmentAlgorithm._post_processors.append(post)
                details.setPostProcessor(post)
        feedback.setProgress(100)
        return outputs
