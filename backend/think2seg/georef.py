"""From a GDAL raster to the RGB the model sees, and from model pixels back to the raster's CRS.

Frames, outermost first:
- the raster: its pixel grid and its affine geotransform (rotation included) into its CRS;
- the tile: the array actually read (a window of the raster, possibly resampled to a bounded size), with
  its own affine `transform` mapping tile pixel (col, row) -> CRS (x, y); pixel coordinates are continuous,
  (0, 0) is the top-left corner of the top-left pixel;
- the model frame: 840 x 840; a model coordinate (u, v) is at tile pixel (u * W / 840, v * H / 840).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window, WindowError

from .errors import BadInput
from .options import DEFAULT_MAX_READ

STRETCH_PERCENTILES = (2.0, 98.0)
STRETCH_SAMPLE = 1 << 18
#: GDAL decodes the compressed blocks of one read on this many threads (GTiff/COG; a 1024 x 1024 window of
#: 512-pixel deflate blocks is 4 blocks: 6.6 -> 4.0 ms on this project's 2 cores). GDAL_NUM_THREADS, when the
#: user sets it, wins.
READ_THREADS = min(4, os.cpu_count() or 1)


@dataclass
class RasterTile:
    """The pixels read from a raster and the georeferencing of exactly that array."""

    rgb: np.ndarray  # uint8 (H, W, 3)
    transform: Affine  # tile pixel -> CRS (identity for pixel-only images)
    crs: CRS | None
    valid: np.ndarray | None = None  # bool (H, W): False where the raster has no data
    source: str = ""
    #: tile pixel -> pixel of the source raster (a window offset and a resampling scale)
    to_source_pixel: Affine = field(default_factory=Affine.identity)
    read: dict = field(default_factory=dict)  # mode, sizes, window: how the tile was read

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[:2]

    def pixel_to_crs(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) tile pixel coordinates -> (N, 2) CRS coordinates (through the affine, rotation included)."""
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        a = self.transform
        return np.column_stack([a.a * xy[:, 0] + a.b * xy[:, 1] + a.c, a.d * xy[:, 0] + a.e * xy[:, 1] + a.f])

    @property
    def pixel_area(self) -> float:
        """Area of one tile pixel in CRS units squared."""
        a = self.transform
        return abs(a.a * a.e - a.b * a.d)


#: GDAL drivers of self-contained raster files, the only ones an upload may be opened with: none of these
#: formats can name another file or a URL (VRT, GDAL_WMS, MBTiles... can, so they are refused).
UPLOAD_DRIVERS = ("GTiff", "PNG", "JPEG", "JP2OpenJPEG", "WEBP", "GIF", "BMP")
#: GDAL settings while opening uploads: no sibling-file lookups, no .aux.xml written beside the upload, and
#: /vsicurl/ & co. refuse every URL (no extension matches), so nothing can make the backend reach the network.
UPLOAD_GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".think2seg-no-network",
    "GDAL_HTTP_MAX_RETRY": "0",
}
_upload_drivers: ContextVar[tuple[str, ...] | None] = ContextVar("think2seg_upload_drivers", default=None)


@contextmanager
def untrusted_rasters() -> Iterator[None]:
    """Within this block (on this thread) `open_raster` opens only plain local files of `UPLOAD_DRIVERS`,
    under `UPLOAD_GDAL_ENV`. The service wraps every use of an upload in it; the CLI and batch, which open
    the user's own files, do not (they keep VRTs, URLs and every driver)."""
    token = _upload_drivers.set(UPLOAD_DRIVERS)
    try:
        with rasterio.Env(**UPLOAD_GDAL_ENV):
            yield
    finally:
        _upload_drivers.reset(token)


def open_raster(path: str | os.PathLike):
    """Open with rasterio; bad files become a BadInput with a sentence."""
    p = os.fspath(path)
    drivers = _upload_drivers.get()
    if drivers is not None:
        return _open_upload(p, drivers)
    if not os.path.exists(p) and "://" not in p and not p.startswith("/vsi"):
        raise BadInput(f"{p} does not exist.", code="not_found")
    try:
        with warnings.catch_warnings(), _decode_threads():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(p)
    except RasterioIOError as e:
        raise BadInput(f"{p} is not a raster GDAL can read ({e}).", code="not_a_raster") from e
    return _with_bands(ds, p)


