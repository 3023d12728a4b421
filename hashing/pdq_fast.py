"""
PDQ in numpy, bit-for-bit equal to pdqhash (the C++ reference wrapped by python-threatexchange).

pdqhash.compute(image) does, in this order:

1. luma = (R*0.299 + G*0.587 + B*0.114).astype(float32), in numpy float64 arithmetic;
2. Jarosz tent filter: a 1-D box filter along every row, then along every column, twice
   (C++ `box1DFloat`: one float32 running sum, +entering pixel then -leaving pixel, divided by
   the window length), window = computeJaroszFilterWindowSize(dimension, 64);
3. decimation to 64x64 by sampling the filtered image at the 64x64 cell centres;
4. quality from the 64x64 image's gradients, a 16x16 DCT of it (float32 dot products in index
   order), bit k of the hash = DCT coefficient k > median of the 256 coefficients.

This module reproduces every step with the same float32 (or float64) operations in the same order,
so the results are identical, not merely close (the tests compare hashes, qualities and the float
DCT output bit for bit). It is faster because it

* vectorises the running sums across rows/columns: one numpy add and one subtract per step, for a
  whole row of lanes, where the C++ walks one pixel at a time and its column pass strides through
  memory (about 6x slower than its row pass on a 12 MP image);
* runs the second row pass only up to the last sampled column and keeps only the 64 sampled
  columns, and the second column pass on those 64 columns only;
* computes the luma in cache-sized bands instead of whole-image float64 temporaries;
* reuses two full-size float32 buffers per thread (see WORKSPACE_MAX_PIXELS) instead of
  allocating ~7 large arrays per image, whose page faults are a large part of the reference's cost.

Threads: numpy releases the GIL inside each add, but every step also costs ~1 us of interpreted
Python that holds it, so a second thread only adds ~20-30% throughput; use processes to scale.

Layout names used below: "A" is the image's own (rows x cols) layout; "B" is its transpose
(cols x rows), in which a box filter along rows runs along axis 0 with contiguous vectors.
"""

import math
import threading

import numpy as np

# The weights pdqhash applies (as Python floats, i.e. float64, exactly as in its .pyx).
LUMA_R = 0.299
LUMA_G = 0.587
LUMA_B = 0.114

DOWNSAMPLE = 64
MIN_HASHABLE_DIM = 5  # the C++ returns an all-zero hash and quality 0 below this

# Vectors narrower than this go through np.add.accumulate instead of a Python-level loop: the loop
# costs ~1 us per step whatever the width, so it only pays off when each step does enough work.
_LOOP_MIN_WIDTH = 192
# Row band height when computing the luma: small enough for the float64 temporaries to stay in cache.
_LUMA_BAND_ROWS = 32
# Row band height of the blocked transpose.
_TRANSPOSE_BAND_ROWS = 64


def _dct_matrix() -> np.ndarray:
    """The 16x64 DCT-II matrix as the C++ builds it: float32(float32(sqrt(2/64)) * cos(double))."""
    scale = float(np.float32(math.sqrt(2.0 / 64.0)))
    step = math.pi / 2.0 / 64.0
    rows = [[scale * math.cos(step * (i + 1) * (2 * j + 1)) for j in range(64)] for i in range(16)]
    return np.array(rows, dtype=np.float64).astype(np.float32)


_DCT = _dct_matrix()  # (16, 64)
_DCT_T = np.ascontiguousarray(_DCT.T)  # (64, 16)


def _grey_lut() -> np.ndarray:
    """luma of a grey pixel v (R=G=B=v), computed with the reference's exact float64 expression."""
    v = np.arange(256, dtype=np.uint8)
    return (v * LUMA_R + v * LUMA_G + v * LUMA_B).astype(np.float32)


GREY_LUMA = _grey_lut()


def jarosz_window(dimension: int) -> int:
    """computeJaroszFilterWindowSize(dimension, 64)."""
    return (dimension + 2 * DOWNSAMPLE - 1) // (2 * DOWNSAMPLE)


def decimation_indices(dimension: int) -> np.ndarray:
    """decimateFloat's sample positions: int(((i + 0.5) * n) / 64) in double precision."""
    return np.array([int(((i + 0.5) * dimension) / DOWNSAMPLE) for i in range(DOWNSAMPLE)], dtype=np.intp)


# ---------------------------------------------------------------------------------------------
# Workspace: the two full-size float32 buffers (and the luma's float64 band buffers) are kept per
# thread and reused, because fresh large allocations are paid for in page faults on every call.


WORKSPACE_MAX_PIXELS = 16_000_000  # bigger images get one-off buffers; 0 disables the reuse
_local = threading.local()


