"""The HTTP layer in front of BentoML's routes: request ids, the API key, body checks and the OpenAPI spec.

:class:`RequestGuard` is an ASGI middleware (``KoSTS.add_asgi_middleware``). For every response
it adds ``X-Request-ID``; for ``POST`` to an API route it checks, in this order and before
BentoML reads anything:

=====================================================  ======  ==========================
what                                                   status  error kind
=====================================================  ======  ==========================
``Authorization: Bearer <key>`` (when a key is set)    401     ``unauthenticated``
``Content-Type`` absent or ``application/json``        415     ``unsupported_media_type``
body size (``Content-Length`` or bytes read)           413     ``too_large``
UTF-8, then JSON (nesting within the parser's limit)   400     ``malformed``
shape: types, required and unknown fields              422     ``invalid_input``
=====================================================  ======  ==========================

The shape check is BentoML's own (``input_spec.model_validate_json``, the call BentoML makes), so
a body that passes it also passes BentoML's, which therefore never answers its own 400 (a list in
``detail``, and a traceback with the request's text in the log). Each refusal is one log line,
without the request's text. Content rules (blank text, limits) are checked later by the service,
with :mod:`serving.inputs`, as for gRPC.

``GET /docs.json`` answers BentoML's spec with the error answers this service really gives
(:class:`~serving.schemas.ErrorBody` for 400, 401, 413, 415, 422, 429, 500, 503 and 504) and the
``X-Request-ID`` and ``Retry-After`` headers.

The request id is BentoML's (the id of the request's tracing span, as in ``X-BentoML-Request-ID``
and in the ``span=`` field of BentoML's log lines), or a random one where BentoML has none.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.auth import ApiKey
from serving.errors import InvalidInput, Malformed, ServiceError, TooLarge, UnsupportedMediaType
from serving.inputs import InputRules
from serving.schemas import ErrorBody

logger = logging.getLogger("bentoml.ko_sts.http")

REQUEST_ID_HEADER = "X-Request-ID"
SPEC_PATH = "/docs.json"
JSON_MEDIA_TYPE = "application/json"
ERROR_STATUSES = {
    400: "malformed: the body is not UTF-8 JSON",
    401: "unauthenticated: missing or wrong API key (only when the service has one)",
    413: "too_large: body over the size limit, or more pairs or candidates, or a longer sentence, than allowed",
    415: "unsupported_media_type: the body is not sent as application/json",
    422: "invalid_input: a field is missing, unknown, of the wrong type, blank, or top_k < 1",
    429: "overloaded: the queue is full; back off",
    500: "internal: a bug (the log has it)",
    503: "queue_timeout or unavailable: waited too long in the queue, or starting or stopping; retry with backoff",
    504: "deadline_exceeded: the caller's deadline passed before the work started",
}
MAX_LISTED_ERRORS = 3


def request_id() -> str:
    """The current HTTP request's id: BentoML's (its tracing span), else a random one."""
    from bentoml._internal.context import trace_context

    span = trace_context.request_id
    return format(span, "016x") if span else secrets.token_hex(8)


def error_response(error: ServiceError) -> JSONResponse:
    """The JSON answer to ``error``: its table's status, ``{"error": kind, "detail": message}``, Retry-After."""
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
    if error.status.http == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": error.kind.value, "detail": error.message}, error.status.http, headers)