def _decode_threads():
    """GDAL's block-decoding threads for a dataset opened within (GTiff reads the setting when it opens)."""
    if "GDAL_NUM_THREADS" in os.environ or READ_THREADS < 2:
        return nullcontext()
    return rasterio.Env(GDAL_NUM_THREADS=str(READ_THREADS))


def _open_upload(p: str, drivers: tuple[str, ...]):
    if p.startswith("/vsi") or "://" in p or not os.path.isfile(p) or os.path.islink(p):
        raise BadInput(f"{p} is not an uploaded file.", code="not_a_raster")
    try:
        with warnings.catch_warnings(), _decode_threads():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            # DatasetReader takes GDAL's allow-list of drivers (rasterio.open takes one name only).
            ds = DatasetReader(p, driver=list(drivers))
    except RasterioIOError as e:
        raise BadInput(
            f"{p} is not a raster the backend accepts: send a GeoTIFF (or COG), PNG, JPEG, JPEG2000, "
            "WebP, GIF or BMP file. Formats that point to other files (VRT...) are refused.",
            code="not_a_raster",
        ) from e
    return _with_bands(ds, p)


def _with_bands(ds, p: str):
    if ds.count == 0:
        ds.close()
        raise BadInput(f"{p} has no raster bands.", code="no_bands")
    return ds


def choose_bands(ds, bands: list[int] | None = None) -> list[int]:
    """1-based band indexes for R, G, B: the user's choice, else colour interpretation, else bands 1-3."""
    n = ds.count
    if bands:
        bands = [int(b) for b in bands]
        if len(bands) == 1:
            bands = bands * 3
        if len(bands) != 3 or any(b < 1 or b > n for b in bands):
            raise BadInput(
                f"Bands {bands} do not fit this raster: give one or three band numbers between 1 and {n}.",
                code="bad_bands",
            )
        return bands
    if n < 3:
        return [1, 1, 1]
    interp = list(ds.colorinterp)
    wanted = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    if all(c in interp for c in wanted):
        return [interp.index(c) + 1 for c in wanted]
    return [1, 2, 3]


