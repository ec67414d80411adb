"""The one writer of result layers (think2seg.result): GeoPackage, GeoJSON or GeoParquet.

- OUT.gpkg: the three layers `mask`, `prompt_points`, `prompt_boxes` in one GeoPackage; the `mask` layer's
  description holds the queries and the reasoning.
- OUT.geojson: `mask` in OUT.geojson, the prompts in OUT.points.geojson and OUT.boxes.geojson.
- OUT.parquet: GeoParquet 1.1 (WKB), `mask` in OUT.parquet, the prompts in OUT.prompt_points.parquet and
  OUT.prompt_boxes.parquet.

`LayerWriter` takes rows layer by layer (a batch adds them raster by raster, so memory follows one raster)
and writes to temporary names in the output's folder that `close()` renames into place: an output is
never half-written, and a failed run leaves the previous output as it was. `write_results` is the short
form for a list of results. `segment`, `batch` and Ray (through `batch`) write with it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import shapely
from pyogrio import set_gdal_config_options

from .errors import BadInput, DiskFull
from .result import GEOMETRY_TYPES, LAYERS, Result, Row, columns

SUFFIXES = (".gpkg", ".geojson", ".json", ".parquet")

# A GeoPackage is SQLite. Every output is written under a temporary name, renamed into place only when
# complete, and deleted when anything fails (`LayerWriter.abort`), so SQLite's own crash safety buys nothing
# here: without per-statement fsync writing the layers takes a third of the time, and without a rollback
# journal a one-tile GeoPackage (three layers) ~28 % less again (15.9-21.7 -> 11.4-15.3 ms, interleaved).
set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": "OFF", "OGR_SQLITE_JOURNAL": "OFF"})


def check_output(path: str | os.PathLike, suffixes: Sequence[str] = SUFFIXES) -> Path:
    """The output path if its suffix names a format this writer knows, else a BadInput saying which do."""
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        names = {".gpkg": ".gpkg", ".geojson": ".geojson", ".json": ".geojson", ".parquet": ".parquet"}
        known = " or ".join(dict.fromkeys(names[s] for s in suffixes))
        raise BadInput(f"Cannot write {p.name}: the output must end in {known}.", code="bad_output")
    check_writable(p)
    return p


def check_writable(path: Path) -> None:
    """Fail now (before any model loads) if `path` cannot be written: not a folder itself, and its nearest
    existing ancestor a folder that takes new files (the writer creates missing folders below it)."""
    import tempfile

    if path.is_dir():
        raise BadInput(f"Cannot write {path}: it is a folder.", code="bad_output")
    folder = path.expanduser().absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise BadInput(f"Cannot write {path}: {folder} is not a folder.", code="bad_output")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".think2seg-check-"):
            pass
    except OSError as e:
        raise BadInput(
            f"Cannot write {path}: {folder} does not take new files ({e.strerror}).", code="bad_output"
        ) from e


def output_files(path: str | os.PathLike) -> dict[str, Path]:
    """The file each layer goes to."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".gpkg":
        return {name: p for name in LAYERS}
    if suffix == ".parquet":
        return {name: p if name == "mask" else p.with_name(f"{p.stem}.{name}.parquet") for name in LAYERS}
    return {name: p if name == "mask" else p.with_suffix(f".{name.split('_')[-1]}.geojson") for name in LAYERS}


