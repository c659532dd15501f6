"""Token requests are answered even when the client has gone away.

A real authorization server that hung for a while (a stopped process, a full accept queue)
processes the requests queued meanwhile when it resumes, whether or not the client still
waits: a refresh request given up on by the client still rotates the refresh token. Django's
ASGI handler instead cancels a view as soon as it hears the client disconnect, which would make
the sandbox kinder than the brokers it stands in for. This ASGI wrapper hides the disconnect
from POSTs to the token and revocation endpoints once their body has arrived.
"""

from __future__ import annotations

import asyncio
import contextlib

TOKEN_PATHS = ("/oauth/token", "/oauth/revoke")


def finish_abandoned_requests(app, *, prefix: str = ""):
    paths = tuple(prefix + path for path in TOKEN_PATHS)

    async def application(scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope["path"].startswith(paths):
            return await app(scope, receive, send)
        body_done = False

        async def receive_until_body():
            nonlocal body_done
            if body_done:
                await asyncio.Event().wait()  # the answer is produced whatever the client does
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done = True
            return message

        async def send_to_whoever_listens(message):
            with contextlib.suppress(OSError):  # the client left: nobody reads it, as at a real broker
                await send(message)

        return await app(scope, receive_until_body, send_to_whoever_listens)

    return application
