"""OpenAI-shaped error responses: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from perfloop.engine.server.protocol import ErrorDetail, ErrorResponse

log = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "internal_server_error",
    503: "service_unavailable",
}


class OpenAIError(Exception):
    """An error that becomes an OpenAI error body with the given HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


def error_type(status: int) -> str:
    """OpenAI's error `type` for an HTTP status."""
    return _TYPES.get(status, "invalid_request_error")


def error_response(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """One OpenAI error body."""
    detail = ErrorDetail(message=message, type=error_type(status), param=param, code=code)
    return JSONResponse(ErrorResponse(error=detail).model_dump(), status_code=status, headers=headers)


def _param_of(loc: tuple[int | str, ...]) -> str | None:
    """`("body", "messages", 0, "role")` -> `messages.0.role`; None for the body as a whole."""
    # pydantic also names union members and validators in the location ("str", "list[int]",
    # "function-after[...]"); those are not fields, so they are left out.
    parts = [str(p) for p in loc[1:] if isinstance(p, int) or not _is_type_tag(str(p))]
    return ".".join(parts) or None


def _is_type_tag(part: str) -> bool:
    return part in {"str", "int", "float", "bool"} or "[" in part or "-" in part


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {first.get('msg')}", None
    param = _param_of(tuple(first.get("loc", ())))
    if param is None:
        if first.get("type") == "missing":
            return "the request needs a JSON body", None
        return "the request body must be a JSON object", None
    # A union field (prompt, stop, content) fails once per member: name the field, list every reason.
    field = first["loc"][:2]
    same_field = [e for e in errors if tuple(e.get("loc", ()))[:2] == tuple(field)]
    if len(same_field) > 1:
        param = _param_of(tuple(field))
    reasons = list(dict.fromkeys(_clean(e.get("msg", "invalid")) for e in same_field))
    return f"{param}: {'; or '.join(reasons)}", param


def _clean(message: str) -> str:
    if message == "Extra inputs are not permitted":
        return "not supported by this server (unknown fields are refused, not ignored)"
    return str(message).removeprefix("Value error, ")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, including FastAPI's own, answer in OpenAI's shape."""

    @app.exception_handler(OpenAIError)
    async def _openai(_: Request, exc: OpenAIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(400, message, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(json.JSONDecodeError)
    async def _json(_: Request, exc: json.JSONDecodeError) -> JSONResponse:
        return error_response(400, f"the request body is not valid JSON: {exc}")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, f"internal error: {type(exc).__name__}")
