"""
Previews of media on the case page: the submission's (its content_uri) and each matched bank
content's (the URI it was fetched from, else where the platform shows it). The operator turns
them on (OMM_UI_PREVIEW); then the media is fetched through omm's one outgoing-address policy
(lib.url_fetch), decoded, shrunk and re-encoded as JPEG in memory, and answered with
Cache-Control: no-store. Nothing is written to disk or to the database.

Re-encoding, not passing the bytes through, means the browser only ever gets a plain JPEG of
bounded size from us: no SVG or HTML that claims to be an image, no EXIF (locations) of the
original.
"""

import io
from typing import IO

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from banks.models import BankContent
from hashing.services import decode_slot, max_image_pixels
from omm_project.lib.errors import NotFound, OmmError
from omm_project.lib.url_fetch import SPOOL_MEMORY_BYTES, url_fetch
from reviews.models import Case

# The longest side of a preview, in pixels: enough to judge, small to send.
PREVIEW_MAX_SIDE = 800
PREVIEW_JPEG_QUALITY = 85
# Formats a preview decodes: what the web serves. Pillow's rarer decoders are not exposed to
# media from the internet here.
PREVIEW_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")


class PreviewsOff(OmmError):
    """The operator has not turned previews on (OMM_UI_PREVIEW): nothing is fetched (404)."""

    status_code = 404
    code = "previews_off"


class NotAnImage(OmmError):
    """The fetched media does not decode as an image (415)."""

    status_code = 415
    code = "not_an_image"


def previews_enabled() -> bool:
    """Whether the operator allows the case page to fetch and show media (OMM_UI_PREVIEW)."""
    return settings.OMM_UI_PREVIEW


def previews_check_enabled() -> None:
    """Raise PreviewsOff unless the operator turned previews on."""
    if not previews_enabled():
        raise PreviewsOff("previews are off (OMM_UI_PREVIEW)")


def preview_max_bytes() -> int:
    """The size cap of a preview's fetch: the setting, kept under what a fetch holds in memory."""
    return min(settings.OMM_UI_PREVIEW_MAX_BYTES, SPOOL_MEMORY_BYTES)


def bank_content_preview_uri(content: BankContent) -> str:
    """Where a bank content's media can be fetched: the URL it was banked from, else its content URI."""
    return content.original_media_uri or content.content_uri


def case_preview_uri(*, case_id: int) -> str:
    """The submission's URI of a case; 404 for an unknown case or one without a URI."""
    uri = Case.objects.filter(pk=case_id).values_list("content_uri", flat=True).first()
    if uri is None:
        raise NotFound(f"case {case_id} not found")
    if not uri:
        raise NotFound(f"case {case_id} has no content URI")
    return uri


def bank_content_preview_uri_get(*, content_id: int) -> str:
    """A bank content's preview URI; 404 for unknown content or content without a URI."""
    content = BankContent.objects.filter(pk=content_id).only("original_media_uri", "content_uri").first()
    if content is None:
        raise NotFound(f"bank content {content_id} not found")
    uri = bank_content_preview_uri(content)
    if not uri:
        raise NotFound(f"bank content {content_id} has no media URI")
    return uri


def _formats() -> tuple[str, ...]:
    """PREVIEW_FORMATS this Pillow build has (Image.open raises KeyError for one it lacks)."""
    Image.init()
    return tuple(name for name in PREVIEW_FORMATS if name in Image.OPEN)


def _shrink(data: IO[bytes]) -> bytes:
    """Decode an image (pixel cap from the header first), shrink it and encode it as JPEG."""
    try:
        image = Image.open(data, formats=_formats())
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise NotAnImage(f"not an image this page can show ({type(exc).__name__})") from None
    with image:
        width, height = image.size
        limit = max_image_pixels()
        if limit is not None and width * height > limit:
            raise NotAnImage(f"image is {width}x{height} pixels, above the limit of {limit}")
        try:
            image.draft("RGB", (PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))  # JPEG: decode at a reduced scale
            image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                background = Image.new("RGB", image.size, "white")
                background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
                image = background
            out = io.BytesIO()
            image.convert("RGB").save(out, format="JPEG", quality=PREVIEW_JPEG_QUALITY)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # truncated or corrupt data
            raise NotAnImage(f"the image data is damaged ({type(exc).__name__})") from None
    return out.getvalue()


def preview_render(*, uri: str) -> bytes:
    """
    A JPEG preview of the media at `uri`. Raises OmmErrors, never anything else on bad media:
    PreviewsOff 404, UnsafeUrl / FetchFailed 400, PayloadTooLarge 413, NotAnImage 415,
    HashingBusy 503 (it shares the decode slots of hashing, which bound a process's memory).
    """
    previews_check_enabled()
    with url_fetch(uri, max_bytes=preview_max_bytes()) as fetched, decode_slot():
        return _shrink(fetched.file)