def to_uint8(data: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """(3, H, W) any dtype -> (H, W, 3) uint8; 8-bit passes through, the rest is stretched per band by
    percentiles computed over valid pixels only (nodata and NaN ignored)."""
    if data.dtype == np.uint8:
        out = np.ascontiguousarray(np.transpose(data, (1, 2, 0)))
        if valid is not None:
            out[~valid] = 0
        return out
    out = np.zeros((*data.shape[1:], data.shape[0]), dtype=np.uint8)
    # 8/16-bit integers go through a lookup table of every possible value: the same float32 arithmetic as the
    # general path, done on 65,536 values instead of every pixel, and their percentiles come from a histogram.
    small_int = data.dtype.kind in "ui" and data.dtype.itemsize <= 2
    if small_int:
        info = np.iinfo(data.dtype)
        unsigned = np.dtype(f"u{data.dtype.itemsize}")
    for i, band in enumerate(data):
        if small_int:
            # value - min as an unsigned index (signed: flipping the sign bit of the unsigned view, no wider copy)
            index = band if info.min == 0 else band.view(unsigned) ^ unsigned.type(-info.min)
            values = index.ravel() if valid is None else index[valid]
        else:
            band = band.astype(np.float32, copy=False)
            ok = np.isfinite(band)
            if valid is not None:
                ok &= valid
            values = band[ok]
        if values.size == 0:
            continue
        lo, hi = stretch_bounds(values)
        if small_int:
            lo, hi = lo + info.min, hi + info.min
        if hi <= lo:
            hi = lo + 1.0
        scale = np.float32(255.0 / (hi - lo))
        if small_int:
            lut = (np.arange(info.min, info.max + 1, dtype=np.float32) - np.float32(lo)) * scale
            np.clip(lut, 0, 255, out=lut)
            out[..., i] = np.take(lut.astype(np.uint8), index)  # take: ~2x faster than lut[index]
            continue
        scaled = (band - np.float32(lo)) * scale
        np.clip(scaled, 0, 255, out=scaled)
        scaled[~np.isfinite(scaled)] = 0
        out[..., i] = scaled.astype(np.uint8)
    if valid is not None:
        out[~valid] = 0
    return out


def stretch_bounds(values: np.ndarray) -> tuple[float, float]:
    """The `STRETCH_PERCENTILES` of a regular sample of at most ~`STRETCH_SAMPLE` of `values` (1-D), linear
    between order statistics as numpy's default. Unsigned integers of at most 16 bits find their order
    statistics in a histogram of every possible value (0.7 ms a band against 2.3-4 ms for numpy's partition);
    other values partition. Both give the same order statistics for the same values, and the interpolation
    is this function's own, so a band gives the same bounds as integers and as floats."""
    sample = values[:: max(1, values.size // STRETCH_SAMPLE)]
    n = sample.size
    positions = [q / 100.0 * (n - 1) for q in STRETCH_PERCENTILES]
    ranks = sorted({min(int(p) + k, n - 1) for p in positions for k in (0, 1)})
    if sample.dtype.kind == "u" and sample.dtype.itemsize <= 2:
        below = np.cumsum(np.bincount(sample, minlength=1 << (8 * sample.dtype.itemsize)))
        stats = np.searchsorted(below, np.asarray(ranks) + 1)  # the smallest value with more than `rank` below it
    else:
        stats = np.partition(sample, ranks)[ranks]
    at = dict(zip(ranks, (float(v) for v in stats)))
    lo, hi = (at[int(p)] + (at[min(int(p) + 1, n - 1)] - at[int(p)]) * (p - int(p)) for p in positions)
    return lo, hi


def all_valid(ds, band_idx: list[int]) -> bool:
    """True when GDAL says every pixel of these bands is valid (no nodata, no mask, no alpha)."""
    from rasterio.enums import MaskFlags

    return all(ds.mask_flag_enums[b - 1] == [MaskFlags.all_valid] for b in band_idx)


def read_tile(
    path_or_ds,
    bands: list[int] | None = None,
    window: Window | None = None,
    max_size: int | None = DEFAULT_MAX_READ,
    out_shape: tuple[int, int] | None = None,
) -> RasterTile:
    """Read a window (default: the whole raster) as RGB uint8, resampled so its long side <= max_size."""
    own = not hasattr(path_or_ds, "read")
    ds = open_raster(path_or_ds) if own else path_or_ds
    try:
        band_idx = choose_bands(ds, bands)
        full = Window(0, 0, ds.width, ds.height)
        try:
            win = full if window is None else window.intersection(full)
        except WindowError as e:
            raise BadInput(
                "The area to read does not overlap the raster (check its CRS and extent).", code="empty_window"
            ) from e
        win_w, win_h = int(round(win.width)), int(round(win.height))
        if win_w < 1 or win_h < 1:
            raise BadInput("The area to read does not overlap the raster.", code="empty_window")
        if out_shape is None:
            scale = 1.0
            if max_size and max(win_w, win_h) > max_size:
                scale = max_size / max(win_w, win_h)
            out_shape = (max(1, round(win_h * scale)), max(1, round(win_w * scale)))
        out_h, out_w = out_shape
        resampled = (out_h, out_w) != (win_h, win_w)
        resampling = Resampling.average if resampled else Resampling.nearest
        eight_bit = all(ds.dtypes[b - 1] == "uint8" for b in band_idx)
        try:
            if eight_bit:
                # straight into the (H, W, 3) layout the models take: no band-to-pixel transpose afterwards
                rgb = np.empty((out_h, out_w, 3), dtype=np.uint8)
                ds.read(band_idx, window=win, out=rgb.transpose(2, 0, 1), resampling=resampling)
            else:
                data = ds.read(band_idx, window=win, out_shape=(3, out_h, out_w), resampling=resampling)
            if all_valid(ds, band_idx):
                valid = None
            else:
                masks = ds.read_masks(band_idx, window=win, out_shape=(3, out_h, out_w), resampling=Resampling.nearest)
                valid = (masks > 0).all(axis=0)
        except RasterioIOError as e:
            raise BadInput(f"Reading {ds.name} failed: the file looks corrupt ({e}).", code="read_failed") from e
        if not eight_bit and np.issubdtype(data.dtype, np.floating):
            finite = np.isfinite(data).all(axis=0)
            valid = finite if valid is None else valid & finite
        if valid is not None and valid.all():
            valid = None
        if eight_bit:
            if valid is not None:
                rgb[~valid] = 0
        else:
            rgb = to_uint8(data, valid)
        win_transform = ds.window_transform(win)
        transform = win_transform @ Affine.scale(win_w / out_w, win_h / out_h)
        crs = ds.crs if ds.crs else None
        return RasterTile(
            rgb=rgb,
            transform=transform,
            crs=crs,
            valid=valid,
            source=str(ds.name),
            to_source_pixel=Affine.translation(win.col_off, win.row_off) @ Affine.scale(win_w / out_w, win_h / out_h),
            read={
                "mode": "resampled" if resampled else ("window" if win != full else "full"),
                "width": ds.width,
                "height": ds.height,
                "read_width": out_w,
                "read_height": out_h,
                "window": [int(win.col_off), int(win.row_off), win_w, win_h],
                "bands": band_idx,
            },
        )
    finally:
        if own:
            ds.close()


def tile_from_array(rgb: np.ndarray, transform: Affine | None = None, crs: CRS | str | None = None) -> RasterTile:
    """A tile from an in-memory image (pixel-only work when no transform/CRS is given)."""
    arr = np.asarray(rgb)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise BadInput("An image array must be (H, W) or (H, W, 3+).", code="bad_image")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = to_uint8(np.transpose(arr, (2, 0, 1)), None)
    if isinstance(crs, str):
        crs = CRS.from_user_input(crs)
    h, w = arr.shape[:2]
    return RasterTile(
        rgb=arr,
        transform=transform or Affine.identity(),
        crs=crs,
        read={"mode": "array", "width": w, "height": h, "read_width": w, "read_height": h},
    )


def box_ring(box: tuple[float, float, float, float]) -> np.ndarray:
    """The closed ring of a pixel box, so a rotated geotransform gives a rotated box."""
    x1, y1, x2, y2 = box
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]], dtype=float)


