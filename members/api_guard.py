"""JSON at the edges of the API: every 4xx and 5xx under /api/ carries the error body
`{"code": ..., "detail": ..., "errors": {...}}`, whoever answers it (a view, DRF, Django's URL resolver or its
middleware), and what would hurt the parser is refused before anything reads it.

`ApiGuardMiddleware` (first in settings.MIDDLEWARE, so it sees every answer, SecurityMiddleware's included, and
answers before CommonMiddleware's APPEND_SLASH could redirect an API call) does, for paths under /api/ only:

1. A path without its trailing slash that exists with one: 404 `not_found` naming the right path. A redirect would turn
   a POST into a GET (or raise RuntimeError with DEBUG on).
2. The body is read here, at most LOYALTY_API_MAX_BODY_BYTES (and Django's DATA_UPLOAD_MAX_MEMORY_SIZE, the lower
   wins) plus one byte: a declared Content-Length over the cap is 413 `request_too_large` without reading a byte; a
   chunked body without Content-Length (the WSGI server marks its end with `wsgi.input_terminated`) is read up to the
   cap too, and then handed on with its length, so DRF sees it (Django alone would drop it as empty). A Content-Length
   that understates the body is all that is read (Django's LimitedStream). So neither DRF's parser nor the
   Idempotency-Key fingerprint ever holds more than the cap.
3. JSON nested deeper than LOYALTY_API_MAX_JSON_DEPTH is 400 `nesting_too_deep`, found by a scan of the bytes (no
   recursion, before json.loads: Python's parser raises RecursionError near depth 1000, a 500). Every body is scanned,
   whatever its Content-Type, as the idempotency fingerprint reads any body as JSON.
4. An unexpected exception in a view is logged with its traceback under a new error id and answered 500
   `server_error` with that `error_id` (also with DEBUG on: an API client parses JSON, and the traceback is in the log).
5. Whatever else answers an error that is not JSON (Django's 404 for an unknown path, its 400 for a disallowed host or
   too many query fields, a 500 from a middleware) is turned into the error body, keeping the status, with the code
   that status has everywhere else in the API.
"""
import logging
import uuid
from http import HTTPStatus
from io import BytesIO
from itertools import accumulate

from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.signals import got_request_exception
from django.http import Http404, JsonResponse
from django.urls import Resolver404, resolve
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"

# The code each error status has everywhere in the API (members.api_errors.DRF_CODES), for answers no view made.
STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
}
# Headers of an error response that still mean something once it is JSON.
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/")


def api_error_response(status: int, code: str, detail, *, errors: dict | None = None, **extra) -> JsonResponse:
    """The API's error body; `errors` (field -> messages) for input errors only, `extra` e.g. the 500's error_id."""
    body = {"code": code, "detail": str(detail)}
    if errors:
        body["errors"] = errors
    body.update(extra)
    return JsonResponse(body, status=status)


