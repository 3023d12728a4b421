"""
Multipart media uploads as HMA takes them: exactly one file part whose field name is the content
type ("photo", "video"). Django keeps small uploads in memory and spools big ones to a temporary
file that is deleted when the request ends; nothing is stored. A size cap is enforced while the
body streams in, so an oversized upload is refused with a 413 before it is all read.

Every other body is capped too: BodyLimitMiddleware refuses, before the view reads anything, a
body longer than DATA_UPLOAD_MAX_MEMORY_SIZE, unless the view takes media (`accepts_media = True`)
and the body is multipart, which may be as long as a media upload (OMM_MAX_UPLOAD_BYTES). DRF
reads bodies as a stream, past Django's own DATA_UPLOAD_MAX_MEMORY_SIZE check, hence this one.
"""

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, JsonResponse
from rest_framework.request import Request

from omm_project.lib import pytx
from omm_project.lib.errors import InvalidInput, PayloadTooLarge

# Room for the multipart boundaries, part headers and small form fields (metadata, note).
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


def max_upload_bytes() -> int:
    """The largest media file a request may upload (OMM_MAX_UPLOAD_BYTES)."""
    return settings.OMM_MAX_UPLOAD_BYTES


class CappedUploadHandler(FileUploadHandler):
    """Passes file data through to the next handler, refusing more than `max_bytes` per file."""

    def __init__(self, request=None, *, max_bytes: int) -> None:
        super().__init__(request)
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"Upload too large: the limit is {self.max_bytes} bytes")

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None) -> None:
        if content_length and content_length > self.max_bytes + MULTIPART_OVERHEAD_BYTES:
            raise self._too_large()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.max_bytes:
            raise self._too_large()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler (memory or temp file) builds the UploadedFile


def upload_cap_install(request: Request) -> None:
    """Put the size cap in front of Django's upload handlers; call before reading request.data."""
    request._request.upload_handlers.insert(0, CappedUploadHandler(request._request, max_bytes=max_upload_bytes()))


def upload_fields(*extra: str) -> list[str]:
    """The body fields of an upload endpoint: the content type names (a text part named like one
    is answered "missing file upload", as HMA does) and the endpoint's own `extra` fields."""
    return [*pytx.content_types(), *extra]


def single_upload(
    request: Request, *, missing: str = "Missing multipart/form-data file upload"
) -> tuple[str, UploadedFile]:
    """The one uploaded file and its field name; 400 for none (`missing`) or more than one."""
    uploads = [(name, upload) for name, files in request.FILES.lists() for upload in files]
    if not uploads:
        raise InvalidInput(missing)
    if len(uploads) > 1:
        raise InvalidInput("Only one file allowed per request")
    return uploads[0]


def body_limit(*, view_class: type | None, content_type: str) -> int:
    """The longest body a request to this view may send (bytes)."""
    if getattr(view_class, "accepts_media", False) and content_type.startswith("multipart/form-data"):
        return max_upload_bytes() + MULTIPART_OVERHEAD_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class BodyLimitMiddleware:
    """Refuse a body over its view's limit with a 413, before anything reads it."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django then reads no body at all
        limit = body_limit(
            view_class=getattr(view_func, "cls", None) or getattr(view_func, "view_class", None),
            content_type=request.META.get("CONTENT_TYPE", ""),
        )
        if length > limit:
            exc = PayloadTooLarge(f"Request body too large: the limit is {limit} bytes")
            return JsonResponse({"message": exc.message, "code": exc.code}, status=exc.status_code)
        return None
