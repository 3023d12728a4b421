"""hashing.pixel_view: Pillow's pixels read in place through the Arrow C data interface."""

import gc

import numpy as np
import pytest
from PIL import Image

from hashing import core, pixel_view


def _image(mode: str, width: int = 37, height: int = 23) -> Image.Image:
    rng = np.random.default_rng(width * height)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    return rgb.convert(mode)


@pytest.mark.parametrize("mode", sorted(pixel_view.FOUR_BYTE_MODES))
def test_view_holds_the_same_first_three_channels_as_asarray(mode):
    image = _image(mode)
    view = pixel_view.rgbx_view(image)
    assert view is not None
    assert view.array.shape == (23, 37, 4)
    assert np.array_equal(view.array[:, :, :3], np.asarray(image)[:, :, :3])


def test_view_stays_valid_after_the_image_is_gone():
    image = _image("RGB")
    expected = np.asarray(image).copy()
    view = pixel_view.rgbx_view(image)
    del image
    gc.collect()
    Image.new("RGB", (37, 23), (255, 0, 0))  # would reuse freed memory if the view didn't hold it
    assert np.array_equal(view.array[:, :, :3], expected)


@pytest.mark.parametrize("mode", ["L", "P", "1", "LA", "YCbCr", "I;16"])
def test_other_modes_get_no_view(mode):
    assert pixel_view.rgbx_view(_image(mode)) is None


def test_images_spread_over_several_blocks_get_no_view_and_still_hash_alike():
    image = _image("RGB", 300, 200)
    expected = core.hash_photo_image(image)
    default = Image.core.get_block_size()
    Image.core.set_block_size(4096)  # a few rows per block: the rows are no longer contiguous
    try:
        split = image.copy()
        assert pixel_view.rgbx_view(split) is None
        assert core.hash_photo_image(split) == expected
    finally:
        Image.core.set_block_size(default)


def test_the_hash_path_reads_in_place(monkeypatch):
    image = _image("RGB", 300, 200)
    expected = core.hash_photo_image(image)

    def no_copy(*args, **kwargs):
        raise AssertionError("the pixels were copied out (Image.tobytes, as np.asarray does)")

    monkeypatch.setattr(Image.Image, "tobytes", no_copy)
    assert core.hash_photo_image(image) == expected
