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


# pdqhash's luma weights (Python floats, i.e. float64, as in its .pyx).
LUMA_R = 0.299
LUMA_G = 0.587
LUMA_B = 0.114

# Rows filtered side by side in the rows passes: one running sum is a chain of dependent float
# adds, bound by their latency; independent chains keep the adders busy. Eight rather than four,
# each eight rows one block of the arrays: the whole filter of a 1 MP photo 1.83 -> 1.60 ms
# (2026-12-04).
ROWS_AT_ONCE = 8


@_jit
def luma_row_words(words, out):
    """
    out = float32((R*0.299 + G*0.587) + B*0.114) in float64 arithmetic, the reference's very
    expression, for one row of 4-byte pixels read as little-endian uint32 (R, G, B = bytes 0-2).
    Written as plain arithmetic on whole words, the compiler vectorises it (8 pixels at a time).
    """
    for c in range(out.shape[0]):
        p = words[c]
        red = np.float64(p & 255) * LUMA_R
        green = np.float64((p >> 8) & 255) * LUMA_G
        blue = np.float64((p >> 16) & 255) * LUMA_B
        out[c] = np.float32((red + green) + blue)


@_jit
def luma_row_channels(pixels, red, green, blue, out):
    """
    The same luma for one row (cols, >=3) of interleaved uint8 channels (0-2 used as R, G, B):
    red/green/blue hold v*0.299 etc. for v in 0..255, the same float64 products, looked up.
    """
    for c in range(out.shape[0]):
        out[c] = np.float32((red[pixels[c, 0]] + green[pixels[c, 1]]) + blue[pixels[c, 2]])


@_jit
def luma_row_grey(levels, table, out):
    """out = table[levels]: the luma of R=G=B=v, computed once per grey level by the same expression."""
    for c in range(out.shape[0]):
        out[c] = table[levels[c]]


@_jit
def luma_from_rgb(image, red, green, blue, out):
    """The luma plane of image (rows, cols, >=3) into out (rows, cols)."""
    for r in range(out.shape[0]):
        luma_row_channels(image[r], red, green, blue, out[r])


@_jit
def luma_from_words(words, out):
    """The luma plane of (rows, cols) 4-byte pixels read as uint32 into out (rows, cols)."""
    for r in range(out.shape[0]):
        luma_row_words(words[r], out[r])


@_jit
def luma_from_grey(grey, table, out):
    """out = table[grey] over a (rows, cols) plane."""
    for r in range(out.shape[0]):
        luma_row_grey(grey[r], table, out[r])


@_jit
def _window_sums8(x, w, slot, o):
    """
    The running sums of C++ box1DFloat (window w) along the eight rows of x (8, n) side by side,
    NOT divided, into the rows of o (8, m): o[:, slot[k]] = the float32 sum of output k's window,
    for each output k with slot[k] >= 0. Each row is its own scalar chain (taken from x and o as
    whole blocks: eight separate row arguments made the same loop a third slower). The
    sum starts at 0.0f and takes +x[k] for the first half-1 pixels (no output), then +x[k] with an
    output each (growing window), then +x[k+w], -x[k] (full window), then -x[k] (shrinking).
    """
    x0, x1, x2, x3, x4, x5, x6, x7 = x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]
    o0, o1, o2, o3, o4, o5, o6, o7 = o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]
    n = x0.shape[0]
    half = (w + 2) // 2
    m = n - w
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
    for k in range(half - 1):
        s0 += x0[k]
        s1 += x1[k]
        s2 += x2[k]
        s3 += x3[k]
        s4 += x4[k]
        s5 += x5[k]
        s6 += x6[k]
        s7 += x7[k]
    o = 0
    for k in range(half - 1, w):
        s0 += x0[k]
        s1 += x1[k]
        s2 += x2[k]
        s3 += x3[k]
        s4 += x4[k]
        s5 += x5[k]
        s6 += x6[k]
        s7 += x7[k]
        d = slot[o]
        if d >= 0:
            o0[d], o1[d], o2[d], o3[d], o4[d], o5[d], o6[d], o7[d] = s0, s1, s2, s3, s4, s5, s6, s7
        o += 1
    for k in range(m):
        s0 = (s0 + x0[k + w]) - x0[k]
        s1 = (s1 + x1[k + w]) - x1[k]
        s2 = (s2 + x2[k + w]) - x2[k]
        s3 = (s3 + x3[k + w]) - x3[k]
        s4 = (s4 + x4[k + w]) - x4[k]
        s5 = (s5 + x5[k + w]) - x5[k]
        s6 = (s6 + x6[k + w]) - x6[k]
        s7 = (s7 + x7[k + w]) - x7[k]
        d = slot[o]
        if d >= 0:
            o0[d], o1[d], o2[d], o3[d], o4[d], o5[d], o6[d], o7[d] = s0, s1, s2, s3, s4, s5, s6, s7
        o += 1
    for k in range(half - 1):
        s0 -= x0[m + k]
        s1 -= x1[m + k]
        s2 -= x2[m + k]
        s3 -= x3[m + k]
        s4 -= x4[m + k]
        s5 -= x5[m + k]
        s6 -= x6[m + k]
        s7 -= x7[m + k]
        d = slot[o]
        if d >= 0:
            o0[d], o1[d], o2[d], o3[d], o4[d], o5[d], o6[d], o7[d] = s0, s1, s2, s3, s4, s5, s6, s7
        o += 1