class _Workspace:
    def __init__(self, pixels: int, cols: int) -> None:
        self.pixels, self.cols = pixels, cols
        self.full1 = np.empty(pixels, dtype=np.float32)
        self.full2 = np.empty(pixels, dtype=np.float32)
        self.band1 = np.empty(_LUMA_BAND_ROWS * cols, dtype=np.float64)
        self.band2 = np.empty(_LUMA_BAND_ROWS * cols, dtype=np.float64)


def _workspace(pixels: int, cols: int) -> _Workspace:
    """This thread's workspace, grown if needed; a one-off one for images over the reuse limit."""
    if pixels > WORKSPACE_MAX_PIXELS:
        return _Workspace(pixels, cols)
    workspace = getattr(_local, "workspace", None)
    if workspace is None or workspace.pixels < pixels or workspace.cols < cols:
        pixels = max(pixels, workspace.pixels if workspace else 0)
        cols = max(cols, workspace.cols if workspace else 0)
        _local.workspace = workspace = None  # free the old buffers before allocating new ones
        workspace = _local.workspace = _Workspace(pixels, cols)
    return workspace


def release_workspace() -> None:
    """Free the calling thread's reusable buffers (they are kept between hashes otherwise)."""
    _local.workspace = None


# ---------------------------------------------------------------------------------------------
# Luma (into a float32 rows x cols buffer)


def _luma_from_planes(
    red: np.ndarray, green: np.ndarray, blue: np.ndarray, out: np.ndarray, ws: _Workspace
) -> None:
    """
    out = float32((R*0.299 + G*0.587) + B*0.114) with float64 products and sums, exactly
    pdqhash's expression; a band of rows at a time so the float64 temporaries stay in cache.
    """
    rows, cols = red.shape
    band = _LUMA_BAND_ROWS
    for r0 in range(0, rows, band):
        r1 = min(r0 + band, rows)
        a = ws.band1[: (r1 - r0) * cols].reshape(r1 - r0, cols)
        t = ws.band2[: (r1 - r0) * cols].reshape(r1 - r0, cols)
        a[...] = red[r0:r1]  # exact uint8 -> float64, then float64 products and sums
        a *= LUMA_R
        t[...] = green[r0:r1]
        t *= LUMA_G
        a += t
        t[...] = blue[r0:r1]
        t *= LUMA_B
        a += t
        out[r0:r1] = a  # float64 -> float32 rounds to nearest, like .astype("float32")


def _luma_from_grey(grey: np.ndarray, out: np.ndarray) -> None:
    """out = the luma of R=G=B=grey, by table lookup (same values as the expression)."""
    np.take(GREY_LUMA, grey, out=out, mode="clip")


