"""Errors as RFC 9457 problem details (``application/problem+json``), mapped in one place.

Every dpps error class carries its HTTP status and title (``dpps.core.errors``); the problem
``type`` names the class (``urn:dpps:problem:NotFound``), so the remote client turns it back
into the very same exception and the CLI exits with the very same code locally and remotely.
Request validation, unknown routes and internal errors get the same shape. Internal errors
never leak a traceback: it goes to the server log.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dpps.core import errors
from dpps.core.errors import DppsError
from dpps.core.wire import PROBLEM_TYPE_PREFIX

log = logging.getLogger("dpps.api")

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = PROBLEM_TYPE_PREFIX


class Problem(BaseModel):
    """RFC 9457 problem details, with ``errors`` listing invalid request fields."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


#: For the OpenAPI document: the answers every operation may give besides its success.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": text, "content": {MEDIA_TYPE: {}}}
    for status, text in (
        (400, "Invalid input (malformed JSON, unknown or invalid fields, bad DID or filter)"),
        (401, "Missing, unknown, expired or revoked bearer token"),
        (403, "The account's roles or scopes do not allow this"),
        (404, "Not found"),
        (413, "Request body too large"),
    )
}


def problem_response(
    status: int,
    title: str,
    detail: str | None,
    *,
    type_: str = "about:blank",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def from_error(exc: DppsError, instance: str | None = None) -> JSONResponse:
    return problem_response(
        exc.http_status,
        exc.title,
        str(exc),
        type_=TYPE_PREFIX + errors.public_name(exc),
        instance=instance,
        exit_code=exc.exit_code,
    )


def _jsonable_errors(raw: Any) -> list[dict[str, Any]]:
    out = []
    for err in raw:
        out.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


#: Frames of a logged traceback kept at each end: a deep recursion (a RecursionError) made one
#: 650-byte request write about 5,750 log lines; the first and last frames tell where it was.
TRACEBACK_FRAMES = 15


def short_traceback(exc: BaseException, frames: int = TRACEBACK_FRAMES) -> str:
    """``exc``'s traceback with at most ``frames`` frames at each end (the middle counted)."""
    stack = traceback.extract_tb(exc.__traceback__)
    lines = traceback.format_list(stack[:frames])
    if len(stack) > 2 * frames:
        lines.append(f"  ... {len(stack) - 2 * frames} frames left out ...\n")
    lines += traceback.format_list(stack[max(frames, len(stack) - frames) :])
    summary = "".join(traceback.format_exception_only(exc)).strip()
    return "Traceback (most recent call last):\n" + "".join(lines) + summary


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into problem+json."""

    @app.exception_handler(DppsError)
    async def _dpps(request: Request, exc: DppsError) -> JSONResponse:
        request.state.error_kind = type(exc).__name__
        return from_error(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        request.state.error_kind = "InvalidInput"
        errs = _jsonable_errors(exc.errors())
        if any(e["type"] == "json_invalid" for e in errs):
            detail = "malformed JSON in the request body"
        else:
            detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errs[:10])
        return problem_response(
            400,
            errors.InvalidInput.title,
            detail,
            type_=TYPE_PREFIX + "InvalidInput",
            instance=request.url.path,
            exit_code=errors.InvalidInput.exit_code,
            errors=errs,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {
            401: "Unauthorized",
            404: "Not found",
            405: "Method not allowed",
            413: "Content too large",
        }.get(exc.status_code, "HTTP error")
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return problem_response(
            exc.status_code,
            title,
            detail,
            instance=request.url.path,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(OperationalError)
    async def _db(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("catalog unavailable: %s", exc.orig)
        request.state.error_kind = "Unavailable"
        return from_error(errors.Unavailable("catalog busy or unreachable, retry later"))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "internal error on %s %s\n%s", request.method, request.url.path, short_traceback(exc)
        )
        request.state.error_kind = type(exc).__name__
        return problem_response(
            500, "Internal error", "internal error (logged on the server)", instance=None
        )
