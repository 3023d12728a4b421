"""
Exact-equality index (video MD5, URL, and any signal type compared by equality).

Values are held as fixed-width byte keys in one uint8 (N, W) array, sorted
lexicographically, with a parallel int64 ``ids`` array and a native uint64
copy of the first 8 key bytes (big-endian, so integer order == byte order) for
``np.searchsorted``.  A lookup binary-searches that prefix and compares the full
key only inside the (tiny) equal-prefix range.

Key encodings:

* ``"hex"``: every value is lowercase hex of one common even length (MD5 -> 16
  bytes).  A query that is not lowercase hex of that length matches nothing, so
  this is exactly Python string equality.
* ``"digest"``: any other strings: key = BLAKE2b-128 of the UTF-8 bytes.  Equal
  strings always match; distinct strings collide with probability ~2**-128.
* ``"auto"`` (default): ``"hex"`` when the values qualify, else ``"digest"``.
"""

from __future__ import annotations

import hashlib
import typing as t

import numpy as np

_HEX_DIGITS = b"0123456789abcdef"
ENCODINGS = ("hex", "digest")
DIGEST_BYTES = 16


def _is_lower_hex(s: bytes) -> bool:
    return not s.translate(None, _HEX_DIGITS)


def _digest(s: str) -> bytes:
    return hashlib.blake2b(s.encode("utf-8"), digest_size=DIGEST_BYTES).digest()


def _prefix_u64(keys: np.ndarray) -> np.ndarray:
    """First 8 bytes of each (N, W) key as native uint64, big-endian interpreted (zero padded)."""
    n, w = keys.shape
    buf = np.zeros((n, 8), dtype=np.uint8)
    buf[:, : min(8, w)] = keys[:, :8]
    return buf.view(">u8").reshape(n).astype(np.uint64)


def _words(keys: np.ndarray) -> np.ndarray:
    """(N, W) uint8 -> (N, ceil(W/8)) native uint64 of big-endian words (lexicographic order)."""
    n, w = keys.shape
    pad = (-w) % 8
    if pad:
        padded = np.zeros((n, w + pad), dtype=np.uint8)
        padded[:, :w] = keys
    else:
        padded = np.ascontiguousarray(keys)
    return padded.view(">u8").astype(np.uint64)


def _rows_sorted(words: np.ndarray) -> bool:
    """True if rows of ``words`` are in non-decreasing lexicographic order."""
    if words.shape[0] < 2 or words.shape[1] == 0:
        return True
    ok = np.ones(words.shape[0] - 1, dtype=bool)  # equal rows are fine
    for k in range(words.shape[1] - 1, -1, -1):
        a, b = words[:-1, k], words[1:, k]
        ok = (a < b) | ((a == b) & ok)
    return bool(ok.all())