def _transpose(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """x.T as a C-contiguous array, copied in bands of rows (about 2-3x faster than one copy)."""
    if out is None:
        out = np.empty(x.shape[::-1], dtype=x.dtype)
    band = _TRANSPOSE_BAND_ROWS
    for r0 in range(0, x.shape[0], band):
        out[:, r0 : r0 + band] = x[r0 : r0 + band].T
    return out


# ---------------------------------------------------------------------------------------------
# Box filter (C++ box1DFloat along axis 0 of a C-contiguous 2-D array, every column at once)


def _box_plan(n: int, w: int) -> tuple[int, int, np.ndarray]:
    """(half window, n - w, the window length each of the n outputs is divided by)."""
    half = (w + 2) // 2
    m = n - w
    parts = [np.arange(half, w + 1), np.full(m, w), np.arange(w - 1, w - half, -1)]
    return half, m, np.concatenate(parts).astype(np.float32)


def _box_loop(x: np.ndarray, w: int, keep: np.ndarray | None, out: np.ndarray | None) -> np.ndarray:
    """
    Box filter along axis 0 with one numpy call per add/subtract: s = (s + x[ri]) - x[li].

    The running sum of output position o is stored in row o of the output, and every row is divided
    by its window length at the end (the same float32 division the C++ does at each step). Without
    `keep`, all n rows are returned (in `out` if given). With `keep` (output row indices, duplicates
    allowed), only those rows are: the other positions' sums go to two scratch vectors.
    """
    n = x.shape[0]
    half, m, divisors = _box_plan(n, w)
    xs = list(x)
    if keep is None:
        if out is None:
            out = np.empty_like(x)
        outs = list(out)
        result = out
    else:
        wanted = np.unique(keep)
        n = int(wanted[-1]) + 1  # nothing after the last wanted output is needed
        result = np.empty((len(wanted),) + x.shape[1:], dtype=np.float32)
        scratch = (np.empty(x.shape[1:], dtype=np.float32), np.empty(x.shape[1:], dtype=np.float32))
        outs = [scratch[o & 1] for o in range(n)]
        for slot, o in enumerate(wanted.tolist()):
            outs[o] = result[slot]
        divisors = divisors[wanted]

    add = np.add
    total = np.zeros(x.shape[1:], dtype=np.float32)
    for k in range(half - 1):  # phase 1: accumulate, no output
        total += xs[k]
    prev = total
    p2 = w - half + 1
    for o, a in zip(outs[:p2], xs[half - 1 : w], strict=False):  # phase 2: growing window
        add(prev, a, o)
        prev = o
    for o, a, b in zip(outs[p2 : p2 + m], xs[w:], xs[:m], strict=False):  # phase 3: full window
        add(prev, a, o)
        o -= b
        prev = o
    for o, b in zip(outs[p2 + m : n], xs[m:], strict=False):  # phase 4: shrinking window
        np.subtract(prev, b, o)
        prev = o
    np.divide(result, divisors.reshape((-1,) + (1,) * (x.ndim - 1)), out=result)
    if keep is None:
        return result
    return result[np.searchsorted(wanted, keep)]


def _box_accumulate(x: np.ndarray, w: int, keep: np.ndarray | None) -> np.ndarray:
    """
    Same result as _box_loop, in a few numpy calls: lay out the sequence of terms the running sum
    sees (x0 .. x[w-1], then +x[w], -x[0], +x[w+1], -x[1], ..., then the final subtractions) and
    take np.add.accumulate, which sums strictly in order in float32 like the C++ loop. Faster than
    the loop when the vectors are narrow (many steps, little work per step).
    """
    n = x.shape[0]
    half, m, divisors = _box_plan(n, w)
    length = w + 2 * m + (half - 1)
    terms = np.empty((length + 1,) + x.shape[1:], dtype=np.float32)
    terms[0] = 0.0  # the C++ sum starts at 0.0f (matters only for the sign of a zero)
    body = terms[1:]
    body[:w] = x[:w]
    body[w : w + 2 * m : 2] = x[w:]
    np.negative(x[:m], out=body[w + 1 : w + 2 * m : 2])
    np.negative(x[m : m + half - 1], out=body[w + 2 * m :])
    np.add.accumulate(terms, axis=0, out=terms)
    positions = np.concatenate(
        [np.arange(half - 1, w), np.arange(w + 1, w + 2 * m, 2), np.arange(w + 2 * m, length)]
    )
    if keep is not None:
        positions, divisors = positions[keep], divisors[keep]
    sums = body[positions]
    return np.divide(sums, divisors.reshape((-1,) + (1,) * (x.ndim - 1)), out=sums)


def box_along_axis0(
    x: np.ndarray, w: int, keep: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """C++ box1DFloat(window w) applied down every column of the C-contiguous float32 array x."""
    width = int(np.prod(x.shape[1:], dtype=np.int64))
    if width >= _LOOP_MIN_WIDTH:
        return _box_loop(x, w, keep, out)
    result = _box_accumulate(x, w, keep)
    if out is not None and keep is None:
        out[...] = result
        return out
    return result


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
    """dct64To16: T = D A then B = T D^T, each dot product summed in k order in float32."""
    t = np.zeros((16, 64), dtype=np.float32)
    for k in range(64):  # T[i, j] += D[i, k] * A[k, j]: float32 product, then float32 sum
        t += _DCT[:, k : k + 1] * buffer64[k]
    b = np.zeros((16, 16), dtype=np.float32)
    for k in range(64):  # B[i, j] += T[i, k] * D[j, k]
        b += t[:, k : k + 1] * _DCT_T[k]
    return b


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


def _downsample(buf1: np.ndarray, buf2: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """
    The 64x64 Jarosz-filtered, decimated buffer from the luma in buf1 as layout B (cols x rows).
    buf1 and buf2 are flat float32 buffers of rows*cols elements; both are overwritten.
    """
    w_rows = jarosz_window(cols)  # window along each row (C++: windowSizeAlongRows)
    w_cols = jarosz_window(rows)
    as_a, as_b = (rows, cols), (cols, rows)
    box_along_axis0(buf1.reshape(as_b), w_rows, out=buf2.reshape(as_b))  # pass 1, rows
    _transpose(buf2.reshape(as_b), out=buf1.reshape(as_a))
    box_along_axis0(buf1.reshape(as_a), w_cols, out=buf2.reshape(as_a))  # pass 1, columns
    _transpose(buf2.reshape(as_a), out=buf1.reshape(as_b))
    # pass 2, rows: only the 64 sampled columns are needed -> (64 columns, rows)
    sampled_cols = box_along_axis0(buf1.reshape(as_b), w_rows, keep=decimation_indices(cols))
    # pass 2, columns: only the 64 sampled rows -> (64 rows, 64 columns)
    return box_along_axis0(np.ascontiguousarray(sampled_cols.T), w_cols, keep=decimation_indices(rows))


def _buffer64(rows: int, cols: int, fill_luma) -> np.ndarray:
    """The 64x64 downsample of a rows x cols image whose luma fill_luma(out, workspace) writes."""
    pixels = rows * cols
    ws = _workspace(pixels, cols)
    buf1, buf2 = ws.full1[:pixels], ws.full2[:pixels]
    fill_luma(buf2.reshape(rows, cols), ws)
    if rows == DOWNSAMPLE and cols == DOWNSAMPLE:  # the C++ skips the filter for 64x64 input
        return buf2.reshape(DOWNSAMPLE, DOWNSAMPLE).copy()
    _transpose(buf2.reshape(rows, cols), out=buf1.reshape(cols, rows))
    return _downsample(buf1, buf2, rows, cols)


def _pdq(rows: int, cols: int, fill_luma) -> tuple[np.ndarray, int]:
    """(bits, quality) of a rows x cols image whose luma fill_luma(out, workspace) writes."""
    if rows < MIN_HASHABLE_DIM or cols < MIN_HASHABLE_DIM:
        return np.zeros(256, dtype=np.uint8), 0
    buffer64 = _buffer64(rows, cols, fill_luma)
    return bits_from_dct(dct_16x16(buffer64)), quality_from_64x64(buffer64)


def pdq_from_planes(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> tuple[np.ndarray, int]:
    """
    (256 hash bits as uint8 0/1 in pdqhash.compute's order, quality) from three uint8
    (rows x cols) planes, as pdqhash.compute(np.dstack([red, green, blue])) would return.
    """
    if not (red.shape == green.shape == blue.shape) or red.ndim != 2 or 0 in red.shape:
        raise ValueError("expected three non-empty 2-D planes of the same shape")
    planes = [np.asarray(plane, dtype=np.uint8) for plane in (red, green, blue)]
    return _pdq(*red.shape, lambda out, ws: _luma_from_planes(*planes, out, ws))


def pdq_from_grey(grey: np.ndarray) -> tuple[np.ndarray, int]:
    """(bits, quality) of a uint8 (rows x cols) plane used as R = G = B (pdqhash on a grey image)."""
    if grey.ndim != 2 or 0 in grey.shape:
        raise ValueError("expected a non-empty 2-D plane")
    grey = np.asarray(grey, dtype=np.uint8)
    return _pdq(*grey.shape, lambda out, ws: _luma_from_grey(grey, out))


def pdq_from_luma(luma: np.ndarray) -> tuple[np.ndarray, int]:
    """(bits, quality) from a float32 (rows x cols) luma array (the input is not modified)."""
    if luma.ndim != 2 or 0 in luma.shape:
        raise ValueError("expected a non-empty 2-D array")

    def fill(out: np.ndarray, ws: _Workspace) -> None:
        out[...] = luma

    return _pdq(*luma.shape, fill)


def pdq_from_rgb_array(image: np.ndarray) -> tuple[np.ndarray, int]:
    """
    Drop-in for pdqhash.compute(image) on a (rows, cols, >=3) uint8 array: channels 0, 1, 2 are
    used as R, G, B whatever they mean (as pdqhash does).
    """
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError("expected a (rows, cols, channels>=3) array")
    return pdq_from_planes(image[:, :, 0], image[:, :, 1], image[:, :, 2])


def pdq_float_from_rgb_array(image: np.ndarray) -> tuple[np.ndarray, int]:
    """
    Drop-in for pdqhash.compute_float(image): the 256 float32 DCT coefficients (in its order) and
    the quality. Unlike the hash, these are computed for images under 5 pixels on a side too.
    """
    if image.ndim != 3 or image.shape[2] < 3 or 0 in image.shape:
        raise ValueError("expected a non-empty (rows, cols, channels>=3) array")
    rows, cols = image.shape[:2]
    planes = [np.asarray(image[:, :, c], dtype=np.uint8) for c in range(3)]
    buffer64 = _buffer64(rows, cols, lambda out, ws: _luma_from_planes(*planes, out, ws))
    return dct_16x16(buffer64).reshape(256)[::-1].copy(), quality_from_64x64(buffer64)