def body_cap() -> int:
    """The largest body the API reads, in bytes."""
    cap = settings.LOYALTY_API_MAX_BODY_BYTES
    if settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None:
        cap = min(cap, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    return cap


def too_large_detail(cap: int):
    return _("The request body is larger than the limit of %(limit)s bytes.") % {"limit": cap}


def too_large_response(cap: int) -> JsonResponse:
    return api_error_response(413, "request_too_large", too_large_detail(cap))


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_ONE_BRACKET_KIND = bytes.maketrans(b"{}", b"[]")
_DEPTH_STEP = [0] * 256  # indexed by byte: +1 opens, -1 closes
_DEPTH_STEP[ord("[")], _DEPTH_STEP[ord("]")] = 1, -1


def json_too_deep(body: bytes, limit: int) -> bool:
    """Whether the JSON parser would descend more than `limit` arrays or objects deep into `body`, found without
    parsing it (no recursion) in linear time, in C loops:
    - fewer opening brackets than the limit cannot nest deeper (most bodies stop here);
    - escaped backslashes and quotes are dropped, so the quotes left delimit strings, and every other piece between
      them is outside a string (a regex cutting out strings was quadratic on unterminated ones);
    - outside strings, a run of limit + 1 opening brackets is too deep at once; else the depth is the running sum of
      +1 per opening and -1 per closing bracket at its peak (brackets left open count: the parser descends first).
    Malformed JSON gives some answer; the parser refuses it anyway. A megabyte takes some tens of milliseconds."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(unescaped.split(b'"')[0::2]).translate(_ONE_BRACKET_KIND, _NOT_BRACKETS)
    if b"[" * (limit + 1) in brackets:
        return True
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


def _declared_length(meta) -> int | None:
    try:
        return int(meta.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def read_capped_body(request, cap: int) -> bytes | None:
    """The request's body if it is at most `cap` bytes, else None, reading at most `cap` + 1 bytes. Leaves the body
    where Django keeps a body it has read, so `request.body`, `request.read()` and DRF's parsers all see it."""
    meta = request.META
    declared = _declared_length(meta)
    if declared is not None and declared > cap:
        return None
    chunked = (
        declared is None
        and "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower()
        and meta.get("wsgi.input_terminated")  # the server ends the stream after the last chunk: safe to read to EOF
    )
    stream = meta["wsgi.input"] if chunked else request  # request.read() stops at Content-Length (0 when absent)
    body = stream.read(cap + 1)
    if len(body) > cap:
        return None
    # What HttpRequest.body does after reading: keep the bytes, and a fresh stream over them for the parsers.
    request._body = body
    request._stream = BytesIO(body)
    request._read_started = False
    if chunked:
        meta["CONTENT_LENGTH"] = str(len(body))  # DRF takes a request without Content-Length for one without body
    return body


def slash_hint_response(request) -> JsonResponse | None:
    """404 naming the path with its trailing slash when only that one exists (instead of APPEND_SLASH's redirect)."""
    path = request.path_info
    if path.endswith("/"):
        return None
    urlconf = getattr(request, "urlconf", None)
    try:
        resolve(path, urlconf)
        return None
    except Resolver404:
        pass
    try:
        resolve(f"{path}/", urlconf)
    except Resolver404:
        return None
    right = f"{request.path}/"
    detail = _("Not found. Did you mean %(path)s (with a trailing slash)?") % {"path": right}
    return api_error_response(404, "not_found", detail)


def server_error_response(error_id: str) -> JsonResponse:
    detail = _("An unexpected error occurred. Quote the error id %(error_id)s when you report it.") % {
        "error_id": error_id
    }
    return api_error_response(500, "server_error", detail, error_id=error_id)


def _new_error_id() -> str:
    return uuid.uuid4().hex


def log_server_error(request) -> str:
    """Log the exception being handled with its traceback under a new error id, kept on the request; returns the id."""
    error_id = _new_error_id()
    request.api_error_id = error_id
    logger.error(
        "API server error %s: %s %s", error_id, request.method, request.path,
        exc_info=True, extra={"status_code": 500, "request": request, "error_id": error_id},
    )
    return error_id


def _error_detail(status: int, request):
    """The detail of an error no view described: DRF's own text for that status where it has one (translated)."""
    if status == 404:
        return exceptions.NotFound.default_detail
    if status == 405:
        return exceptions.MethodNotAllowed(request.method).detail
    if status == 403:
        return exceptions.PermissionDenied.default_detail
    if status == 401:
        return exceptions.NotAuthenticated.default_detail
    if status == 413:
        return too_large_detail(body_cap())
    if status == 400:
        return _("Bad request.")
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return str(status)


def as_json_error(request, response):
    """An error response that is not JSON, turned into the error body with the same status."""
    status = response.status_code
    if status < 400 or "json" in response.get("Content-Type", ""):
        return response
    code = STATUS_CODES.get(status)
    if code is None:
        try:
            code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
        except ValueError:
            code = "error"
    if status == 500:
        error_id = getattr(request, "api_error_id", None)
        if error_id is None:  # a 500 without an exception: nothing to log but the answer itself
            error_id = _new_error_id()
            logger.error("API server error %s: %s %s answered 500", error_id, request.method, request.path)
        json_response = server_error_response(error_id)
    else:
        json_response = api_error_response(status, code, _error_detail(status, request))
    for header in KEPT_HEADERS:
        if header in response:
            json_response[header] = response[header]
    return json_response


class ApiGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not is_api_path(request.path_info):
            return self.get_response(request)
        # First in MIDDLEWARE (so it also sees what SecurityMiddleware answers): LocaleMiddleware has not run yet.
        with translation.override(translation.get_language_from_request(request)):
            refusal = self.refusal(request)
        if refusal is not None:
            return refusal
        return as_json_error(request, self.get_response(request))

    def refusal(self, request):
        """The answer to a request refused before any view sees it, or None."""
        hint = slash_hint_response(request)
        if hint is not None:
            return hint
        cap = body_cap()
        body = read_capped_body(request, cap)
        if body is None:
            return too_large_response(cap)
        limit = settings.LOYALTY_API_MAX_JSON_DEPTH
        if json_too_deep(body, limit):
            detail = _("The JSON body is nested deeper than the limit of %(limit)s levels.") % {"limit": limit}
            return api_error_response(400, "nesting_too_deep", detail)
        return None

    def process_exception(self, request, exception):
        """A view's exception (DRF's handler leaves those it does not know): JSON, with the status Django gives it."""
        if not is_api_path(request.path_info):
            return None
        if isinstance(exception, (Http404, PermissionDenied, BadRequest)):
            return None  # Django answers 404/403/400 as usual; __call__ turns the page into JSON
        if isinstance(exception, SuspiciousOperation):
            # Django logs these to django.security.<name> and answers 400; a body over Django's own cap is a 413.
            logging.getLogger(f"django.security.{exception.__class__.__name__}").error(
                str(exception), exc_info=exception, extra={"status_code": 400, "request": request}
            )
            if isinstance(exception, RequestDataTooBig):
                return too_large_response(body_cap())
            return api_error_response(400, "bad_request", _("Bad request."))
        return server_error_response(log_server_error(request))


def _log_uncaught(sender, request=None, **kwargs):
    """An exception outside a view (in a middleware) under /api/: logged with an error id the 500's body names."""
    if request is not None and is_api_path(getattr(request, "path_info", "")) and not hasattr(request, "api_error_id"):
        log_server_error(request)


got_request_exception.connect(_log_uncaught, dispatch_uid="members.api_guard.log_uncaught")
