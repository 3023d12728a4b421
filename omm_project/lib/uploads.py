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
from django.utils.http import parse_header_parameters
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


# Part headers single_file_part takes; anything else (Content-Transfer-Encoding, ...) goes to Django.
_SIMPLE_PART_HEADERS = frozenset({"content-disposition", "content-type"})
# Django looks for the end of a part's headers in its first 1,024 bytes first: stay well inside.
_SIMPLE_PART_HEADER_BYTES = 1000


def _plain_file_name(name: str) -> bool:
    """A file name Django's MultiPartParser.sanitize_file_name keeps unchanged and non-empty."""
    return name not in {"", ".", ".."} and name.isprintable() and not any(c in name for c in "/\\&")


def single_file_part(body: bytes, boundary: bytes) -> tuple[str, bytes] | None:
    """
    (field name, content) of a multipart body that is exactly one file part and nothing else,
    or None. Only the plainest shape is taken, the one Django's MultiPartParser reads as that
    same single upload: no preamble, no epilogue but a final CRLF, ASCII part headers among
    Content-Disposition (a `name` and a non-empty plain `filename`, no other parameter) and
    Content-Type, each once. For None, give the body to Django's parser, which decides.
    """
    opening = b"--" + boundary
    start = len(opening) + 2
    if not body.startswith(opening + b"\r\n"):
        return None
    header_end = body.find(b"\r\n\r\n", start, start + _SIMPLE_PART_HEADER_BYTES)
    if header_end < 0 or not body[start:header_end].isascii():
        return None
    headers: dict[str, dict[str, str]] = {}
    for line in body[start:header_end].decode("ascii").split("\r\n"):
        try:  # as Django's parse_boundary_stream reads a part header
            main, params = parse_header_parameters(line)
            name, _ = main.split(":", 1)
        except ValueError:
            return None
        if name not in _SIMPLE_PART_HEADERS or name in headers:
            return None
        headers[name] = params
    disposition = headers.get("content-disposition")
    if disposition is None or set(disposition) != {"name", "filename"}:
        return None
    field, file_name = disposition["name"].strip(), disposition["filename"]
    if not field or not _plain_file_name(file_name):
        return None
    content_start = header_end + 4
    close = body.find(opening, content_start)  # the part ends at the next boundary, as in Django
    if close < content_start + 2 or body[close - 2 : close] != b"\r\n":
        return None
    if body[close + len(opening) :] not in (b"--", b"--\r\n"):
        return None
    return field, body[content_start : close - 2]
