"""Request body limits: a body over CONTENTQ_WEB_MAX_BODY_KB is refused with 413 before it is read whole.

A small ASGI wrapper of `receive` rather than Starlette's RequestBodyLimitMiddleware, which only FastAPI 0.16x
(Starlette 1.x) have. A body announced too large (Content-Length) is refused at its first read; a chunked one
once its bytes pass the limit. The 413 is an HTTPException raised inside the app, so it is answered like every
other error (`{"error": …}` for the API, the error page for a form). An endpoint that never reads its body
(every GET) is not affected.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self, size: int | str) -> HTTPException:
        return HTTPException(
            413,
            f"request body too large ({size} bytes): the panel takes at most {self.max_bytes} bytes"
            " (CONTENTQ_WEB_MAX_BODY_KB); a job's payload carries ids and options, not content",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
            big = declared

            async def refuse() -> Message:
                raise self.too_large(big)

            await self.app(scope, refuse, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self.too_large(f"over {self.max_bytes}")
            return message

        await self.app(scope, limited, send)