class LayerWriter:
    """Writes the result layers to `output` (.gpkg, .geojson or .parquet) in one CRS; see the module
    docstring. `georeferenced` picks `area_m2` or `area_px`; `tiled` adds the tiled columns."""

    def __init__(
        self, output: str | os.PathLike, crs_wkt: str | None, tiled: bool = False, description: str | None = None
    ):
        self.output = check_output(output)
        suffix = self.output.suffix.lower()
        self.driver = {".gpkg": "GPKG", ".parquet": "Parquet"}.get(suffix, "GeoJSON")
        self.crs_wkt = crs_wkt
        self.description = description
        self.schemas = {name: columns(name, crs_wkt is not None, tiled) for name in LAYERS}
        self.targets = output_files(self.output)
        self.tmp = {name: t.with_name(f".{t.name}.tmp{t.suffix}") for name, t in self.targets.items()}
        self.output.parent.mkdir(parents=True, exist_ok=True)
        for t in set(self.tmp.values()):
            if t.exists():
                t.unlink()
        self._written: set[str] = set()
        self._counts: dict[str, int] = {name: 0 for name in LAYERS}  # features written per layer
        self._pending: dict[str, list[Row]] = {name: [] for name in LAYERS}  # GeoJSON: written whole at close
        self._parquet: dict[str, object] = {}

    def _columns(self, name: str, rows: Sequence[Row]) -> tuple[list[str], list[np.ndarray]]:
        schema = self.schemas[name]
        cols = []
        for key, kind in schema.items():
            if kind is str:
                cols.append(np.array([str(a.get(key, "")) for _, a in rows], dtype=object))
            elif kind is int:
                cols.append(np.array([int(a.get(key, 0)) for _, a in rows], dtype=np.int64))
            else:
                cols.append(np.array([float(a.get(key, 0.0)) for _, a in rows], dtype=np.float64))
        return list(schema), cols

    def write(self, name: str, rows: Sequence[Row]) -> None:
        """Add rows to one layer (creating it on the first call)."""
        if self.driver == "GeoJSON":
            self._pending[name].extend(rows)
            return
        self._counts[name] += len(rows)
        if not rows and name in self._written:
            return
        names, cols = self._columns(name, rows)
        wkb = np.array([shapely.to_wkb(g) for g, _ in rows], dtype=object)
        if self.driver == "Parquet":
            self._write_parquet(name, names, cols, wkb)
        else:
            self._write_ogr(name, names, cols, wkb)
        self._written.add(name)

    def write_rows(self, rows: dict[str, Sequence[Row]]) -> None:
        for name in LAYERS:
            self.write(name, rows.get(name, []))

    def _write_ogr(self, name, names, cols, wkb) -> None:
        from pyogrio.raw import write as ogr_write

        append = name in self._written
        options = None
        if name == "mask" and self.description and self.driver == "GPKG" and not append:
            options = {"DESCRIPTION": self.description[:4000]}
        with warnings.catch_warnings():
            # a raster without a CRS gives pixel coordinates on purpose (area_px): pyogrio's warning that
            # 'crs' was not provided would only alarm the user
            warnings.filterwarnings("ignore", message="'crs' was not provided", category=UserWarning)
            ogr_write(
                str(self.tmp[name]),
                wkb,
                cols,
                names,
                layer=name,
                driver=self.driver,
                crs=self.crs_wkt,
                geometry_type=GEOMETRY_TYPES[name],
                append=append,
                layer_options=options,
            )

    def _write_parquet(self, name, names, cols, wkb) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = self._parquet.get(name)
        if writer is None:
            writer = pq.ParquetWriter(str(self.tmp[name]), self._arrow_schema(name))
            self._parquet[name] = writer
        arrays = [pa.array(c.tolist(), type=writer.schema.field(n).type) for n, c in zip(names, cols)]
        arrays.append(pa.array(list(wkb), type=pa.binary()))
        writer.write_table(pa.Table.from_arrays(arrays, schema=writer.schema))

    def _arrow_schema(self, name: str):
        import pyarrow as pa

        types = {str: pa.string(), int: pa.int64(), float: pa.float64()}
        fields = [pa.field(n, types[t]) for n, t in self.schemas[name].items()] + [pa.field("geometry", pa.binary())]
        column: dict = {"encoding": "WKB", "geometry_types": [GEOMETRY_TYPES[name]], "crs": None}
        if self.crs_wkt is not None:
            from pyproj import CRS as ProjCRS

            column["crs"] = ProjCRS.from_wkt(self.crs_wkt).to_json_dict()
        geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}
        return pa.schema(fields, metadata={b"geo": json.dumps(geo).encode()})

    def close(self) -> dict[str, str]:
        """Finish every layer (empty ones too) and rename the files into place; returns the file per layer."""
        if self.driver == "GeoJSON":  # one file per layer, written whole
            for name in LAYERS:
                rows = self._pending[name]
                names, cols = self._columns(name, rows)
                self._write_ogr(name, names, cols, np.array([shapely.to_wkb(g) for g, _ in rows], dtype=object))
                self._written.add(name)
                self._counts[name] = len(rows)
        for name in LAYERS:
            if name not in self._written:
                self.write(name, [])
        for w in self._parquet.values():
            w.close()
        self._check_complete()
        for name in LAYERS:
            tmp = self.tmp[name]
            if tmp.exists():
                os.replace(tmp, self.targets[name])
        return {name: str(t) for name, t in self.targets.items()}

    def _check_complete(self) -> None:
        """Each temporary file holds every feature written to it, or nothing replaces the earlier output.

        GDAL's GeoJSON writer keeps what it writes in a buffer and loses a failed flush on a full disk without a
        word: the files came out empty, and renaming them into place would have replaced the user's earlier
        output with nothing."""
        import pyogrio

        for name in LAYERS:
            tmp = self.tmp[name]
            try:
                if self.driver == "Parquet":
                    import pyarrow.parquet as pq

                    found = pq.ParquetFile(str(tmp)).metadata.num_rows
                else:
                    found = pyogrio.read_info(str(tmp), layer=name if self.driver == "GPKG" else None)["features"]
            except Exception:
                found = -1
            if found != self._counts[name]:
                free = _free_bytes(tmp.parent)
                where = f"{tmp.parent} has {free / 1e6:.1f} MB free" if free is not None else f"{tmp.parent}"
                raise DiskFull(
                    f"Could not write {self.targets[name].name}: the file came out incomplete ({where}); "
                    "the earlier output is kept. Free some space there or write elsewhere."
                )

    def abort(self) -> None:
        """Drop what was written: the temporary files go, the outputs stay as they were."""
        for w in self._parquet.values():
            w.close()
        for t in set(self.tmp.values()):
            if t.exists():
                t.unlink()


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def write_results(results: Sequence[Result], path: str | os.PathLike) -> dict[str, str]:
    """Write results (one-tile or tiled; all in one CRS) to OUT.gpkg, OUT.geojson or OUT.parquet.

    Returns the written file per layer."""
    path = check_output(path)
    crss = {r.crs.to_wkt() if r.crs else None for r in results}
    if len(crss) > 1:
        raise BadInput("These results are in different CRSs; write them to separate files.", code="mixed_crs")
    tiled = any(r.tiled for r in results)
    description = "\n\n".join(f"Query: {', '.join(r.queries)}\nReasoning: {r.reasoning}" for r in results[:20])
    writer = LayerWriter(path, crss.pop() if crss else None, tiled=tiled, description=description)
    try:
        for r in results:
            writer.write_rows(r.layer_rows())
        return writer.close()
    except BaseException:
        writer.abort()
        raise
