"""What a TIFF declares, read from its IFDs with a bounded walk, before GDAL opens it.

GDAL decodes a whole block (tile or strip) to read any pixel of it, and walks every IFD of a file when it
opens it: a 400-byte TIFF declaring one 65536 x 65536 tile makes a read allocate 4-16 GiB, and a file of
400,000 IFDs keeps GDAL busy for seconds. `check_tiff` reads at most `max_ifds` IFD headers (a few bytes
each), so both are refused in microseconds, for every IFD (overviews and masks too).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import BadInput

# tag numbers (TIFF 6.0)
WIDTH, LENGTH, BITS, SAMPLES, ROWS_PER_STRIP, PLANAR, TILE_WIDTH, TILE_LENGTH = 256, 257, 258, 277, 278, 284, 322, 323
WANTED = {WIDTH, LENGTH, BITS, SAMPLES, ROWS_PER_STRIP, PLANAR, TILE_WIDTH, TILE_LENGTH}
TYPE_SIZES = {1: 1, 3: 2, 4: 4, 16: 8}  # BYTE, SHORT, LONG, LONG8: the integer types these tags use
TYPE_FORMATS = {1: "B", 3: "H", 4: "I", 16: "Q"}


@dataclass(frozen=True)
class Block:
    """One IFD's block: `width` x `height` pixels of `bands` samples of `sample_bytes` bytes."""

    width: int
    height: int
    bands: int
    sample_bytes: int

    @property
    def nbytes(self) -> int:
        return self.width * self.height * self.bands * self.sample_bytes


def refuse(message: str) -> BadInput:
    return BadInput(message, code="raster_too_large")


def tiff_blocks(data_at, size: int, max_ifds: int) -> list[Block] | None:
    """The block of each IFD of a TIFF or BigTIFF (None: not a TIFF). `data_at(offset, n)` reads n bytes.

    More than `max_ifds` IFDs, or an IFD chain that loops, is a BadInput."""
    head = data_at(0, 16)
    if head[:2] not in (b"II", b"MM") or len(head) < 8:  # shorter than a TIFF header ("MM" alone): not one
        return None
    end = "<" if head[:2] == b"II" else ">"
    magic = struct.unpack(end + "H", head[2:4])[0]
    if magic == 42:
        big, offset = False, struct.unpack(end + "I", head[4:8])[0]
    elif magic == 43 and len(head) >= 16:
        big, offset = True, struct.unpack(end + "Q", head[8:16])[0]
    else:
        return None
    count_fmt, entry_size, next_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
    inline = 8 if big else 4
    blocks, seen = [], set()
    while offset and offset < size:
        if offset in seen:
            raise BadInput("This TIFF's IFD chain loops back on itself: the file is damaged.", code="not_a_raster")
        if len(seen) >= max_ifds:
            raise refuse(
                f"This TIFF has more than {max_ifds} images (IFDs); this backend reads at most {max_ifds}: "
                "send the one image you want to segment (e.g. gdal_translate it to a new file)."
            )
        seen.add(offset)
        n_size = 8 if big else 2
        raw = data_at(offset, n_size)
        if len(raw) < n_size:
            break
        n = struct.unpack(end + count_fmt, raw)[0]
        n = min(n, (size - offset) // entry_size)  # a count past the file's end is a damaged file, read what is there
        entries = data_at(offset + n_size, n * entry_size + struct.calcsize(next_fmt))
        tags: dict[int, int] = {}
        for i in range(min(n, len(entries) // entry_size)):
            e = entries[i * entry_size : (i + 1) * entry_size]
            tag, typ = struct.unpack(end + "HH", e[:4])
            if tag not in WANTED or typ not in TYPE_SIZES:
                continue
            count = struct.unpack(end + ("Q" if big else "I"), e[4 : 12 if big else 8])[0]
            value = e[12:] if big else e[8:]
            if count * TYPE_SIZES[typ] > inline:  # stored elsewhere (BitsPerSample of many bands): the first one
                where = struct.unpack(end + ("Q" if big else "I"), value)[0]
                value = data_at(where, TYPE_SIZES[typ])
            if len(value) >= TYPE_SIZES[typ]:
                tags[tag] = struct.unpack(end + TYPE_FORMATS[typ], value[: TYPE_SIZES[typ]])[0]
        tail = entries[n * entry_size : n * entry_size + struct.calcsize(next_fmt)]
        offset = struct.unpack(end + next_fmt, tail)[0] if len(tail) == struct.calcsize(next_fmt) else 0
        width, length = tags.get(WIDTH, 0), tags.get(LENGTH, 0)
        bands = tags.get(SAMPLES, 1) if tags.get(PLANAR, 1) == 1 else 1  # planar 2: one band per block
        sample_bytes = max(1, (tags.get(BITS, 8) + 7) // 8)
        if TILE_WIDTH in tags or TILE_LENGTH in tags:
            bw, bh = tags.get(TILE_WIDTH, 0), tags.get(TILE_LENGTH, 0)
        else:
            bw, bh = width, min(length, tags.get(ROWS_PER_STRIP, length) or length)
        blocks.append(Block(bw, bh, bands, sample_bytes))
    return blocks


def check_tiff(path, max_block_pixels: int, max_block_bytes: int, max_ifds: int) -> None:
    """Refuse a TIFF whose IFDs are too many or one of whose blocks is over the limits (other files: no-op)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()

        def data_at(offset: int, n: int) -> bytes:
            f.seek(offset)
            return f.read(max(0, min(n, size - offset)))

        blocks = tiff_blocks(data_at, size, max_ifds) or []
    for b in blocks:
        check_block(b, max_block_pixels, max_block_bytes)


def check_block(b: Block, max_block_pixels: int, max_block_bytes: int) -> None:
    if b.width * b.height > max_block_pixels or b.nbytes > max_block_bytes:
        raise refuse(
            f"This raster declares blocks (tiles or strips) of {b.width} x {b.height} pixels x {b.bands} "
            f"band(s) x {b.sample_bytes} byte(s) = {b.nbytes / 2**20:,.0f} MiB, each decoded whole by any "
            f"read; this backend decodes at most {max_block_pixels:,} pixels and "
            f"{max_block_bytes / 2**20:,.0f} MiB a block: rewrite it with smaller tiles "
            "(e.g. gdal_translate -co TILED=YES -co BLOCKXSIZE=512 -co BLOCKYSIZE=512)."
        )
