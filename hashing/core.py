"""
The hashing core: PDQ for photos, MD5 for videos. No Django here, only Pillow, numpy, numba and hashlib.

PDQ hashes and qualities are exactly python-threatexchange's (`PdqSignal.hash_from_file`, i.e.
`pdq_from_file`), including its quirks, which matter because banks hold hashes made that way:

* the first three channels are used as R, G, B whatever the mode (CMYK hashes C, M, Y; RGBA
  ignores alpha; YCbCr/LAB/HSV channels are used as if they were RGB);
* L and P images are hashed as grey, P by palette *index* (not palette colour); mode 1 as 0/1;
  LA and I;16 are converted to RGB with Pillow first;
* EXIF orientation is ignored (the stored pixels are hashed), and an animation's first frame is used.

Modes the reference can't hash (it raises) are converted to RGB with Pillow: I, F, I;16L/B/N, PA.

Speed: the PDQ maths runs in hashing.pdq_fast (numba-compiled, bit-exact with pdqhash's C++, see
there) on Pillow's interleaved pixels, read in place where Pillow can export them (pixel_view).
Hex conversion uses numpy.packbits. JPEG draft (DCT-domain downscaled) decoding would be faster
but changes the pixels and so the hash: not used.
"""

import contextlib
import functools
import hashlib
import io
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from hashing import pdq_fast, pixel_view

MD5_CHUNK_BYTES = 1024 * 1024
# python-threatexchange's PdqSignal.QUALITY_THRESHOLD: below it, hash_from_bytes returns "".
# The core always returns the raw quality; callers choose their floor.
PDQ_QUALITY_FLOOR = 50

# Formats Pillow may decode for a photo. EPS is left out on purpose (Pillow runs Ghostscript on
# it), as are Pillow's stub and scientific formats. None would allow every format Pillow knows.
PHOTO_FORMATS: tuple[str, ...] = (
    "JPEG",  # also multi-picture JPEGs (MPO)
    "PNG",
    "GIF",
    "WEBP",
    "TIFF",
    "BMP",
    "DIB",
    "ICO",
    "AVIF",
    "JPEG2000",
    "PPM",
    "TGA",
    "PSD",
    "QOI",
    "PCX",
    "SGI",
    "ICNS",
    "DDS",
)

# The mode's first three channels are hashed as R, G, B (no conversion), as the reference does.
_THREE_CHANNEL_MODES = frozenset({"RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"})
# Modes the reference converts to RGB before hashing.
_REFERENCE_CONVERTS_TO_RGB = frozenset({"I;16"})
# Modes the reference fails on; converted to RGB here (no reference hash to match).
_CONVERT_TO_RGB = frozenset({"I", "F", "I;16L", "I;16B", "I;16N", "PA"})


# Pillow stores an image in blocks of at most this many bytes (16 MiB by default, about 4 MP of
# RGB), and only an image in one block can be read in place (pixel_view); a bigger one was copied
# out, at several ms per MP. 256 MiB keeps photos up to 64 MP in one block. This sets how Pillow
# lays out memory, never what it decodes, and it is only ever raised (a process may want more).
PILLOW_BLOCK_BYTES = 256 * 1024 * 1024


def pillow_block_size_raise(size: int = PILLOW_BLOCK_BYTES) -> None:
    """Make Pillow's block size at least `size` bytes (process-wide; see PILLOW_BLOCK_BYTES)."""
    if Image.core.get_block_size() < size:
        Image.core.set_block_size(size)


pillow_block_size_raise()


class UndecodableImage(ValueError):
    """The bytes are not an image this service can decode and hash; the message says why."""


class ImageTooLarge(UndecodableImage):
    """The image has more pixels than allowed (a decompression bomb, or just too big to hash)."""


@dataclass(frozen=True, slots=True)
class PhotoHash:
    """A photo's PDQ hash (64 lowercase hex characters) and PDQ quality (0-100, raw)."""

    pdq: str
    quality: int

    def pdq_or_blank(self, quality_floor: int = PDQ_QUALITY_FLOOR) -> str:
        """The hash as PdqSignal.hash_from_bytes reports it: "" when quality < quality_floor."""
        return self.pdq if self.quality >= quality_floor else ""


# ---------------------------------------------------------------------------------------------
# Helpers


