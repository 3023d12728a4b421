"""
The case page's media previews (ui.preview): a JPEG made in memory, answered with
Cache-Control: no-store; a refusal is a short text with its 4xx status (the page shows it in the
preview's place), never a server error.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control

from omm_project.lib.errors import OmmError
from ui import preview
from ui.groups import REVIEW_GROUPS, group_required


def _answer(uri_of: Callable[[], str]) -> HttpResponse:
    try:
        preview.previews_check_enabled()  # before any lookup: off means nothing is read or fetched
        body = preview.preview_render(uri=uri_of())
        response = HttpResponse(body, content_type="image/jpeg")
    except OmmError as exc:  # off, unknown id, no URI, refused address, too big, not an image, busy
        response = HttpResponse(exc.message, content_type="text/plain; charset=utf-8", status=exc.status_code)
        response["X-Omm-Error"] = exc.code
    # Reviewed media stays out of every cache: the browser's, a proxy's, the back button's.
    patch_cache_control(response, no_store=True, private=True)
    return response


@group_required(REVIEW_GROUPS)
def case_preview(request: HttpRequest, case_id: int) -> HttpResponse:
    """The submission's media of a case, from its content_uri."""
    return _answer(lambda: preview.case_preview_uri(case_id=case_id))


@group_required(REVIEW_GROUPS)
def content_preview(request: HttpRequest, content_id: int) -> HttpResponse:
    """A bank content's own media, from the URI it was banked from (or its content URI)."""
    return _answer(lambda: preview.bank_content_preview_uri_get(content_id=content_id))
