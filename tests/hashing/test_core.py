"""
The hashing core (hashing.core, hashing.pdq_fast): PDQ hashes and qualities identical to
python-threatexchange's, MD5, and clean errors for anything that isn't a decodable image.
Plain pytest: no database, no Django.
"""

import hashlib
import io
import threading

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageFile
from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

from hashing import core, pdq_fast, pixel_view
from tests.hashing.reference_data import NO_DATA, PDQ_DATA_DIR, expected_pdq_rows

# The reference images and EXPECTED_PDQ.tsv, shared by all worktrees (/work/shared/data/pdq).
EXPECTED = expected_pdq_rows()


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _photo(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A small photo-like RGB image: gradients plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 / width, y * 255 / height, (x + y) * 255 / (width + height)], axis=2)
    pixels = pixels + rng.normal(0, 20, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _reference(data: bytes) -> core.PhotoHash:
    pdq, quality = pdq_from_bytes(data)
    return core.PhotoHash(pdq, quality)


# ---------------------------------------------------------------------------------------------
# Reference images


@pytest.mark.skipif(not EXPECTED, reason=NO_DATA)
@pytest.mark.parametrize(("relative", "pdq", "quality"), EXPECTED, ids=[row[0] for row in EXPECTED])
def test_reference_image_hash_and_quality(relative, pdq, quality):
    data = (PDQ_DATA_DIR / relative).read_bytes()
    assert core.hash_photo_bytes(data) == core.PhotoHash(pdq=pdq, quality=quality)


@pytest.mark.skipif(not EXPECTED, reason=NO_DATA)
def test_reference_images_from_file_and_stream():
    for relative, pdq, quality in EXPECTED[::7]:
        path = PDQ_DATA_DIR / relative
        expected = core.PhotoHash(pdq=pdq, quality=quality)
        assert core.hash_photo_file(path) == expected
        assert core.hash_photo_file(str(path)) == expected
        with path.open("rb") as handle:
            assert core.hash_photo_stream(handle) == expected


@pytest.mark.skipif(not EXPECTED, reason=NO_DATA)
def test_reference_table_covers_every_mode_sample():
    modes = {row[0] for row in EXPECTED if row[0].startswith("misc-images/modes/")}
    assert len(modes) == 14


# ---------------------------------------------------------------------------------------------
# Generated images, compared with threatexchange's pdq_from_bytes


def _checkerboard(size: int, square: int) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size]
    board = (((x // square) + (y // square)) % 2 * 255).astype(np.uint8)
    return Image.fromarray(board, "L")


GENERATED = {
    "solid-grey": lambda: Image.new("RGB", (200, 150), (128, 128, 128)),
    "solid-red": lambda: Image.new("RGB", (64, 64), (255, 0, 0)),
    "checker-8": lambda: _checkerboard(256, 8).convert("RGB"),
    "checker-32-L": lambda: _checkerboard(256, 32),
    "checker-1-L": lambda: _checkerboard(100, 1),
    "photo": lambda: _photo(),
    "photo-64x64": lambda: _photo(64, 64, 1),
    "photo-5x5": lambda: _photo(5, 5, 2),
    "photo-4x4": lambda: _photo(4, 4, 3),
    "photo-1x1": lambda: _photo(1, 1, 4),
    "photo-tall": lambda: _photo(7, 900, 5),
    "photo-wide": lambda: _photo(1300, 9, 6),
    "photo-RGBA": lambda: _photo(300, 200, 7).convert("RGBA"),
    "photo-LA": lambda: _photo(300, 200, 8).convert("LA"),
    "photo-P": lambda: _photo(300, 200, 9).convert("P"),
    "photo-1": lambda: _photo(300, 200, 10).convert("1"),
    "photo-CMYK": lambda: _photo(300, 200, 11).convert("CMYK"),
    "photo-I;16": lambda: _photo(300, 200, 12).convert("L").convert("I;16"),
}
FORMAT_OF = {"photo-CMYK": "TIFF", "photo-I;16": "TIFF"}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_images_match_threatexchange(name):
    data = _encode(GENERATED[name](), FORMAT_OF.get(name, "PNG"))
    assert core.hash_photo_bytes(data) == _reference(data)


def test_generated_jpeg_and_webp_match_threatexchange():
    for fmt in ("JPEG", "WEBP"):
        data = _encode(_photo(640, 480, 20), fmt, quality=85)
        assert core.hash_photo_bytes(data) == _reference(data)


def test_multi_frame_files_hash_their_first_frame_like_the_reference():
    first, second = _photo(240, 160, 21), _photo(240, 160, 22).rotate(90)
    for fmt, frames in (("MPO", [first, second]), ("GIF", [first.convert("P"), second.convert("P")])):
        data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:])
        assert core.hash_photo_bytes(data) == _reference(data)
        assert core.hash_photo_bytes(data) == core.hash_photo_bytes(_encode(frames[0], fmt))


def test_16_bit_grey_png_matches_threatexchange():
    grey = (np.arange(120 * 90, dtype=np.uint32).reshape(90, 120) * 7 % 65536).astype(np.uint16)
    data = _encode(Image.fromarray(grey), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    assert core.hash_photo_bytes(data) == _reference(data)


def test_solid_colour_has_low_quality_and_checkerboard_high():
    solid = core.hash_photo_bytes(_encode(GENERATED["solid-grey"](), "PNG"))
    assert solid.quality == 0
    board = core.hash_photo_bytes(_encode(GENERATED["checker-32-L"](), "PNG"))
    assert board.quality == 100


def test_quality_floor_is_the_callers_choice():
    from threatexchange.signal_type.pdq.signal import PdqSignal

    assert core.PDQ_QUALITY_FLOOR == PdqSignal.QUALITY_THRESHOLD
    for image in (GENERATED["solid-grey"](), GENERATED["checker-8"]()):
        data = _encode(image, "PNG")
        result = core.hash_photo_bytes(data)
        assert result.pdq_or_blank() == PdqSignal.hash_from_bytes(data)
    low = core.PhotoHash("ab" * 32, 10)
    assert low.pdq_or_blank() == "" and low.pdq_or_blank(quality_floor=0) == "ab" * 32


def test_tiny_image_hashes_to_zero_like_the_reference():
    result = core.hash_photo_bytes(_encode(_photo(4, 4), "PNG"))
    assert result == core.PhotoHash("0" * 64, 0)


def test_modes_the_reference_cannot_hash_are_converted_to_rgb():
    grey = _photo(200, 100, 30).convert("L")
    for mode in ("I", "F"):
        image = grey.convert(mode)
        expected = core.hash_photo_bytes(_encode(image.convert("RGB"), "PNG"))
        assert core.hash_photo_image(image) == expected
    palette_alpha = _photo(200, 100, 31).convert("PA")
    assert core.hash_photo_image(palette_alpha) == core.hash_photo_image(palette_alpha.convert("RGB"))


def _random_content(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Random RGB content of one of three kinds: noise, smooth gradients, or blocks with noise."""
    kind = rng.integers(3)
    if kind == 0:
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    slopes = rng.uniform(-3, 3, (2, 3))
    pixels = x[..., None] * slopes[0] + y[..., None] * slopes[1] + rng.uniform(0, 255, 3)
    if kind == 2:
        block = int(rng.integers(2, 40))
        pixels += (
            rng.uniform(-80, 80, (height // block + 1, width // block + 1, 3))
            .repeat(block, 0)
            .repeat(block, 1)[:height, :width]
        )
        pixels += rng.normal(0, 12, pixels.shape)
    return Image.fromarray(np.clip(pixels % 512 - 128, 0, 255).astype(np.uint8), "RGB")


# (mode, format, save options): every layout the core reads (uint32 words in place, 3-byte
# copies, grey, palette, bits, converted modes), through the formats photos come in.
RANDOM_LAYOUTS = [
    ("RGB", "JPEG", {"quality": 90}),
    ("RGB", "PNG", {}),
    ("RGB", "WEBP", {"quality": 80}),
    ("RGBA", "PNG", {}),
    ("L", "JPEG", {"quality": 85}),
    ("L", "PNG", {}),
    ("P", "PNG", {}),
    ("P", "GIF", {}),
    ("CMYK", "JPEG", {"quality": 90}),
    ("CMYK", "TIFF", {}),
    ("LA", "PNG", {}),
    ("1", "PNG", {}),
    ("I;16", "PNG", {}),
    ("YCbCr", "TIFF", {}),
]


def _random_corpus(count: int, seed: int) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    corpus = []
    for index in range(count):
        mode, fmt, options = RANDOM_LAYOUTS[index % len(RANDOM_LAYOUTS)]
        # Mostly small and medium sizes, odd ones included; a few near 1 MP.
        width, height = (int(v) for v in rng.integers(5, 1300 if index % 10 == 0 else 420, 2))
        image = _random_content(rng, width, height)
        if mode == "I;16":  # 16-bit grey, spread over the whole range
            image = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
        elif mode != "RGB":
            image = image.convert(mode)
        corpus.append((f"{index}-{mode}-{fmt}-{width}x{height}", _encode(image, fmt, **options)))
    return corpus


RANDOM_CORPUS = _random_corpus(56, seed=2026)


@pytest.mark.parametrize(("name", "data"), RANDOM_CORPUS, ids=[name for name, _ in RANDOM_CORPUS])
def test_random_corpus_matches_threatexchange(name, data):
    # Given random content of random size in every mode and format, then hash and quality are
    # exactly python-threatexchange's (the reference decodes with the same Pillow).
    assert core.hash_photo_bytes(data) == _reference(data)


@pytest.fixture
def pillow_blocks_of_4_mb():
    """Pillow's block size set back to 4 MiB for the test (hashing.core raises it)."""
    size = Image.core.get_block_size()
    Image.core.set_block_size(4 * 1024 * 1024)
    yield
    Image.core.set_block_size(size)


def test_photo_in_one_pillow_block_is_read_in_place():
    # Given Pillow's block size as hashing.core sets it, a 4.6 MP photo is one block: no copy
    assert Image.core.get_block_size() >= core.PILLOW_BLOCK_BYTES
    image = _random_content(np.random.default_rng(7), 2400, 1900)
    assert pixel_view.rgbx_view(image) is not None
    data = _encode(image, "JPEG", quality=90)
    assert core.hash_photo_bytes(data) == _reference(data)


def test_photo_over_one_pillow_block_matches_threatexchange(pillow_blocks_of_4_mb):
    # Pillow keeps an image bigger than its block size in several blocks: the core then copies
    # the pixels out (3 bytes per pixel) instead of reading them in place, with the same result.
    image = _random_content(np.random.default_rng(8), 1400, 1000)
    assert pixel_view.rgbx_view(image) is None
    data = _encode(image, "JPEG", quality=90)
    assert core.hash_photo_bytes(data) == _reference(data)


class _CountingReads(io.BytesIO):
    """A BytesIO that records how many bytes each read returned."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.returned: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.returned.append(len(data))
        return data


@pytest.mark.parametrize("cap", [None, 100_000])
def test_pixels_are_read_in_one_block_up_to_the_cap(monkeypatch, cap):
    # Pillow's decoder gets the rest of the file in one read (not 64 KiB at a time), or in reads of
    # DECODE_READ_MAX_BYTES for a file above it; the hash is the reference's either way.
    if cap is not None:
        monkeypatch.setattr(core, "DECODE_READ_MAX_BYTES", cap)
    data = _encode(_random_content(np.random.default_rng(9), 900, 700), "JPEG", quality=95)
    assert len(data) > 65536 * 2
    stream = _CountingReads(data)
    assert core.hash_photo_stream(stream) == _reference(data)
    big_reads = [size for size in stream.returned if size > 4096]  # Image.open reads the header in small pieces
    if cap is None:
        assert len(big_reads) == 1 and big_reads[0] >= len(data) - 4096
    else:
        assert max(big_reads) == cap and sum(big_reads) >= len(data) - 4096


def test_a_stream_that_cannot_tell_keeps_pillows_reads():
    class NoPosition(io.BytesIO):
        def tell(self) -> int:
            raise io.UnsupportedOperation("tell")

    image = Image.open(io.BytesIO(_jpeg()))
    image.fp = NoPosition(_jpeg())
    core._read_in_one_block(image)
    assert image.decodermaxblock == ImageFile.MAXBLOCK


# ---------------------------------------------------------------------------------------------
# pdq_fast against pdqhash directly


@pytest.mark.parametrize(
    "shape",
    [
        (1, 1),
        (2, 7),
        (4, 300),
        (5, 5),
        (6, 9),
        (64, 64),
        (63, 65),
        (100, 100),
        (129, 300),
        (191, 640),
        (256, 257),
        (40, 2000),
        (700, 30),
        (7, 1300),
        (1301, 9),
        (515, 771),
    ],
)
def test_pdq_fast_equals_pdqhash_compute(shape):
    rng = np.random.default_rng(sum(shape))
    noise = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    smooth = np.stack([(x * 3 + y) % 256, (x * y) % 256, (y * 7) % 256], axis=2).astype(np.uint8)
    padding = rng.integers(0, 256, (*shape, 1), dtype=np.uint8)
    for array in (noise, smooth):
        bits, quality = pdqhash.compute(array)
        floats, _ = pdqhash.compute_float(array)
        # Three channels (read byte by byte) and four (read as one uint32 word per pixel, as
        # Pillow's RGB/RGBA/CMYK storage is): the fourth channel never counts.
        for ours in (array, np.concatenate([array, padding], axis=2)):
            ours_bits, ours_quality = pdq_fast.pdq_from_rgb_array(ours)
            assert np.array_equal(ours_bits, bits.astype(np.uint8))
            assert ours_quality == quality
            # The float DCT output is bit-for-bit the same too, not merely close.
            ours_floats, _ = pdq_fast.pdq_float_from_rgb_array(ours)
            assert np.array_equal(ours_floats.view(np.uint32), floats.astype(np.float32).view(np.uint32))


def test_pdq_fast_grey_and_luma_entry_points_agree():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (300, 200), dtype=np.uint8)
    expected = pdqhash.compute(np.dstack([grey, grey, grey]))
    bits, quality = pdq_fast.pdq_from_grey(grey)
    assert np.array_equal(bits, expected[0].astype(np.uint8)) and quality == expected[1]
    luma = (grey * 0.299 + grey * 0.587 + grey * 0.114).astype(np.float32)
    bits, quality = pdq_fast.pdq_from_luma(luma)
    assert np.array_equal(bits, expected[0].astype(np.uint8)) and quality == expected[1]


def test_sizes_and_threads_interleaved():
    sizes = [(640, 480), (120, 90), (300, 700)]
    images = [_encode(_photo(w, h, seed), "PNG") for seed, (w, h) in enumerate(sizes)]
    expected = [_reference(data) for data in images]
    assert [core.hash_photo_bytes(data) for data in images + images[::-1]] == expected + expected[::-1]

    failures = []

    def work(offset: int) -> None:
        for i in range(6):
            index = (i + offset) % len(images)
            if core.hash_photo_bytes(images[index]) != expected[index]:
                failures.append(index)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# ---------------------------------------------------------------------------------------------
# hex_from_bits


def _reference_hex(bits) -> str:
    """python-threatexchange's conversion (string join + int)."""
    bin_str = "".join(str(int(x)) for x in bits)
    return ("%0*X" % ((len(bin_str) + 3) // 4, int(bin_str, 2))).lower()  # noqa: UP031 (verbatim)


def test_hex_from_bits_matches_the_string_join():
    rng = np.random.default_rng(3)
    for _ in range(20):
        bits = rng.integers(0, 2, 256)
        assert core.hex_from_bits(bits) == _reference_hex(bits)
        assert core.hex_from_bits(bits.astype(bool)) == _reference_hex(bits)
        assert core.hex_from_bits(bits.tolist()) == _reference_hex(bits)
    assert core.hex_from_bits(np.zeros(256, dtype=np.uint8)) == "0" * 64
    assert core.hex_from_bits(np.ones(256, dtype=np.int64)) == "f" * 64
    odd = rng.integers(0, 2, 13)
    assert core.hex_from_bits(odd) == _reference_hex(odd)


def test_hex_from_bits_rejects_non_bits():
    with pytest.raises(ValueError):
        core.hex_from_bits(np.array([0, 1, 2, 1, 0, 0, 0, 0]))
    with pytest.raises(ValueError):
        core.hex_from_bits(np.zeros((16, 16), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------
# MD5


def test_md5_known_values():
    assert core.md5_bytes(b"abc") == "900150983cd24fb0d6963f7d28e17f72"
    assert core.md5_bytes(b"") == "d41d8cd98f00b204e9800998ecf8427e"
    assert core.md5_stream(io.BytesIO(b"abc")) == "900150983cd24fb0d6963f7d28e17f72"
    assert core.md5_stream(io.BytesIO(b"")) == "d41d8cd98f00b204e9800998ecf8427e"


def test_md5_stream_and_file_read_in_chunks(tmp_path):
    data = np.random.default_rng(4).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    expected = hashlib.md5(data).hexdigest()
    assert core.md5_bytes(data) == expected
    assert core.md5_stream(io.BytesIO(data), chunk_size=4096) == expected
    path = tmp_path / "video.bin"
    path.write_bytes(data)
    assert core.md5_file(path, chunk_size=65536) == expected


# ---------------------------------------------------------------------------------------------
# Errors


def _jpeg() -> bytes:
    return _encode(_photo(400, 300, 50), "JPEG", quality=90)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty", b""),
        ("truncated-jpeg", _jpeg()[: len(_jpeg()) // 2]),
        ("jpeg-header-only", _jpeg()[:200]),
        ("random", np.random.default_rng(5).integers(0, 256, 5000, dtype=np.uint8).tobytes()),
        ("text", b"This is a text file, not an image.\n" * 20),
        ("png-signature-then-garbage", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50),
        ("truncated-png", _encode(_photo(300, 200, 51), "PNG")[:3000]),
    ],
)
def test_undecodable_inputs_raise_undecodable_image(name, data):
    with pytest.raises(core.UndecodableImage) as caught:
        core.hash_photo_bytes(data)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value)  # a message a caller can show
    assert "<_io.BytesIO" not in str(caught.value)


def test_empty_file_and_stream(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(core.UndecodableImage, match="0 bytes"):
        core.hash_photo_file(path)
    with pytest.raises(core.UndecodableImage):
        core.hash_photo_stream(io.BytesIO(b""))


def test_text_file_is_undecodable(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n" * 100)
    with pytest.raises(core.UndecodableImage, match="not a recognised image"):
        core.hash_photo_file(path)


def test_pixel_limit_raises_image_too_large():
    data = _encode(Image.new("L", (2000, 1000), 7), "PNG")
    with pytest.raises(core.ImageTooLarge, match="2000x1000"):
        core.hash_photo_bytes(data, max_pixels=1_000_000)
    assert core.hash_photo_bytes(data, max_pixels=2_000_000).quality == 0


def test_pillow_decompression_bomb_is_image_too_large(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    data = _encode(Image.new("L", (300, 300), 7), "PNG")  # over twice Pillow's limit
    with pytest.raises(core.ImageTooLarge):
        core.hash_photo_bytes(data)


def test_formats_outside_the_allow_list_are_refused():
    data = _encode(_photo(100, 80, 60).convert("1"), "XBM")  # Pillow reads it; photos never come in it
    with pytest.raises(core.UndecodableImage, match="not a recognised image"):
        core.hash_photo_bytes(data)
    assert core.hash_photo_bytes(data, formats=None) == _reference(data)


def test_formats_pillow_lacks_are_skipped(monkeypatch):
    data = _encode(_photo(100, 80, 61), "PNG")
    assert core.hash_photo_bytes(data, formats=("NO-SUCH-FORMAT", "png")) == _reference(data)
    with pytest.raises(core.UndecodableImage, match="not a recognised image"):
        core.hash_photo_bytes(b"not an image at all", formats=("NO-SUCH-FORMAT",))


def test_photo_hash_shape():
    result = core.hash_photo_bytes(_jpeg())
    assert len(result.pdq) == 64 and result.pdq == result.pdq.lower()
    int(result.pdq, 16)
    assert isinstance(result.quality, int) and 0 <= result.quality <= 100


def test_warm_up_hashes_every_layout_it_names(monkeypatch):
    seen = []
    original = core.hash_photo_image
    monkeypatch.setattr(core, "hash_photo_image", lambda image: seen.append(image.mode) or original(image))
    core.warm_up()
    assert seen == ["RGB", "RGBA", "YCbCr", "L", "1"]