@_jit
def _window_length(o, n, w):
    """The window length box1DFloat divides output o of n by: growing (half..), w, then shrinking."""
    half = (w + 2) // 2
    grow = w - half + 1  # outputs of the growing window
    if o < grow:
        return o + half
    if o < grow + n - w:
        return w
    return w - 1 - (o - grow - (n - w))


@_jit
def _divide_by_window(row, w):
    """
    Divide a row of _window_sums8 output (every output kept) by each output's window length (float32 / float32,
    as box1DFloat does): the growing lengths half..w-1, then w, then the shrinking w-1.. . Done
    apart from the sums, this is a loop the compiler vectorises (16 divisions per instruction).
    """
    n = row.shape[0]
    grow = w - (w + 2) // 2 + 1  # outputs of the growing window
    for o in range(grow):
        row[o] = row[o] / np.float32(_window_length(o, n, w))
    size = np.float32(w)
    middle = row[grow : grow + n - w]  # indexed from 0, so the compiler sees no negative index
    for i in range(middle.shape[0]):
        middle[i] = middle[i] / size
    for o in range(grow + n - w, n):
        row[o] = row[o] / np.float32(_window_length(o, n, w))


@_jit
def _sampled_slots(samples, n):
    """The slot array of _window_sums8 that keeps outputs samples[j] (increasing) at j."""
    slot = np.full(n, -1, dtype=np.intp)
    for j in range(samples.shape[0] - 1, -1, -1):  # a repeated sample keeps its first j
        slot[samples[j]] = j
    return slot


@_jit
def _sampled_finish(out, samples, n, w):
    """Outputs of _window_sums8 with _sampled_slots: fill repeated samples, divide each by its window."""
    for j in range(1, samples.shape[0]):
        if samples[j] == samples[j - 1]:
            out[j] = out[j - 1]
    for j in range(samples.shape[0]):
        out[j] = out[j] / np.float32(_window_length(samples[j], n, w))


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


# Where the first rows pass reads its luma from (jarosz_64x64's `kind`).
FROM_WORDS, FROM_CHANNELS, FROM_GREY, FROM_LUMA = 0, 1, 2, 3


@_jit
def _luma_lines(kind, r, last, words, channels, grey, luma, red, green, blue, table, lines):
    """The luma of rows r..r+7 (clamped to the last row) into lines (8, cols), from `kind`'s array."""
    for i in range(ROWS_AT_ONCE):
        row = min(r + i, last)
        if kind == FROM_WORDS:
            luma_row_words(words[row], lines[i])
        elif kind == FROM_CHANNELS:
            luma_row_channels(channels[row], red, green, blue, lines[i])
        elif kind == FROM_GREY:
            luma_row_grey(grey[row], table, lines[i])
        else:
            lines[i, :] = luma[row]


