"""Seeded hostile inputs for the image-bytes signature: random bytes, and real images
truncated, corrupted or declaring more pixels than the export's limit.

Shared by tests/export/test_serving_fuzz.py (300 random strings plus the real-image
cases) and benchmarks/serving_fuzz.py (5,000 of them).
"""

import io
import struct
import zlib

import numpy as np
from PIL import Image

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF\0\0\0\0WEBPVP8X")


def real_images(rng, size=(48, 40)):
    """One small photo-like image in each format: ``{format: bytes}``."""
    width, height = size
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    pixels[: height // 2] //= 2  # some structure, not pure noise
    encoded = {}
    for name in FORMATS:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, name)
        encoded[name] = buffer.getvalue()
    return encoded


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
    )


def declaring(name, data, height, width):
    """``data`` (an image in format ``name``) with its header edited to declare
    ``height`` x ``width`` pixels."""
    data = bytearray(data)
    if name == "PNG":
        header = struct.pack(">II", width, height) + bytes(data[24:29])
        return bytes(data[:8]) + _png_chunk(b"IHDR", header) + bytes(data[33:])
    if name == "GIF":
        data[6:10] = struct.pack("<HH", min(width, 65535), min(height, 65535))
    elif name == "BMP":
        data[18:26] = struct.pack("<ii", width, height)
    elif name == "JPEG":
        offset = 2
        while data[offset + 1] not in (0xC0, 0xC1, 0xC2):  # walk to the frame header
            offset += 2 + struct.unpack(">H", bytes(data[offset + 2 : offset + 4]))[0]
        data[offset + 5 : offset + 9] = struct.pack(">HH", min(height, 65535), min(width, 65535))
    elif name == "WEBP":  # a VP8X header declaring the canvas, before the image's own data
        canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunk = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + canvas
        body = b"WEBP" + chunk + bytes(data[12:])
        return b"RIFF" + struct.pack("<I", len(body)) + body
    return bytes(data)


def random_strings(rng, count):
    """``count`` random byte strings, half of them behind a real format's magic bytes
    (so they reach that format's decoder), of 0 to 4,000 bytes."""
    strings = []
    for index in range(count):
        length = int(rng.integers(0, 4000))
        body = rng.integers(0, 256, size=length, dtype=np.uint8).tobytes()
        if index % 2:
            body = MAGIC[index // 2 % len(MAGIC)] + body
        strings.append(body)
    return strings


def damaged_images(rng, count, max_pixels):
    """``count`` real images, in turn truncated, corrupted (random bytes overwritten)
    and declaring more than ``max_pixels`` pixels: ``[(kind, format, bytes)]``."""
    cases = []
    for index in range(count):
        images = real_images(rng)
        name = FORMATS[index % len(FORMATS)]
        data = images[name]
        kind = ("truncated", "corrupted", "oversized")[index // len(FORMATS) % 3]
        if kind == "truncated":
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == "corrupted":
            data = np.frombuffer(data, np.uint8).copy()
            positions = rng.integers(0, len(data), size=int(rng.integers(1, 20)))
            data[positions] = rng.integers(0, 256, size=len(positions), dtype=np.uint8)
            data = data.tobytes()
        else:
            side = int(np.sqrt(max_pixels)) + 1 + int(rng.integers(0, 20000))
            data = declaring(name, data, side, side)
        cases.append((kind, name, data))
    return cases
