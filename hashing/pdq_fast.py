"""
PDQ, bit-for-bit equal to pdqhash (the C++ reference wrapped by python-threatexchange), faster.

pdqhash.compute(image) does, in this order:

1. luma = (R*0.299 + G*0.587 + B*0.114).astype(float32), in numpy float64 arithmetic;
2. Jarosz tent filter: a 1-D box filter along every row, then along every column, twice
   (C++ `box1DFloat`: one float32 running sum, +entering pixel then -leaving pixel, divided by
   the window length), window = computeJaroszFilterWindowSize(dimension, 64);
3. decimation to 64x64 by sampling the filtered image at the 64x64 cell centres;
4. quality from the 64x64 image's gradients, a 16x16 DCT of it (float32 dot products in index
   order), bit k of the hash = DCT coefficient k > median of the 256 coefficients.

hashing.pdq_kernels runs steps 1-3 and the DCT as numba-compiled loops doing the same float
operations in the same order, so the results are identical, not merely close (the tests compare
hashes, qualities and the float DCT output bit for bit against pdqhash). It is about 6x faster
than pdqhash on a 1 MP photo because it

* reads the image's interleaved pixels in place and takes each channel's float64 product from a
  256-entry table (the same products), instead of numpy float64 temporaries of the whole image;
* runs eight rows' running sums side by side in the rows pass, and vectorises the columns pass
  across columns, where the C++ walks one pixel at a time and strides through memory going down
  a column;
* in the second round, filters down only the 64 columns that are sampled;
* reuses two full-size float32 buffers per thread (see WORKSPACE_MAX_PIXELS) instead of
  allocating several large arrays per image, whose page faults are a large part of the cost;
* releases the GIL, so threads can hash different images in parallel.
"""

import functools
import math
import sys
from typing import NamedTuple

import numpy as np

from hashing import pdq_kernels

# The weights pdqhash applies (as Python floats, i.e. float64, exactly as in its .pyx).
LUMA_R = pdq_kernels.LUMA_R
LUMA_G = pdq_kernels.LUMA_G
LUMA_B = pdq_kernels.LUMA_B

DOWNSAMPLE = 64
MIN_HASHABLE_DIM = 5  # the C++ returns an all-zero hash and quality 0 below this


def _dct_matrix() -> np.ndarray:
    """The 16x64 DCT-II matrix as the C++ builds it: float32(float32(sqrt(2/64)) * cos(double))."""
    scale = float(np.float32(math.sqrt(2.0 / 64.0)))
    step = math.pi / 2.0 / 64.0
    rows = [[scale * math.cos(step * (i + 1) * (2 * j + 1)) for j in range(64)] for i in range(16)]
    return np.array(rows, dtype=np.float64).astype(np.float32)


_DCT = _dct_matrix()  # (16, 64)

# Each channel's float64 product for every byte value: the exact terms of pdqhash's expression.
_LEVELS = np.arange(256, dtype=np.uint8)
_RED, _GREEN, _BLUE = (_LEVELS * weight for weight in (LUMA_R, LUMA_G, LUMA_B))
# The luma of a grey pixel v (R=G=B=v), by the reference's exact float64 expression.
GREY_LUMA = (_LEVELS * LUMA_R + _LEVELS * LUMA_G + _LEVELS * LUMA_B).astype(np.float32)


def jarosz_window(dimension: int) -> int:
    """computeJaroszFilterWindowSize(dimension, 64)."""
    return (dimension + 2 * DOWNSAMPLE - 1) // (2 * DOWNSAMPLE)


@functools.lru_cache(maxsize=256)
def decimation_indices(dimension: int) -> np.ndarray:
    """decimateFloat's sample positions: int(((i + 0.5) * n) / 64) in double precision (read-only)."""
    indices = np.array([int(((i + 0.5) * dimension) / DOWNSAMPLE) for i in range(DOWNSAMPLE)], dtype=np.intp)
    indices.flags.writeable = False
    return indices


# ---------------------------------------------------------------------------------------------
# 64x64 -> quality, DCT, bits


def quality_from_64x64(buffer64: np.ndarray) -> int:
    """pdqImageDomainQualityMetric: sum of |int(((u - v) * 100) / 255)| over neighbours, / 90."""
    return int(pdq_kernels.quality_64x64(np.ascontiguousarray(buffer64, dtype=np.float32)))


def dct_16x16(buffer64: np.ndarray) -> np.ndarray:
    """dct64To16 of a 64x64 float32 buffer: the 16x16 float32 coefficients."""
    return pdq_kernels.dct_16x16(np.ascontiguousarray(buffer64, dtype=np.float32), _DCT)


def bits_from_dct(dct: np.ndarray) -> np.ndarray:
    """
    The 256 hash bits in python-threatexchange's order (bit vector as pdqhash.compute returns it):
    coefficient k is set when it is above the median. Torben's median in the C++ returns the 128th
    smallest of the 256 values, which is what np.partition gives.
    """
    flat = dct.reshape(256)
    median = np.partition(flat, 127)[127]
    return (flat > median)[::-1].astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Pipeline

