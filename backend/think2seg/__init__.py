"""Think2Seg: reasoning segmentation of georeferenced rasters.

A vision-language model (the reasoner) reads a tile and a query and writes prompts (a box and positive
points per target); a frozen SAM2 (the segmenter) turns them into masks; georef turns pixels into the
raster's CRS. `Pipeline` ties them together; the CLI, the HTTP service, the evaluator and the trainer are
thin shells over it.
"""

__version__ = "0.1.0"
