"""Refuse request bodies larger than a limit before reading them into memory.

A declared ``Content-Length`` over the limit is refused at once; a chunked body is counted as
it streams and refused as soon as it passes the limit. Uploads of data products (one route
prefix) get their own, much larger limit: they are streamed to disk, never held in memory.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(HTTPException):
    """Raised from ``receive``: FastAPI re-raises HTTPExceptions met while reading a body, so
    the app's problem handler answers 413 (a plain exception would become a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _detail(limit))


class BodySizeLimit:
    """ASGI middleware: 413 problem+json when a body exceeds its route's limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        upload_prefix: str | None = None,
        max_upload_bytes: int = 0,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_prefix = upload_prefix
        self.max_upload_bytes = max_upload_bytes

    def _limit(self, scope: Scope) -> int:
        if self.upload_prefix and str(scope.get("path", "")).startswith(self.upload_prefix):
            return self.max_upload_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await refuse(send, 400, "Invalid input", "invalid Content-Length header")
                    return
                if declared > limit:
                    await refuse(send, 413, "Content too large", _detail(limit))
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await refuse(send, 413, "Content too large", _detail(limit))


def _detail(limit: int) -> str:
    return f"request body larger than the limit of {limit} bytes"


async def refuse(send: Send, status: int, title: str, detail: str) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})
