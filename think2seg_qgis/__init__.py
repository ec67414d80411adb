"""Think2Seg for QGIS: reasoning segmentation of rasters through a local or remote Think2Seg backend."""


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    from .plugin import Think2SegPlugin

    return Think2SegPlugin(iface)
