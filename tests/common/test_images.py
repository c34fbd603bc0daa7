import numpy as np
import pytest
from PIL import Image

from headveil.common.errors import ImageReadError
from headveil.common.images import read_image, write_image


def _rgb(h=20, w=30):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_roundtrip_png(tmp_path):
    img = _rgb()
    write_image(tmp_path / "a.png", img)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), img)


def test_grayscale_becomes_rgb(tmp_path):
    Image.fromarray(np.full((8, 9), 77, np.uint8), "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (8, 9, 3) and out.dtype == np.uint8 and np.all(out == 77)


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 255
    a[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[3, 3]) == (255, 255, 255)


def test_16bit_scaled_to_8bit(tmp_path):
    arr = np.full((5, 6), 65535 // 2, np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    assert out.shape == (5, 6, 3) and abs(int(out[0, 0, 0]) - 127) <= 1


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # pure red in CMYK
    out = read_image(tmp_path / "c.jpg")
    assert out.shape == (10, 10, 3)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60


def test_exif_orientation_applied(tmp_path):
    img = np.zeros((10, 20, 3), np.uint8)  # landscape 10×20
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° CW on display
    im.save(tmp_path / "o.jpg", exif=exif.tobytes())
    assert read_image(tmp_path / "o.jpg").shape[:2] == (20, 10)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_read_as_pil_shows_it(tmp_path, orientation):
    """JPEGs are decoded by OpenCV: the pixels and every EXIF orientation as PIL's own reading."""
    from PIL import ImageOps

    rng = np.random.default_rng(orientation)
    img = np.clip(rng.normal(128, 40, (24, 40, 3)), 0, 255).astype(np.uint8)
    img[:6, :10] = (255, 0, 0)  # a red corner shows where the top-left went
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=90)
    with Image.open(tmp_path / "o.jpg") as ref:
        want = np.asarray(ImageOps.exif_transpose(ref).convert("RGB"))
    got = read_image(tmp_path / "o.jpg")
    assert got.shape == want.shape and got.flags.c_contiguous and got.flags.writeable
    assert np.abs(got.astype(int) - want).max() <= 1


@pytest.mark.parametrize("content", [b"not an image at all", b""])
def test_non_image_raises(tmp_path, content):
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(ImageReadError, match="x.png"):
        read_image(tmp_path / "x.png")


@pytest.mark.parametrize("name", ["t.png", "t.jpg"])  # a JPEG is decoded by OpenCV, which would not raise
def test_truncated_raises(tmp_path, name):
    write_image(tmp_path / name, _rgb(64, 64))
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=name):
        read_image(tmp_path / name)


def test_missing_raises(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")


def test_written_files_carry_no_metadata(tmp_path):
    write_image(tmp_path / "m.jpg", _rgb())
    with Image.open(tmp_path / "m.jpg") as im:
        assert len(im.getexif()) == 0
    write_image(tmp_path / "m.png", _rgb())
    with Image.open(tmp_path / "m.png") as im:
        assert not {k for k in im.info if k not in ("dpi",)}


def test_write_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_image(tmp_path / "b.png", np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("h, w", [(1, 1), (1, 7), (3, 5), (256, 3), (257, 33), (600, 41)])
def test_encode_png_round_trips_at_any_size(h, w):
    """One row, one column, exactly one block, a block and a row, several blocks; every byte value
    (the Up filter wraps modulo 256)."""
    import io

    from headveil.common.images import encode_png

    img = np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for level in (0, 1, 9):
        with Image.open(io.BytesIO(encode_png(img, level))) as im:
            assert im.mode == "RGB" and np.array_equal(np.asarray(im), img)


def test_encode_png_bytes_do_not_depend_on_threads_and_hold_no_metadata():
    import struct

    from headveil.common.images import encode_png

    img = np.random.default_rng(0).integers(0, 256, (700, 20, 3), dtype=np.uint8)  # 3 blocks
    data = encode_png(img, 3, threads=1)
    assert data == encode_png(img, 3, threads=3)
    chunks, pos = [], 8
    while pos < len(data):  # walk the chunks: only the critical ones
        (n,), tag = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        chunks.append(tag)
        pos += 12 + n
    assert chunks == [b"IHDR", b"IDAT", b"IEND"] and data[:8] == b"\x89PNG\r\n\x1a\n"
