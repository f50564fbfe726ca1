"""A tiny PNG bar chart, drawn in-process with the standard library only.

Digests carry "answered questions per day"; a few bars with their counts is all they
need, and it keeps image libraries out of the core.
"""

from __future__ import annotations

import struct
import zlib

# 3x5 pixel digits, rows top to bottom, 3 bits a row.
_DIGITS = {
    "0": (7, 5, 5, 5, 7),
    "1": (2, 6, 2, 2, 7),
    "2": (7, 1, 7, 4, 7),
    "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7),
    "6": (7, 4, 7, 5, 7),
    "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7),
    "9": (7, 5, 7, 1, 7),
    "-": (0, 0, 7, 0, 0),
    "/": (1, 1, 2, 4, 4),
}
BACKGROUND = (255, 255, 255)
BAR = (74, 111, 165)
INK = (40, 40, 40)
AXIS = (180, 180, 180)


def _png(width: int, height: int, pixels: list[bytearray]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes(row) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def bar_chart_png(
    values: list[int], labels: list[str] | None = None, width: int = 480, height: int = 180
) -> bytes:
    """Bars for ``values`` left to right, each with its count above it and, when
    ``labels`` are given (dates such as ``03-25``), its label under the axis; labels
    that would not fit are thinned out evenly."""
    pixels = [bytearray(BACKGROUND * width) for _ in range(height)]

    def put(x: int, y: int, colour: tuple[int, int, int]) -> None:
        if 0 <= x < width and 0 <= y < height:
            pixels[y][3 * x : 3 * x + 3] = bytes(colour)

    def number(text: str, x: int, y: int, scale: int = 2) -> None:
        for index, char in enumerate(text):
            for row, bits in enumerate(_DIGITS[char]):
                for col in range(3):
                    if bits & (4 >> col):
                        for dx in range(scale):
                            for dy in range(scale):
                                put(x + (index * 4 + col) * scale + dx, y + row * scale + dy, INK)

    margin, top = 10, 20
    base = height - (margin + 14 if labels else margin)
    for x in range(margin, width - margin):
        put(x, base, AXIS)
    if not values:
        return _png(width, height, pixels)
    slot = (width - 2 * margin) / len(values)
    bar = max(2, int(slot * 0.6))
    peak = max(max(values), 1)
    for index, value in enumerate(values):
        left = int(margin + index * slot + (slot - bar) / 2)
        bar_height = int((base - top) * value / peak)
        for y in range(base - bar_height, base):
            for x in range(left, left + bar):
                put(x, y, BAR)
        label = str(value)
        number(label, left + (bar - len(label) * 8) // 2, base - bar_height - 12)
    if labels:
        longest = max(len(text) for text in labels)
        scale = 2 if slot >= longest * 8 + 4 else 1
        every = max(1, -(-(longest * 4 * scale + 4) // max(1, int(slot))))
        for index, text in enumerate(labels[: len(values)]):
            if index % every:
                continue
            centre = int(margin + index * slot + slot / 2)
            number(text, centre - len(text) * 2 * scale, base + 4, scale=scale)
    return _png(width, height, pixels)
