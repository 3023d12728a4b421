"""
Zero-copy access to a Pillow image's 4-byte pixels, through the Arrow C data interface.

np.asarray(image) makes Pillow encode its pixels into a new bytes object in ~50 chunks, join them
and copy them into the array: on a 1 MP photo that costs more than 4 ms in a server process
(page faults on fresh memory), a quarter of the hashing time. Pillow (11.2+) exports its pixel
storage with `__arrow_c_array__` (the standard Arrow C data interface, zero copy), which this
module reads with ctypes, the same way an Arrow library would: a multi-mode image is a
fixed-size list of 4 uint8 per pixel ("+w:4" over "C"), RGB stored as R, G, B, padding.

Pillow can only export images whose rows lie in one block of memory (those under its block size,
16 MB by default, about 4 MP for RGB; hashing.core raises it to 256 MiB, 64 MP). For others, or if
the export is not the expected layout, rgbx_view returns None and the caller falls back to
np.asarray.
"""

from __future__ import annotations

import ctypes

import numpy as np
from PIL import Image

# Modes stored as 4 bytes per pixel whose first three bytes are what np.asarray(image)[..., :3] gives.
FOUR_BYTE_MODES = frozenset({"RGB", "RGBA", "RGBX", "CMYK"})


class _ArrowSchema(ctypes.Structure):
    pass


_ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))),
    ("dictionary", ctypes.POINTER(_ArrowSchema)),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]


class _ArrowArray(ctypes.Structure):
    pass


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.POINTER(_ArrowArray)),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


class PixelView:
    """
    A (rows, cols, 4) uint8 array over the image's own memory, valid while this object lives:
    it holds the Arrow capsules, whose release keeps Pillow's storage alive until they go.
    """

    def __init__(self, array: np.ndarray, capsules: tuple[object, object]) -> None:
        self.array = array
        self._capsules = capsules


def rgbx_view(image: Image.Image) -> PixelView | None:
    """The image's pixels as a zero-copy (rows, cols, 4) view, or None where that isn't possible."""
    if image.mode not in FOUR_BYTE_MODES or not hasattr(image, "__arrow_c_array__"):
        return None
    try:
        capsules = image.__arrow_c_array__()
    except ValueError:  # "Image rows are not contiguous in memory" (more than one block)
        return None
    schema = _ArrowSchema.from_address(_capsule_pointer(capsules[0], b"arrow_schema"))
    array = _ArrowArray.from_address(_capsule_pointer(capsules[1], b"arrow_array"))
    cols, rows = image.size
    if (
        schema.format != b"+w:4"
        or schema.n_children != 1
        or schema.children[0].contents.format != b"C"
        or array.length != rows * cols
        or array.offset != 0
        or array.n_children != 1
    ):
        return None
    child = array.children[0].contents
    if child.offset != 0 or child.n_buffers != 2 or child.length != rows * cols * 4 or not child.buffers[1]:
        return None
    raw = (ctypes.c_uint8 * (rows * cols * 4)).from_address(child.buffers[1])
    return PixelView(np.ctypeslib.as_array(raw).reshape(rows, cols, 4), capsules)
