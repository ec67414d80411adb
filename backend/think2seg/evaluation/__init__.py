"""Evaluation on EarthReason-style data: read the split, run the pipeline in batches, score, report.

`metrics` holds the two scoring protocols (they are not comparable: always report which one), `earthreason`
reads the `{split}/images|labels|QAs` layout, `runner` runs and resumes, `report` draws the cases and
writes one HTML page, `dataset_builder` turns a user's own images, masks and questions into the layout.
"""
