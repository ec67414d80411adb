"""Evaluation on EarthReason-style data and the reference's zero-shot referring benchmarks: read the split, run
the pipeline in batches, score, report.

`metrics` holds the two scoring protocols (they are not comparable: always report which one), `earthreason`
reads the `{split}/images|labels|QAs` layout, `benchmarks` reads RRSIS-D, RefSegRS and RISBench as the
reference's loaders do, `runner` runs and resumes, `distributed` spreads a run over Ray actors, `report` draws
the cases and writes one HTML page, `dataset_builder` turns a user's own images, masks and questions into the
layout.
"""