@_jit
def jarosz_64x64(
    kind, rows, cols, words, channels, grey, luma, red, green, blue, table, w_rows, w_cols, row_samples, col_samples
):  # fmt: skip
    """
    jaroszFilterFloat (a rows pass then a columns pass, twice) then decimateFloat to 64x64, of
    the rows x cols luma read from `kind`'s array (the others are unused placeholders).

    Streamed, so no full-size float plane is ever stored: the columns pass of round one is the
    main loop; each input row it needs is made on demand, eight rows at a time (luma, then the
    rows pass, written into a ring of w_cols + 8 rows), and each row it outputs goes, eight at a
    time, through the rows pass of round two, which keeps only the 64 sampled columns (the only
    ones decimated); the columns pass of round two then runs on those rows x 64 values. Every
    sum and division is the C++'s, in its order, so the result is bit-for-bit the same.
    """
    last = rows - 1
    half = (w_cols + 2) // 2
    # Input rows are made eight at a time when the columns pass first adds one (row k, as it
    # subtracts row k - w_cols), up to k + 7: w_cols + 8 lines hold all it may still read. A
    # multiple of 8, so each eight land in one block of the ring; those past the image's last row
    # (made from it, by clamping) fill lines no longer read.
    ring_rows = (w_cols + 2 * ROWS_AT_ONCE - 1) // ROWS_AT_ONCE * ROWS_AT_ONCE
    ring = np.empty((ring_rows, cols), dtype=np.float32)
    every = np.arange(cols)  # the first rows pass keeps every output
    kept = _sampled_slots(col_samples, cols)  # the second keeps the sampled columns
    lines = np.empty((ROWS_AT_ONCE, cols), dtype=np.float32)
    outs = np.empty((ROWS_AT_ONCE, cols), dtype=np.float32)  # columns pass output, 8 rows
    # The second rows pass's output, eight rows at a time: the last block may run past the image's
    # last row (its extra rows are never read).
    picked = np.empty((rows + ROWS_AT_ONCE, 64), dtype=np.float32)
    sums = np.zeros(cols, dtype=np.float32)
    made = 0  # input rows made so far (rows pass of round one done)
    o = 0  # output rows of the columns pass so far
    for step in range(rows + half - 1):
        # Which input rows this step of box1DFloat (down the columns) adds and subtracts.
        if step < w_cols:
            add, sub = step, -1
        elif step < rows:
            add, sub = step, step - w_cols
        else:
            add, sub = -1, step - w_cols
        while add >= made:
            _luma_lines(kind, made, last, words, channels, grey, luma, red, green, blue, table, lines)
            block = made % ring_rows
            _window_sums8(lines, w_rows, every, ring[block : block + ROWS_AT_ONCE])
            for i in range(min(ROWS_AT_ONCE, last + 1 - made)):
                _divide_by_window(ring[block + i], w_rows)
            made += ROWS_AT_ONCE
        if add >= 0 and sub >= 0:
            entering, leaving = ring[add % ring_rows], ring[sub % ring_rows]
            for j in range(cols):
                sums[j] = (sums[j] + entering[j]) - leaving[j]
        elif add >= 0:
            entering = ring[add % ring_rows]
            for j in range(cols):
                sums[j] += entering[j]
        else:
            leaving = ring[sub % ring_rows]
            for j in range(cols):
                sums[j] -= leaving[j]
        if step < half - 1:
            continue  # the window's first rows give no output yet
        # The window length of output o: growing, full, then shrinking (as box1DFloat).
        if step < w_cols:
            size = np.float32(step + 1)
        elif step < rows:
            size = np.float32(w_cols)
        else:
            size = np.float32(w_cols - 1 - (step - rows))
        out = outs[o % ROWS_AT_ONCE]
        for j in range(cols):
            out[j] = sums[j] / size
        o += 1
        if o % ROWS_AT_ONCE == 0 or o == rows:
            first = o - 1 - (o - 1) % ROWS_AT_ONCE
            top = o - 1 - first  # the last of these rows (7 but at the end; outs past it are stale)
            _window_sums8(outs, w_rows, kept, picked[first : first + ROWS_AT_ONCE])
            for i in range(top + 1):
                _sampled_finish(picked[first + i], col_samples, cols, w_rows)
    filtered = np.empty((rows, 64), dtype=np.float32)
    box_cols(picked[:rows], w_cols, filtered)
    result = np.empty((64, 64), dtype=np.float32)
    for i in range(64):
        for j in range(64):
            result[i, j] = filtered[row_samples[i], j]
    return result


@_jit
def quality_64x64(buffer64):
    """
    pdqImageDomainQualityMetric of a 64x64 float32 buffer: the sum over vertical and horizontal
    neighbours of |int(((u - v) * 100) / 255)| (float32 arithmetic, truncated), / 90, at most 100.
    """
    hundred, scale = np.float32(100), np.float32(255)
    total = 0
    for i in range(63):
        for j in range(64):
            total += abs(int(((buffer64[i, j] - buffer64[i + 1, j]) * hundred) / scale))
    for i in range(64):
        for j in range(63):
            total += abs(int(((buffer64[i, j] - buffer64[i, j + 1]) * hundred) / scale))
    return min(total // 90, 100)


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
