"""
The pixel-level steps of PDQ (luma, the Jarosz filter, decimation, the DCT), compiled with numba.

Each kernel repeats the C++ reference's float32 (or float64) operations in the same order, so
the results are bit-for-bit pdqhash's, not merely close: no fastmath (which would let LLVM
reorder sums or fuse multiply-adds), and every division is float32 / float32 as in the C++.
They release the GIL (nogil): threads hashing different images run in parallel.

The machine code is cached on disk (in __pycache__ beside this file, or in NUMBA_CACHE_DIR), so
only the first process on a machine pays the few seconds of compilation; where no cache directory
is writable, each process compiles in memory instead. hashing.core.warm_up() does it up front.
"""

import numpy as np
from numba import njit

# error_model="numpy": a float division by zero would give inf instead of raising (none can
# happen, every divisor is a window length >= 1), which keeps a branch out of the inner loops.
_OPTIONS = {"nogil": True, "error_model": "numpy"}


def _jit(function):
    try:
        return njit(cache=True, **_OPTIONS)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available" (read-only install)
        return njit(**_OPTIONS)(function)


@_jit
def luma_from_rgb(image, red, green, blue, out):
    """
    out = float32((R*0.299 + G*0.587) + B*0.114) in float64 arithmetic, from channels 0-2 of
    image (rows, cols, >=3). red/green/blue hold v*0.299 etc. for v in 0..255, the very same
    float64 products, so a lookup replaces three conversions and multiplications per pixel.
    """
    rows, cols = out.shape
    for r in range(rows):
        pixels = image[r]
        luma = out[r]
        for c in range(cols):
            luma[c] = np.float32((red[pixels[c, 0]] + green[pixels[c, 1]]) + blue[pixels[c, 2]])


@_jit
def luma_from_grey(grey, table, out):
    """out = table[grey]: the luma of R=G=B=v, computed once per grey level by the same expression."""
    rows, cols = out.shape
    for r in range(rows):
        levels = grey[r]
        luma = out[r]
        for c in range(cols):
            luma[c] = table[levels[c]]


@_jit
def box_rows(x, w, out):
    """
    C++ box1DFloat (window w) along every row of x (rows, n) into out (same shape).

    The running sum starts at 0.0f and takes +x[k] for the first half-1 pixels (no output), then
    +x[k] with an output each (growing window), then +x[k+w], -x[k] (full window), then -x[k]
    (shrinking window); each output is the sum over the current window length.

    Four rows run side by side: one running sum is a chain of dependent float adds, bound by
    their latency, and four independent chains keep the adders busy (about 2.5x faster). When
    rows isn't a multiple of four the last row is simply done more than once.
    """
    rows, n = x.shape
    half = (w + 2) // 2
    m = n - w
    last = rows - 1
    for r in range(0, rows, 4):
        x0, x1, x2, x3 = x[r], x[min(r + 1, last)], x[min(r + 2, last)], x[min(r + 3, last)]
        o0, o1, o2, o3 = out[r], out[min(r + 1, last)], out[min(r + 2, last)], out[min(r + 3, last)]
        s0 = s1 = s2 = s3 = np.float32(0.0)
        for k in range(half - 1):
            s0 += x0[k]
            s1 += x1[k]
            s2 += x2[k]
            s3 += x3[k]
        o = 0
        for k in range(half - 1, w):
            size = np.float32(k + 1)
            s0 += x0[k]
            s1 += x1[k]
            s2 += x2[k]
            s3 += x3[k]
            o0[o], o1[o], o2[o], o3[o] = s0 / size, s1 / size, s2 / size, s3 / size
            o += 1
        size = np.float32(w)
        for k in range(m):
            s0 = (s0 + x0[k + w]) - x0[k]
            s1 = (s1 + x1[k + w]) - x1[k]
            s2 = (s2 + x2[k + w]) - x2[k]
            s3 = (s3 + x3[k + w]) - x3[k]
            o0[o], o1[o], o2[o], o3[o] = s0 / size, s1 / size, s2 / size, s3 / size
            o += 1
        for k in range(half - 1):
            size = np.float32(w - 1 - k)
            s0 -= x0[m + k]
            s1 -= x1[m + k]
            s2 -= x2[m + k]
            s3 -= x3[m + k]
            o0[o], o1[o], o2[o], o3[o] = s0 / size, s1 / size, s2 / size, s3 / size
            o += 1


@_jit
def box_cols(x, w, out):
    """
    C++ box1DFloat (window w) down every column of x (n, cols) into out (same shape): the same
    steps as box_rows, each one a whole row of independent sums, which the compiler vectorises.
    """
    n, cols = x.shape
    half = (w + 2) // 2
    sums = np.zeros(cols, dtype=np.float32)
    for k in range(half - 1):
        for j in range(cols):
            sums[j] += x[k, j]
    o = 0
    for k in range(half - 1, w):
        size = np.float32(k + 1)
        for j in range(cols):
            sums[j] += x[k, j]
            out[o, j] = sums[j] / size
        o += 1
    size = np.float32(w)
    for k in range(n - w):
        for j in range(cols):
            sums[j] = (sums[j] + x[k + w, j]) - x[k, j]
            out[o, j] = sums[j] / size
        o += 1
    for k in range(half - 1):
        size = np.float32(w - 1 - k)
        for j in range(cols):
            sums[j] -= x[n - w + k, j]
            out[o, j] = sums[j] / size
        o += 1


@_jit
def jarosz_64x64(luma, scratch, w_rows, w_cols, row_samples, col_samples):
    """
    jaroszFilterFloat (a rows pass then a columns pass, twice) then decimateFloat to 64x64.

    luma and scratch are (rows, cols) float32 and both are overwritten. The second columns pass
    only filters the 64 sampled columns, as only they are decimated.
    """
    rows = luma.shape[0]
    box_rows(luma, w_rows, scratch)
    box_cols(scratch, w_cols, luma)
    box_rows(luma, w_rows, scratch)
    picked = np.empty((rows, 64), dtype=np.float32)
    for r in range(rows):
        for j in range(64):
            picked[r, j] = scratch[r, col_samples[j]]
    filtered = np.empty((rows, 64), dtype=np.float32)
    box_cols(picked, w_cols, filtered)
    out = np.empty((64, 64), dtype=np.float32)
    for i in range(64):
        for j in range(64):
            out[i, j] = filtered[row_samples[i], j]
    return out


@_jit
def dct_16x16(buffer64, dct):
    """dct64To16: T = D A then B = T D^T, every dot product summed in k order in float32."""
    t = np.zeros((16, 64), dtype=np.float32)
    for k in range(64):
        for i in range(16):
            d = dct[i, k]
            for j in range(64):
                t[i, j] += d * buffer64[k, j]
    b = np.zeros((16, 16), dtype=np.float32)
    for k in range(64):
        for i in range(16):
            v = t[i, k]
            for j in range(16):
                b[i, j] += v * dct[j, k]
    return b
