"""Image I/O at the public boundary.

Images enter and leave HeadVeil as ``uint8 (H, W, 3)`` RGB arrays. Reading normalises every
common variant (EXIF orientation, greyscale, palette, RGBA, 16-bit, CMYK JPEG) and turns every
failure (missing, truncated, not an image) into one :class:`ImageReadError` naming the file.
Writing strips all metadata and is atomic (temp name, then rename).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from headveil.common.errors import ImageReadError
from headveil.common.outputs import atomic_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _to_rgb8(img) -> np.ndarray:
    """Convert a PIL image of any mode to ``uint8 (H, W, 3)`` RGB."""
    from PIL import Image

    mode = img.mode
    if mode == "RGB":  # the common case: one copy (writable, contiguous), no convert() copy before it
        return np.array(img, dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        arr = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # composite on white so transparent regions do not become black shapes
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


#: EXIF orientation → the array operation that shows the photo upright (PIL's ``exif_transpose``).
_ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, -1)[::-1],
           8: lambda a: np.rot90(a, 1)}


def _read_jpeg_fast(path: Path, img) -> np.ndarray | None:
    """A baseline RGB JPEG decoded by OpenCV straight into RGB (a 24-megapixel photo in half PIL's
    time, which decodes and then copies it twice), its EXIF orientation applied as PIL does; None
    (PIL reads it) when the file does not end in the JPEG end marker (truncated: PIL raises) or
    OpenCV cannot decode it."""
    import cv2

    data = np.fromfile(path, np.uint8)
    if len(data) < 4 or data[-2] != 0xFF or data[-1] != 0xD9:
        return None
    rgb = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if rgb is None or rgb.shape[:2] != (img.height, img.width):
        return None
    turn = _ORIENT.get(img.getexif().get(0x0112, 1))
    return rgb if turn is None else np.ascontiguousarray(turn(rgb))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB.

    Args:
        path: image file (PNG, JPEG incl. CMYK, BMP, TIFF, WebP, PPM); EXIF orientation is applied.

    Returns:
        ``uint8 (H, W, 3)`` RGB, values 0–255.

    Raises:
        ImageReadError: missing file, not an image, truncated or undecodable data, empty image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            rgb = _read_jpeg_fast(path, img) if img.format == "JPEG" and img.mode == "RGB" else None
            if rgb is None:
                img.load()
                ImageOps.exif_transpose(img, in_place=True)  # no copy of the photo when it has no orientation tag
                rgb = _to_rgb8(img)
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"not a readable image: {path}") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports truncation/corruption this way
        raise ImageReadError(f"corrupt or truncated image: {path} ({exc})") from exc
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ImageReadError(f"image too small: {path} has shape {rgb.shape}")
    return rgb


def check_rgb8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an in-memory RGB image (``uint8 (H, W, 3)``) and return it contiguous."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 RGB, got dtype {image.dtype}")
    return np.ascontiguousarray(image)


def to_float01(image: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, 3)`` → ``float32 (H, W, 3)`` in [0, 1]."""
    return check_rgb8(image).astype(np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``float (H, W, 3)`` in [0, 1] → ``uint8`` with rounding and clipping."""
    return np.clip(np.asarray(image, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65; L* in [0, 100], a* and b* about [-128, 127]) of sRGB colours ``(..., 3)`` floats
    in [0, 1] (clipped first); ``float32``, same shape (OpenCV's float conversion, sRGB transfer)."""
    import cv2

    rgb = np.asarray(rgb)
    flat = np.clip(rgb, 0, 1).astype(np.float32).reshape(-1, 1, 3)
    return cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(rgb.shape)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """sRGB ``(..., 3)`` in [0, 1] (out-of-gamut colours clipped), ``float32``, of CIELAB (D65) colours."""
    import cv2

    lab = np.asarray(lab)
    flat = lab.astype(np.float32).reshape(-1, 1, 3)
    return np.clip(cv2.cvtColor(flat, cv2.COLOR_LAB2RGB), 0, 1).reshape(lab.shape)


PNG_BLOCK_ROWS = 256
"""Rows per independently deflated block of :func:`encode_png`."""
_IDAT_BYTES = 1 << 23


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, level: int = 3, threads: int | None = None) -> bytes:
    """An 8-bit RGB PNG of ``image (H, W, 3) uint8``, with no ancillary chunks (no metadata).

    Every row uses PNG's *Up* filter (the byte difference to the row above, one numpy pass) and the
    filtered rows are deflated in blocks of :data:`PNG_BLOCK_ROWS` on up to ``threads`` threads
    (zlib releases the GIL), each block ending in a full flush, so the blocks join into one
    standard zlib stream. The bytes depend on the image and ``level`` only, not on ``threads``.
    Against PIL at the same zlib level (its per-row adaptive filter on one thread): a 24 MP photo
    in 0.66 s instead of 1.65 s at 2 threads, the same size (13.9 MB) at level 3; a 512² photo in
    15 instead of 30 ms, 1 % larger.
    """
    import struct
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    arr = check_rgb8(image)
    h, w, _ = arr.shape
    rows = arr.reshape(h, w * 3)
    filtered = np.empty((h, w * 3 + 1), np.uint8)
    filtered[:, 0] = 2  # filter type Up
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8: modulo 256, as the filter is defined
    blocks = [filtered[i:i + PNG_BLOCK_ROWS] for i in range(0, h, PNG_BLOCK_ROWS)]

    def deflate(k: int) -> bytes:
        c = zlib.compressobj(int(level), zlib.DEFLATED, -15)  # raw deflate: one header for the stream
        last = k == len(blocks) - 1
        return c.compress(blocks[k]) + c.flush(zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH)

    n = max(1, min(threads or os.cpu_count() or 1, len(blocks), 8))
    if n == 1:
        parts = [deflate(k) for k in range(len(blocks))]
    else:
        with ThreadPoolExecutor(n) as pool:
            parts = list(pool.map(deflate, range(len(blocks))))
    adler = 1
    for block in blocks:
        adler = zlib.adler32(block, adler)
    stream = b"\x78\x01" + b"".join(parts) + struct.pack(">I", adler & 0xFFFFFFFF)
    idat = b"".join(_png_chunk(b"IDAT", stream[i:i + _IDAT_BYTES]) for i in range(0, len(stream), _IDAT_BYTES))
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, adaptive filtering, no interlace
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + idat + _png_chunk(b"IEND", b"")


def write_image(path: str | os.PathLike, image: np.ndarray, png_level: int = 3) -> Path:
    """Write an RGB image atomically with no metadata (no EXIF, no text chunks).

    Args:
        path: destination; the suffix selects the format (``.png`` recommended, ``.jpg`` allowed).
        image: ``uint8 (H, W, 3)`` RGB, or ``float (H, W, 3)`` in [0, 1].
        png_level: zlib level of a PNG (lossless at any level); PNGs are encoded by
            :func:`encode_png` (a 24 MP photo 2.5× faster than PIL at the same level and size).
    """
    from PIL import Image

    path = Path(path)
    arr = image if image.dtype == np.uint8 else to_uint8(image)
    arr = check_rgb8(arr)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported output format {path.suffix!r}; use .png or .jpg")
    with atomic_file(path) as tmp:
        if fmt == "PNG":
            Path(tmp).write_bytes(encode_png(arr, png_level))
        else:
            Image.fromarray(arr, "RGB").save(tmp, format=fmt, quality=95)
    return path


def list_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a sorted list of image files (folders are not recursed).

    Raises:
        ImageReadError: a path does not exist (checked before any work starts).
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ImageReadError(f"no such file or folder: {p}")
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out
