"""The one place data minimisation is enforced (``governance.minimisation``): a plain ASGI
middleware that removes the fields a client may not read from every JSON answer to a GET,
whatever route produced it. Writes are not touched (they answer what the client sent)."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medbridge.governance.minimisation import DataPolicy, without
from medbridge.governance.permissions import Principal


class Minimise:
    def __init__(self, app: ASGIApp, policy: DataPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []
        hidden: frozenset[str] = frozenset()

        async def hold(message: Message) -> None:
            nonlocal start, hidden
            if message["type"] == "http.response.start":
                hidden = self._hidden(scope, message)
                if not hidden:  # not JSON, or nothing to hide: streamed as it comes
                    await send(message)
                    return
                start = message
                return
            if not hidden or message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            await _reshaped(start, b"".join(chunks), hidden, send)

        await self.app(scope, receive, hold)

    def _hidden(self, scope: Scope, start: Message) -> frozenset[str]:
        """The fields to remove from this answer: none unless it is JSON, to a client with
        something hidden on this route."""
        principal = (scope.get("state") or {}).get("client")
        if not isinstance(principal, Principal):
            return frozenset()
        json_answer = any(
            k.lower() == b"content-type" and v.startswith(b"application/json")
            for k, v in start.get("headers", ())
        )
        if not json_answer:
            return frozenset()
        return self.policy.hidden(principal, getattr(scope.get("route"), "path", ""))


async def _reshaped(start: Message, body: bytes, hidden: frozenset[str], send: Send) -> None:
    """``body`` without the ``hidden`` fields (and its length corrected), then sent."""
    headers = list(start.get("headers", ()))
    if body:
        shaped, changed = without(orjson.loads(body), hidden)
        if changed:
            body = orjson.dumps(shaped)
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
