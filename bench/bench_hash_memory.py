#!/usr/bin/env python
"""
Peak memory of hashing one photo, by pixel count and image mode: the figures behind
OMM_MAX_IMAGE_PIXELS and OMM_HASH_CONCURRENCY (docs/hashing.md, "Memory").

    .venv/bin/python bench/bench_hash_memory.py [--megapixels 50] [--modes RGB,RGBA,L,I;16,CMYK,P,1,F]

For each mode it writes one image of that many pixels (a flat picture, so the file is small, as a
decompression bomb's is), then hashes it in a fresh Python process with hashing.core (what
/h/hash and /m/lookup run) and reports the process's RSS before the hash and its peak RSS
during it (VmHWM, reset after warming up, Linux): the difference is what one request costs at
that size. The cap is not applied here (max_pixels is set
above the image). Pure Python, no Django; files go to a temporary folder that is removed.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

# (mode, format): the formats Pillow writes that mode in.
MODES = {
    "RGB": "PNG",
    "RGBA": "PNG",
    "L": "PNG",
    "I;16": "PNG",
    "P": "PNG",
    "1": "PNG",
    "CMYK": "TIFF",
    "F": "TIFF",
    "LA": "PNG",
}

_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from hashing import core


def status_kib(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])


core.warm_up()  # may compile the kernels (a memory peak of its own): reset the high-water mark after
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
before = status_kib("VmRSS")
result = core.hash_photo_file(sys.argv[2], max_pixels=int(sys.argv[3]), formats=None)
after = status_kib("VmHWM")
print(json.dumps({"before_kib": before, "after_kib": after, "quality": result.quality}))
"""


def write_image(path: Path, mode: str, fmt: str, width: int, height: int) -> None:
    """A flat image with a small gradient band (compresses to almost nothing, decodes in full)."""
    base = Image.new("RGB", (width, height), (90, 120, 150))
    band = np.tile(np.arange(256, dtype=np.uint8), (64, math.ceil(width / 256)))[:, :width]
    base.paste(Image.fromarray(np.dstack([band, band, band]), "RGB"), (0, 0))
    if mode == "I;16":
        image = base.convert("L").convert("I;16")
    elif mode == "P":
        image = base.convert("P")
    else:
        image = base.convert(mode)
    image.save(path, fmt)


def measure(path: Path, pixels: int) -> dict:
    """Hash `path` in a fresh interpreter; its peak RSS before and after, in KiB."""
    output = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT), str(path), str(pixels + 1)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=50.0, help="Image size (default 50, the default cap).")
    parser.add_argument("--modes", default=",".join(MODES), help="Comma-separated Pillow modes.")
    args = parser.parse_args(argv)
    side = int(math.sqrt(args.megapixels * 1_000_000))
    pixels = side * side
    print(f"{side}x{side} = {pixels / 1e6:.1f} MP; peak RSS of one hash in a fresh process")
    print(f"{'mode':6} {'file KiB':>9} {'peak MiB':>9} {'hash MiB':>9} {'bytes/pixel':>12}")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="omm-bench-memory-") as folder:
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            fmt = MODES[mode]
            path = Path(folder) / f"{mode.replace(';', '_')}.{fmt.lower()}"
            write_image(path, mode, fmt, side, side)
            result = measure(path, pixels)
            delta = (result["after_kib"] - result["before_kib"]) * 1024
            per_pixel = delta / pixels
            worst = max(worst, per_pixel)
            print(
                f"{mode:6} {path.stat().st_size / 1024:9.0f} {result['after_kib'] / 1024:9.0f} "
                f"{delta / 2**20:9.0f} {per_pixel:12.2f}"
            )
            path.unlink()
    print(f"worst: {worst:.2f} bytes per pixel = {worst * pixels / 2**20:.0f} MiB for {pixels / 1e6:.1f} MP")
    return 0


if __name__ == "__main__":
    sys.exit(main())
