"""First-use weight downloads report MB and % for the service's health answer (the QGIS panel shows them)."""

from __future__ import annotations

import io

from think2seg.weights import DOWNLOAD, _recording_tqdm


def test_byte_bars_add_up_while_a_download_runs():
    DOWNLOAD.start("reasoner R")
    try:
        bar_class = _recording_tqdm()
        first = bar_class(total=3_000_000, unit="B", file=io.StringIO())
        second = bar_class(total=1_000_000, unit="B", file=io.StringIO())
        files = bar_class(total=2, unit="it", file=io.StringIO())  # a file-count bar is not bytes: ignored
        first.update(1_500_000)
        second.update(500_000)
        files.update(1)
        report = DOWNLOAD.to_dict()
        assert report == {"what": "reasoner R", "done_mb": 2.0, "total_mb": 4.0, "fraction": 0.5}
    finally:
        DOWNLOAD.finish()
    assert DOWNLOAD.to_dict() is None  # nothing to report once the download is over