class ExactIndex:
    """Immutable exact-match index; ``search(value) -> ids`` (int64 array)."""

    def __init__(
        self, keys: np.ndarray, ids: np.ndarray, encoding: str, sort: bool | str = True
    ) -> None:
        """keys (N, W) uint8 + ids; ``sort``: True, False (already sorted) or "auto" (check)."""
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}")
        keys = np.ascontiguousarray(keys, dtype=np.uint8)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if keys.ndim != 2 or keys.shape[0] != ids.shape[0]:
            raise ValueError("keys must be (N, W) uint8 with N == len(ids)")
        prefix = _prefix_u64(keys)
        if sort and keys.shape[0] > 1:
            words = _words(keys)
            if sort == "auto" and _rows_sorted(words):
                words = None
        else:
            words = None
        if words is not None:
            # lexsort: last key is primary -> reverse the word columns; ids break ties.
            order = np.lexsort(
                (ids,) + tuple(words[:, i] for i in range(words.shape[1] - 1, -1, -1))
            )
            keys, ids, prefix = keys[order], ids[order], prefix[order]
        self.keys = keys
        self.ids = ids
        self.encoding = encoding
        self._prefix = prefix
        self._deleted: np.ndarray | None = None

    @property
    def width(self) -> int:
        return int(self.keys.shape[1])

    @classmethod
    def build(
        cls,
        values: t.Sequence[str] | np.ndarray,
        ids: np.ndarray | t.Sequence[int] | None = None,
        *,
        encoding: str = "auto",
    ) -> ExactIndex:
        """
        values: list of strings, or a uint8 (N, W) array of raw keys (then
        ``encoding`` must be "hex" or "digest" describing how queries map to keys).
        """
        n = len(values)
        ids_arr = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if ids_arr.shape != (n,):
            raise ValueError(f"ids has shape {ids_arr.shape}, expected ({n},)")
        if isinstance(values, np.ndarray) and values.dtype == np.uint8:
            if encoding == "auto":
                encoding = "hex"
            if values.ndim != 2:
                raise ValueError(f"raw keys must be a (N, W) uint8 array, got shape {values.shape}")
            return cls(values, ids_arr, encoding)
        values = list(values)
        if encoding in ("auto", "hex"):
            keys = cls._hex_keys(values)
            if keys is not None:
                return cls(keys, ids_arr, "hex")
            if encoding == "hex":
                raise ValueError("values are not lowercase hex strings of one common even length")
        elif encoding != "digest":
            raise ValueError(f"unknown encoding {encoding!r}")
        keys = np.frombuffer(b"".join(map(_digest, values)), dtype=np.uint8).reshape(
            n, DIGEST_BYTES
        )
        return cls(keys, ids_arr, "digest")

    @staticmethod
    def _hex_keys(values: list[str]) -> np.ndarray | None:
        if not values:
            return np.empty((0, 0), dtype=np.uint8)
        w2 = len(values[0])
        if w2 == 0 or w2 % 2:
            return None
        lens = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        if np.any(lens != w2):
            return None
        try:
            joined = "".join(values).encode("ascii")
        except UnicodeEncodeError:
            return None
        if not _is_lower_hex(joined):
            return None
        return np.frombuffer(bytes.fromhex(joined.decode("ascii")), dtype=np.uint8).reshape(
            len(values), w2 // 2
        )

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def nbytes(self) -> int:
        total = self.keys.nbytes + self.ids.nbytes + self._prefix.nbytes
        if self._deleted is not None:
            total += self._deleted.nbytes
        return int(total)

    def _query_key(self, value: str | bytes) -> np.ndarray | None:
        if isinstance(value, (bytes, bytearray)):
            b = bytes(value)
        elif self.encoding == "hex":
            try:
                raw = value.encode("ascii")
            except UnicodeEncodeError:
                return None
            if len(raw) != 2 * self.width or not _is_lower_hex(raw):
                return None
            b = bytes.fromhex(value)
        else:
            b = _digest(value)
        if len(b) != self.width:
            return None
        return np.frombuffer(b, dtype=np.uint8)

    def mark_deleted(self, ids: t.Iterable[int] | np.ndarray) -> int:
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        if len(self) == 0 or ids.size == 0:
            return 0
        hit = np.isin(self.ids, ids)
        deleted = self._deleted if self._deleted is not None else np.zeros(len(self), dtype=bool)
        newly = int(np.count_nonzero(hit & ~deleted))
        self._deleted = deleted | hit
        return newly

    def search(
        self,
        value: str | bytes,
        *,
        exclude_ids: np.ndarray | t.Collection[int] | None = None,
    ) -> np.ndarray:
        """ids (int64, ascending) of every entry equal to ``value``.  bytes = raw key."""
        if len(self) == 0:
            return np.empty(0, np.int64)
        key = self._query_key(value)
        if key is None:
            return np.empty(0, np.int64)
        p = _prefix_u64(key.reshape(1, -1))[0]
        lo = int(np.searchsorted(self._prefix, p, "left"))
        hi = int(np.searchsorted(self._prefix, p, "right"))
        if lo == hi:
            return np.empty(0, np.int64)
        sel = np.arange(lo, hi)
        if self.width > 8:
            sel = sel[np.all(self.keys[lo:hi] == key, axis=1)]
        if self._deleted is not None:
            sel = sel[~self._deleted[sel]]
        ids = self.ids[sel]
        if exclude_ids is not None and ids.size:
            excl = np.asarray(
                list(exclude_ids) if not isinstance(exclude_ids, np.ndarray) else exclude_ids,
                dtype=np.int64,
            )
            ids = ids[~np.isin(ids, excl)]
        return ids

    def search_many(self, values: t.Sequence[str | bytes], **kw: t.Any) -> list[np.ndarray]:
        return [self.search(v, **kw) for v in values]