def area_unit(crs: CRS | None) -> str:
    if crs is None:
        return "pixels"
    return "m2"


def linear_factor(crs: CRS | None) -> float | None:
    """Metres per CRS unit for projected CRSs; None for geographic ones (areas need a geodesic)."""
    if crs is None or crs.is_geographic:
        return None
    try:
        _, factor = crs.linear_units_factor
        return float(factor)
    except Exception:
        return 1.0


def geodesic_area(geom, crs: CRS) -> float:
    """Area in m2 of a shapely geometry in a geographic CRS (on its ellipsoid, WGS84 if unknown)."""
    from pyproj import CRS as ProjCRS
    from pyproj import Geod

    try:
        geod = ProjCRS.from_wkt(crs.to_wkt()).get_geod() or Geod(ellps="WGS84")
    except Exception:
        geod = Geod(ellps="WGS84")
    return abs(geod.geometry_area_perimeter(geom)[0])


def area_m2(geom, crs: CRS | None, pixel_area: float = 1.0) -> float:
    """Area in square metres (projected or geographic CRS) or in pixels (no CRS)."""
    if crs is None:
        return float(geom.area / pixel_area) if pixel_area else float(geom.area)
    f = linear_factor(crs)
    if f is None:
        return float(geodesic_area(geom, crs))
    return float(geom.area * f * f)


def pixel_geometry_area(geom_px, transform: Affine, crs: CRS | None) -> float:
    """Area of a geometry given in a raster's pixel frame (`transform`: raster pixel -> CRS), in square metres,
    or in raster pixels when there is no CRS. Only a geographic CRS needs the geometry in the CRS."""
    if crs is None:
        return float(geom_px.area)
    f = linear_factor(crs)
    if f is None:
        from shapely.affinity import affine_transform

        t = transform
        return float(geodesic_area(affine_transform(geom_px, [t.a, t.b, t.d, t.e, t.c, t.f]), crs))
    return float(geom_px.area * abs(transform.a * transform.e - transform.b * transform.d) * f * f)


def crs_epsg(crs: CRS | None) -> int | None:
    if crs is None:
        return None
    try:
        return crs.to_epsg()
    except Exception:
        return None


def raster_transform(tile: RasterTile) -> Affine:
    """Source raster pixel -> CRS (the tile's own transform without its window offset and resampling)."""
    return tile.transform @ ~tile.to_source_pixel
