"""A request body size limit as plain ASGI middleware.

A declared ``Content-Length`` above the limit is refused before anything is read; a body
without one (chunked) is counted as it arrives and refused once it passes the limit.
Either way the client gets ``413`` with the JSON error body the other errors use.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(Exception):
    """Raised into the app when a streamed body passes the limit."""


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _message(self) -> str:
        return (f"the request body is larger than this server's limit of "
                f"{self.max_body_bytes} bytes")

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": self._message(), "errors": []}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                if declared is not None and declared > self.max_body_bytes:
                    await self._refuse(send)
                    return

        received = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise BodyTooLargeError(self._message())
            return message

        async def guarded_send(message: Message) -> None:
            # However the app turned the aborted read into a response (some frameworks
            # answer 400), the client is told 413.
            nonlocal started
            if too_large:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLargeError:
            if not started:
                await self._refuse(send)
