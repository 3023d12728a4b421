"""Request checks that come before any view: the path and query string must be storable text."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from omm_project.lib.inputs import text_problem


def query_problem(pairs) -> str | None:
    """Why a query string's (name, value) pairs cannot be taken, or None (shared with matching.wsgi)."""
    for name, value in pairs:
        if problem := text_problem(name):
            return f"a query parameter name {problem}"
        if problem := text_problem(value):
            return f"query parameter {name}: {problem}"
    return None


class InputTextMiddleware:
    """
    A 400 in the JSON error shape for a NUL character (or anything not storable) in the URL path
    or a query parameter. Without it, `/c/bank/%00` or `?signal=%00` reached psycopg2, which
    refuses NUL with a ValueError: a 500. Bodies are checked by the DRF parsers (lib.parsers).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = None
        if path_problem := text_problem(request.path_info):
            problem = f"the URL path {path_problem}"
        else:
            problem = query_problem((k, v) for k, values in request.GET.lists() for v in values)
        if problem:
            return JsonResponse({"message": f"Invalid request: {problem}", "code": "invalid"}, status=400)
        return self.get_response(request)