_LITTLE_ENDIAN = sys.byteorder == "little"
# Placeholders for the pixel arrays jarosz_64x64 does not read (one per argument type).
_NO_WORDS = np.empty((0, 0), dtype=np.uint32)
_NO_CHANNELS = np.empty((0, 0, 3), dtype=np.uint8)
_NO_GREY = np.empty((0, 0), dtype=np.uint8)
_NO_LUMA = np.empty((0, 0), dtype=np.float32)


class _Source(NamedTuple):
    """One image's pixels for pdq_kernels.jarosz_64x64: the kind, and the array of that kind."""

    kind: int
    rows: int
    cols: int
    words: np.ndarray = _NO_WORDS
    channels: np.ndarray = _NO_CHANNELS
    grey: np.ndarray = _NO_GREY
    luma: np.ndarray = _NO_LUMA


def _luma_plane(source: _Source) -> np.ndarray:
    """The (rows, cols) float32 luma plane of `source` (used for 64x64 input only)."""
    out = np.empty((source.rows, source.cols), dtype=np.float32)
    if source.kind == pdq_kernels.FROM_WORDS:
        pdq_kernels.luma_from_words(source.words, out)
    elif source.kind == pdq_kernels.FROM_CHANNELS:
        pdq_kernels.luma_from_rgb(source.channels, _RED, _GREEN, _BLUE, out)
    elif source.kind == pdq_kernels.FROM_GREY:
        pdq_kernels.luma_from_grey(source.grey, GREY_LUMA, out)
    else:
        out[...] = source.luma
    return out


def _buffer64(source: _Source) -> np.ndarray:
    """The 64x64 filtered, decimated luma of the image read through `source`."""
    rows, cols = source.rows, source.cols
    if rows == DOWNSAMPLE and cols == DOWNSAMPLE:  # the C++ skips the filter for 64x64 input
        return _luma_plane(source)
    return pdq_kernels.jarosz_64x64(
        source.kind,
        rows,
        cols,
        source.words,
        source.channels,
        source.grey,
        source.luma,
        _RED,
        _GREEN,
        _BLUE,
        GREY_LUMA,
        jarosz_window(cols),  # window along each row (C++: windowSizeAlongRows)
        jarosz_window(rows),
        decimation_indices(rows),
        decimation_indices(cols),
    )


def _pdq(source: _Source) -> tuple[np.ndarray, int]:
    """(bits, quality) of the image read through `source`."""
    if source.rows < MIN_HASHABLE_DIM or source.cols < MIN_HASHABLE_DIM:
        return np.zeros(256, dtype=np.uint8), 0
    buffer64 = _buffer64(source)
    return bits_from_dct(dct_16x16(buffer64)), quality_from_64x64(buffer64)


def _rgb_source(image: np.ndarray) -> _Source:
    """The _Source of a (rows, cols, >=3) uint8 array, checked and made C-contiguous once."""
    if image.ndim != 3 or image.shape[2] < 3 or 0 in image.shape[:2]:
        raise ValueError("expected a non-empty (rows, cols, channels>=3) array")
    image = np.ascontiguousarray(image, dtype=np.uint8)
    rows, cols, channels = image.shape
    if channels == 4 and _LITTLE_ENDIAN:
        # Each pixel as one uint32 word (R in the low byte): the luma loop then vectorises.
        return _Source(pdq_kernels.FROM_WORDS, rows, cols, words=image.view(np.uint32).reshape(rows, cols))
    return _Source(pdq_kernels.FROM_CHANNELS, rows, cols, channels=image)


def pdq_from_rgb_array(image: np.ndarray) -> tuple[np.ndarray, int]:
    """
    Drop-in for pdqhash.compute(image) on a (rows, cols, >=3) uint8 array: (256 hash bits as
    uint8 0/1 in pdqhash's order, quality). Channels 0, 1, 2 are used as R, G, B whatever they
    mean (as pdqhash does).
    """
    return _pdq(_rgb_source(image))


def pdq_from_grey(grey: np.ndarray) -> tuple[np.ndarray, int]:
    """(bits, quality) of a uint8 (rows x cols) plane used as R = G = B (pdqhash on a grey image)."""
    if grey.ndim != 2 or 0 in grey.shape:
        raise ValueError("expected a non-empty 2-D plane")
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    return _pdq(_Source(pdq_kernels.FROM_GREY, *grey.shape, grey=grey))


def pdq_from_luma(luma: np.ndarray) -> tuple[np.ndarray, int]:
    """(bits, quality) from a float32 (rows x cols) luma array (the input is not modified)."""
    if luma.ndim != 2 or 0 in luma.shape:
        raise ValueError("expected a non-empty 2-D array")
    luma = np.ascontiguousarray(luma, dtype=np.float32)
    return _pdq(_Source(pdq_kernels.FROM_LUMA, *luma.shape, luma=luma))


def pdq_float_from_rgb_array(image: np.ndarray) -> tuple[np.ndarray, int]:
    """
    Drop-in for pdqhash.compute_float(image): the 256 float32 DCT coefficients (in its order) and
    the quality. Unlike the hash, these are computed for images under 5 pixels on a side too.
    """
    buffer64 = _buffer64(_rgb_source(image))
    return dct_16x16(buffer64).reshape(256)[::-1].copy(), quality_from_64x64(buffer64)