class RequestGuard:
    """ASGI middleware: request ids on every response; key, media type, size, JSON and shape of API requests.

    Args:
        app: the rest of BentoML's app.
        routes: API route -> the pydantic model BentoML validates its body with.
        rules: the input rules (their ``body_limit`` is the largest body accepted).
        api_key: the key API routes require, or None.
        spec: builds BentoML's OpenAPI spec (a dict), called once, on the first ``GET /docs.json``.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[str, type[BaseModel]],
        rules: InputRules,
        api_key: ApiKey | None,
        spec: Callable[[], dict[str, Any]],
    ) -> None:
        self.app = app
        self.routes = routes
        self.body_limit = rules.body_limit
        self.api_key = api_key
        self._spec_factory = spec
        self._spec: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_request_id(send, request_id())
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == SPEC_PATH:
            await self._answer_spec(scope, receive, send)
            return
        model = self.routes.get(path)
        if model is None or method != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._checked_body(model, Headers(scope=scope), receive)
        except ServiceError as error:
            logger.info("refused %s: %d %s: %s", path, error.status.http, error.kind.value, error.log_message)
            await error_response(error)(scope, receive, send)
            return
        if body is not None:
            await self.app(scope, _replay(body, receive), send)

    async def _checked_body(self, model: type[BaseModel], headers: Headers, receive: Receive) -> bytes | None:
        """The request's body once every check has passed; None if the client went away."""
        if self.api_key is not None:
            self.api_key.check(headers.get("authorization"))
        _check_media_type(headers.get("content-type"))
        body = await self._read(headers, receive)
        if body is not None:
            _check_shape(model, body)
        return body

    async def _read(self, headers: Headers, receive: Receive) -> bytes | None:
        """Reads the body, refusing it as soon as it is known to exceed the limit."""
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.body_limit:
            raise self._too_large(int(declared))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.body_limit:
                raise self._too_large(size, more=message.get("more_body", False))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, size: int, more: bool = False) -> TooLarge:
        at_least = "at least " if more else ""
        return TooLarge(
            f"body: {at_least}{size} bytes, more than the limit of {self.body_limit} "
            "(KO_STS_MAX_BODY_BYTES); send fewer pairs per request"
        )

    async def _answer_spec(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._spec is None:
            self._spec = json.dumps(api_spec(self._spec_factory(), self.routes, self.api_key is not None)).encode()
        await Response(self._spec, media_type=JSON_MEDIA_TYPE)(scope, receive, send)


def _check_media_type(content_type: str | None) -> None:
    """JSON only: an absent Content-Type is read as JSON (as BentoML does); a charset must be UTF-8."""
    if content_type is None:
        return
    media_type, *parameters = (part.strip().lower() for part in content_type.split(";"))
    charset = next((p.partition("=")[2].strip('"') for p in parameters if p.startswith("charset=")), "utf-8")
    if media_type != JSON_MEDIA_TYPE or charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(
            f"Content-Type: {content_type[:100]!r} is not accepted; send the body as JSON with "
            "'Content-Type: application/json' (UTF-8)"
        )


def _check_shape(model: type[BaseModel], body: bytes) -> None:
    """Raises Malformed for bytes that are not UTF-8 JSON, InvalidInput for JSON of the wrong shape."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Malformed(
            f"body: not UTF-8 (byte 0x{body[error.start]:02x} at position {error.start}); encode the JSON as UTF-8"
        ) from None
    try:
        model.model_validate_json(body or b"{}")  # what BentoML's JSON serde does with the body
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False, include_context=True)
        unreadable = [e for e in errors if e["type"] == "json_invalid"]
        if unreadable:
            reason = unreadable[0].get("ctx", {}).get("error", unreadable[0]["msg"])
            nesting = " (nested too deeply)" if "recursion" in reason else ""
            raise Malformed(f"body: not valid JSON{nesting}: {reason}") from None
        more = f" (and {len(errors) - MAX_LISTED_ERRORS} more)" if len(errors) > MAX_LISTED_ERRORS else ""
        shown = errors[:MAX_LISTED_ERRORS]
        message = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in shown) + more
        logged = "; ".join(f"{_field(e['loc'], e['type'] == 'extra_forbidden')}: {e['msg']}" for e in shown) + more
        raise InvalidInput(message, log_message=logged) from None


def _field(location: tuple[int | str, ...], unknown: bool = False) -> str:
    """A pydantic error location as the field names of :mod:`serving.inputs`, e.g. ``pairs[0].sentence1``.

    ``unknown``: the last part is a field name the caller made up, written ``<unknown field>`` (for logs).
    """
    if unknown:
        location = (*location[:-1], "<unknown field>")
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then the client's further messages."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_request_id(send: Send, value: str) -> Send:
    """A ``send`` that adds ``X-Request-ID`` to the response (unless the app set one)."""
    name = REQUEST_ID_HEADER.lower().encode()

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if all(key.lower() != name for key, _ in headers):
                headers.append((name, value.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return send_with_id


def api_spec(spec: dict[str, Any], routes: Mapping[str, type[BaseModel]], api_key: bool) -> dict[str, Any]:
    """BentoML's OpenAPI spec with the answers the API routes really give (a new dict)."""
    spec = json.loads(json.dumps(spec))
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorBody"] = error_schema
    request_id = {
        REQUEST_ID_HEADER: {
            "description": "this request's id, also in the service's log lines about it",
            "required": True,
            "schema": {"type": "string"},
        }
    }
    retry_after = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
    error_content = {JSON_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    if api_key:
        spec["components"]["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
    for path in routes:
        operation = spec["paths"][path]["post"]
        if routes[path].model_json_schema().get("required"):
            operation["requestBody"]["required"] = True  # an absent body is refused like "{}"
        ok = operation["responses"]["200"]
        responses = {"200": {**ok, "headers": request_id}}
        for status, description in ERROR_STATUSES.items():
            headers = {**request_id, **(retry_after if status in (429, 503) else {})}
            responses[str(status)] = {"description": description, "headers": headers, "content": error_content}
        operation["responses"] = responses
        if api_key:
            operation["security"] = [{"apiKey": []}]
    return spec
