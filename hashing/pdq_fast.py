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
* runs four rows' running sums side by side in the rows pass, and vectorises the columns pass
  across columns, where the C++ walks one pixel at a time and strides through memory going down
  a column;
* in the second round, filters down only the 64 columns that are sampled;
* reuses two full-size float32 buffers per thread (see WORKSPACE_MAX_PIXELS) instead of
  allocating several large arrays per image, whose page faults are a large part of the cost;
* releases the GIL, so threads can hash different images in parallel.
"""

import math
import threading

import numpy as np

from hashing import pdq_kernels

# The weights pdqhash applies (as Python floats, i.e. float64, exactly as in its .pyx).
LUMA_R = 0.299
LUMA_G = 0.587
LUMA_B = 0.114

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


def decimation_indices(dimension: int) -> np.ndarray:
    """decimateFloat's sample positions: int(((i + 0.5) * n) / 64) in double precision."""
    return np.array([int(((i + 0.5) * dimension) / DOWNSAMPLE) for i in range(DOWNSAMPLE)], dtype=np.intp)


# ---------------------------------------------------------------------------------------------
# Workspace: the two full-size float32 buffers are kept per thread and reused, because fresh
# large allocations are paid for in page faults on every call.


WORKSPACE_MAX_PIXELS = 16_000_000  # bigger images get one-off buffers; 0 disables the reuse
_local = threading.local()


def _buffers(pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 buffers of at least `pixels` elements: this thread's, or one-off ones if big."""
    if pixels > WORKSPACE_MAX_PIXELS:
        return np.empty(pixels, dtype=np.float32), np.empty(pixels, dtype=np.float32)
    buffers = getattr(_local, "buffers", None)
    if buffers is None or buffers[0].size < pixels:
        _local.buffers = None  # free the old buffers before allocating new ones
        buffers = _local.buffers = (np.empty(pixels, dtype=np.float32), np.empty(pixels, dtype=np.float32))
    return buffers


def release_workspace() -> None:
    """Free the calling thread's reusable buffers (they are kept between hashes otherwise)."""
    _local.buffers = None


# ---------------------------------------------------------------------------------------------
# 64x64 -> quality, DCT, bits


def quality_from_64x64(buffer64: np.ndarray) -> int:
    """pdqImageDomainQualityMetric: sum of |int(((u - v) * 100) / 255)| over neighbours, / 90."""
    hundred, scale = np.float32(100), np.float32(255)
    vertical = ((buffer64[:-1, :] - buffer64[1:, :]) * hundred) / scale
    horizontal = ((buffer64[:, :-1] - buffer64[:, 1:]) * hundred) / scale
    gradient_sum = int(np.abs(vertical.astype(np.int32)).sum())
    gradient_sum += int(np.abs(horizontal.astype(np.int32)).sum())
    return min(gradient_sum // 90, 100)


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


def _buffer64(rows: int, cols: int, fill_luma) -> np.ndarray:
    """The 64x64 filtered, decimated luma of a rows x cols image that fill_luma(out) writes."""
    pixels = rows * cols
    full1, full2 = _buffers(pixels)
    luma, scratch = full1[:pixels].reshape(rows, cols), full2[:pixels].reshape(rows, cols)
    fill_luma(luma)
    if rows == DOWNSAMPLE and cols == DOWNSAMPLE:  # the C++ skips the filter for 64x64 input
        return luma.copy()
    return pdq_kernels.jarosz_64x64(
        luma,
        scratch,
        jarosz_window(cols),  # window along each row (C++: windowSizeAlongRows)
        jarosz_window(rows),
        decimation_indices(rows),
        decimation_indices(cols),
    )


def _pdq(rows: int, cols: int, fill_luma) -> tuple[np.ndarray, int]:
    """(bits, quality) of a rows x cols image whose luma fill_luma(out) writes."""
    if rows < MIN_HASHABLE_DIM or cols < MIN_HASHABLE_DIM:
        return np.zeros(256, dtype=np.uint8), 0
    buffer64 = _buffer64(rows, cols, fill_luma)
    return bits_from_dct(dct_16x16(buffer64)), quality_from_64x64(buffer64)


def _rgb_filler(image: np.ndarray):
    """fill_luma for a (rows, cols, >=3) uint8 array, checked and made C-contiguous once."""
    if image.ndim != 3 or image.shape[2] < 3 or 0 in image.shape[:2]:
        raise ValueError("expected a non-empty (rows, cols, channels>=3) array")
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return lambda out: pdq_kernels.luma_from_rgb(image, _RED, _GREEN, _BLUE, out)


def pdq_from_rgb_array(image: np.ndarray) -> tuple[np.ndarray, int]:
    """
    Drop-in for pdqhash.compute(image) on a (rows, cols, >=3) uint8 array: (256 hash bits as
    uint8 0/1 in pdqhash's order, quality). Channels 0, 1, 2 are used as R, G, B whatever they
    mean (as pdqhash does).
    """
    fill = _rgb_filler(image)
    return _pdq(image.shape[0], image.shape[1], fill)


def pdq_from_grey(grey: np.ndarray) -> tuple[np.ndarray, int]:
    """(bits, quality) of a uint8 (rows x cols) plane used as R = G = B (pdqhash on a grey image)."""
    if grey.ndim != 2 or 0 in grey.shape:
        raise ValueError("expected a non-empty 2-D plane")
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    return _pdq(*grey.shape, lambda out: pdq_kernels.luma_from_grey(grey, GREY_LUMA, out))


def pdq_from_luma(luma: np.ndarray) -> tuple[np.ndarray, int]:
    """(bits, quality) from a float32 (rows x cols) luma array (the input is not modified)."""
    if luma.ndim != 2 or 0 in luma.shape:
        raise ValueError("expected a non-empty 2-D array")

    def fill(out: np.ndarray) -> None:
        out[...] = luma

    return _pdq(*luma.shape, fill)


def pdq_float_from_rgb_array(image: np.ndarray) -> tuple[np.ndarray, int]:
    """
    Drop-in for pdqhash.compute_float(image): the 256 float32 DCT coefficients (in its order) and
    the quality. Unlike the hash, these are computed for images under 5 pixels on a side too.
    """
    fill = _rgb_filler(image)
    buffer64 = _buffer64(image.shape[0], image.shape[1], fill)
    return dct_16x16(buffer64).reshape(256)[::-1].copy(), quality_from_64x64(buffer64)