def hex_from_bits(bits: np.ndarray | Sequence[int]) -> str:
    """
    A bit vector (first element = most significant bit, values 0/1 or bool), as lowercase hex
    of ceil(len/4) digits: what python-threatexchange builds with a string join, via packbits.
    """
    array = np.asarray(bits)
    if array.ndim != 1:
        raise ValueError(f"expected a 1-D bit vector, got shape {array.shape}")
    if array.dtype != np.bool_:
        if not np.isin(array, (0, 1)).all():
            raise ValueError("bit vector values must be 0 or 1")
        array = array.astype(np.bool_)
    if array.size % 8 == 0:
        return np.packbits(array).tobytes().hex()
    # Odd lengths: pad on the left like the reference's "%0*X" % (digits, int(bits, 2)).
    digits = (array.size + 3) // 4
    value = int("".join("1" if b else "0" for b in array.tolist()) or "0", 2)
    return format(value, f"0{digits}x")


def md5_bytes(data: bytes) -> str:
    """MD5 of `data` as 32 lowercase hex characters (the video MD5 signal)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_stream(stream: IO[bytes], chunk_size: int = MD5_CHUNK_BYTES) -> str:
    """MD5 of everything left in a binary stream, read in chunks (the stream is not rewound)."""
    digest = hashlib.md5(usedforsecurity=False)
    while chunk := stream.read(chunk_size):
        digest.update(chunk)
    return digest.hexdigest()


def md5_file(path: str | os.PathLike[str], chunk_size: int = MD5_CHUNK_BYTES) -> str:
    """MD5 of a file's content, read in chunks."""
    with open(path, "rb") as handle:
        return md5_stream(handle, chunk_size)


# ---------------------------------------------------------------------------------------------
# Decoding


@functools.lru_cache(maxsize=32)
def _known_formats(formats: tuple[str, ...]) -> tuple[str, ...]:
    """The formats this Pillow build can open (Image.open raises KeyError for an unknown one)."""
    Image.init()
    return tuple(name for name in (f.upper() for f in formats) if name in Image.OPEN)


def _open(stream: IO[bytes], max_pixels: int | None, formats: Sequence[str] | None) -> Image.Image:
    """
    Image.open + pixel cap, with every failure turned into UndecodableImage. Only the header is
    read: the pixels are decoded by _load, so an image over the cap costs next to nothing.
    """
    if formats is not None:
        formats = _known_formats(tuple(formats))
    try:
        image = Image.open(stream, formats=formats)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image is too large to hash: {exc}") from exc
    except UnidentifiedImageError as exc:
        allowed = f"; accepted formats: {', '.join(formats)}" if formats else ""
        raise UndecodableImage(f"not a recognised image (unknown format or damaged header){allowed}") from exc
    except MemoryError:
        raise
    except Exception as exc:  # Pillow's plugins raise many types on malformed headers
        raise UndecodableImage(f"unreadable image header ({type(exc).__name__}: {exc})") from exc
    try:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise UndecodableImage(f"image has no pixels ({width}x{height})")
        limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
        if limit is not None and width * height > limit:
            raise ImageTooLarge(
                f"image is {width}x{height} = {width * height} pixels, above the limit of {limit}"
            )
        return image
    except BaseException:
        image.close()
        raise


# Pillow hands a file to its decoder in reads of 64 KiB (ImageFile.MAXBLOCK): a call into the
# decoder each, which resumes where the last stopped and copies the bytes it left over. A photo
# read in one go decodes 2% faster (1 MP JPEG: 4.14 -> 4.04 ms) with the same pixels (the same
# decoder, fed the same bytes). Files over this size are read in blocks of it, so a big upload is
# not copied whole once more while it decodes.
DECODE_READ_MAX_BYTES = 16 * 1024 * 1024


def _read_in_one_block(image: Image.Image) -> None:
    """Let Pillow read the rest of a seekable image file in one read, up to DECODE_READ_MAX_BYTES."""
    stream = getattr(image, "fp", None)
    try:
        position = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(position)
    except (AttributeError, OSError, ValueError):  # not seekable: Pillow's reads as they are
        return
    image.decodermaxblock = max(image.decodermaxblock, min(end - position, DECODE_READ_MAX_BYTES))


