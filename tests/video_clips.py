"""
Small video clips made with the ffmpeg program at test time (never stored): FFmpeg's own test
sources, a few seconds at low resolution, and the copies a platform sees of a banked clip.
"""

import shutil
import subprocess
from pathlib import Path

import pytest


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; fail the test with its message if it fails."""
    binary = shutil.which("ffmpeg")
    if binary is None:
        pytest.fail("the ffmpeg program is missing (scripts/lib.sh ensure_vpdq_build installs it)")
    result = subprocess.run([binary, "-v", "error", "-y", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def make_source(path: Path, source: str, *, seconds: float, size: str = "320x240", rate: int = 15) -> Path:
    """A clip of an FFmpeg test source (testsrc2, mandelbrot, ...) encoded as H.264."""
    ffmpeg(
        "-f", "lavfi", "-i", f"{source}=size={size}:rate={rate}", "-t", str(seconds),
        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    return path


def make_copy(original: Path, path: Path, *, start: float, seconds: float, size: str) -> Path:
    """A re-encoded (MPEG-4 Part 2 in AVI), trimmed and resized copy of a clip."""
    ffmpeg(
        "-ss", str(start), "-i", str(original), "-t", str(seconds), "-vf", f"scale={size}",
        "-c:v", "mpeg4", "-q:v", "8", str(path),
    )  # fmt: skip
    return path