def _load(image: Image.Image) -> None:
    """Decode the pixels of an image _open accepted; failures become UndecodableImage."""
    try:
        _read_in_one_block(image)
        image.load()
    except Image.DecompressionBombError as exc:  # some formats check again while loading
        raise ImageTooLarge(f"image is too large to hash: {exc}") from exc
    except MemoryError:
        raise
    except Exception as exc:
        raise UndecodableImage(
            f"{image.format or 'image'} data is truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc


def _pixels(image: Image.Image) -> tuple[str, np.ndarray | pixel_view.PixelView]:
    """
    ("rgb", (rows, cols, channels) array or a PixelView of one) or ("grey", (rows, cols) plane):
    the uint8 pixels the reference hasher would hash for `image` (see the module docstring for
    the per-mode rules). A PixelView reads Pillow's memory in place; keep it until hashed.
    """
    mode = image.mode
    view = pixel_view.rgbx_view(image)
    if view is not None:
        return "rgb", view
    try:
        if mode in _REFERENCE_CONVERTS_TO_RGB or mode in _CONVERT_TO_RGB:
            image, mode = image.convert("RGB"), "RGB"
        if mode in _THREE_CHANNEL_MODES:
            return "rgb", np.asarray(image)  # interleaved; channels past the third are ignored
        if mode in ("L", "P"):
            return "grey", np.asarray(image)
        if mode == "LA":  # the reference converts to RGB, which copies L into R, G and B
            return "grey", np.asarray(image.getchannel(0))
        if mode == "1":  # the reference's bool array counts as 0/1 in its arithmetic
            return "grey", (np.asarray(image.convert("L")) != 0).view(np.uint8)
    except MemoryError:
        raise
    except Exception as exc:
        raise UndecodableImage(
            f"cannot read the pixels of a {mode} image ({type(exc).__name__}: {exc})"
        ) from exc
    raise UndecodableImage(f"unsupported image mode {mode}")


def hash_photo_image(image: Image.Image) -> PhotoHash:
    """PDQ of an already opened and loaded Pillow image (no pixel cap applied here)."""
    if image.width <= 0 or image.height <= 0:
        raise UndecodableImage(f"image has no pixels ({image.width}x{image.height})")
    kind, pixels = _pixels(image)
    # A view's array is valid while `pixels` (which holds Pillow's export) is referenced: to the end.
    array = pixels.array if isinstance(pixels, pixel_view.PixelView) else pixels
    if kind == "rgb":
        bits, quality = pdq_fast.pdq_from_rgb_array(array)
    else:
        bits, quality = pdq_fast.pdq_from_grey(array)
    # pdq_fast's bits are uint8 0/1: read as bool, hex_from_bits has nothing to check.
    return PhotoHash(pdq=hex_from_bits(bits.view(np.bool_)), quality=int(quality))


def hash_photo_stream(
    stream: IO[bytes],
    *,
    max_pixels: int | None = None,
    formats: Sequence[str] | None = PHOTO_FORMATS,
    decode_slot: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
) -> PhotoHash:
    """
    PDQ hash and quality of the image in a seekable binary stream (read from its current position).

    max_pixels: refuse images with more pixels (ImageTooLarge), checked on the header before any
    pixel is decoded; None means Pillow's Image.MAX_IMAGE_PIXELS (89,478,485 unless changed).
    Pillow itself also refuses anything over twice its limit. formats: the Pillow formats
    accepted, None for all. decode_slot: a context manager entered around decoding and hashing
    (after the header checks), which callers use to bound how many images are in memory at once.
    Raises UndecodableImage (a ValueError) for anything that isn't a decodable image.
    """
    with _open(stream, max_pixels, formats) as image:
        with decode_slot():
            _load(image)
            return hash_photo_image(image)


def hash_photo_bytes(
    data: bytes, *, max_pixels: int | None = None, formats: Sequence[str] | None = PHOTO_FORMATS
) -> PhotoHash:
    """PDQ hash and quality of an image file's bytes; see hash_photo_stream."""
    if not data:
        raise UndecodableImage("no image data (0 bytes)")
    return hash_photo_stream(io.BytesIO(data), max_pixels=max_pixels, formats=formats)


def hash_photo_file(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None = None,
    formats: Sequence[str] | None = PHOTO_FORMATS,
) -> PhotoHash:
    """PDQ hash and quality of an image file; see hash_photo_stream. OSError if it can't be read."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise UndecodableImage("no image data (0 bytes)")
        return hash_photo_stream(handle, max_pixels=max_pixels, formats=formats)


def warm_up() -> None:
    """
    Hash a few tiny images, one per pixel layout the kernels are compiled for (RGB read in place,
    RGB copied out, grey), so numba's machine code is loaded (or compiled and cached) now.
    """
    pattern = np.add.outer(np.arange(16), np.arange(16)).astype(np.uint8) * 8
    rgb = Image.fromarray(np.dstack([pattern, pattern.T, 255 - pattern]), "RGB")
    for image in (rgb, rgb.convert("RGBA"), rgb.convert("YCbCr"), rgb.convert("L"), rgb.convert("1")):
        hash_photo_image(image)
