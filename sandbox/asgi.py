"""ASGI entry point of the standalone sandbox server.

`GET /v1/account` with a bearer token the sandbox knows (every heartbeat) is answered here,
by the same code as the Django view (views.account_result), without Django's request
handler: that handler starts a thread per request for its request_started/finished signals,
which was most of the endpoint's CPU time (docs/benchmarks.md#figures-the-code-cites). Everything else,
including unknown or malformed tokens, goes to Django.
"""

import gc
import json
import os
import re
import uuid

from django.core.asgi import get_asgi_application
from django.core.serializers.json import DjangoJSONEncoder

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_sandbox")

from sandbox.abandoned import finish_abandoned_requests  # noqa: E402 - after the settings default

django_application = finish_abandoned_requests(get_asgi_application())

from sandbox import services, views  # noqa: E402 - once Django's apps are ready

ACCOUNT_PATH = "/v1/account"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# What Django's middleware adds to every answer (SecurityMiddleware, XFrameOptionsMiddleware,
# the request id); kept so a heartbeat sees the same security headers either way (not the
# Content-Security-Policy, which only HTML needs).
_FIXED_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


async def _account_fast(scope, send) -> bool:
    auth = request_id = ""
    for name, value in scope["headers"]:
        if name == b"authorization":
            auth = value.decode("latin-1")
        elif name == b"x-request-id":
            request_id = value.decode("latin-1")
    if auth[:7].lower() != "bearer ":
        return False
    found = await services.atoken_for_access(auth[7:].strip())
    if found is None:
        return False
    answer = await views.account_result(found)
    if isinstance(answer, dict):  # the answer of every healthy heartbeat: JsonResponse's, encoded here
        status, body = 200, json.dumps(answer, cls=DjangoJSONEncoder).encode()
        headers = [(b"content-type", b"application/json")]
    else:
        status, body = answer.status_code, answer.content
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.items()]
    if not any(name == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    headers.extend(_FIXED_HEADERS)
    request_id = request_id if _REQUEST_ID_RE.match(request_id) else uuid.uuid4().hex
    headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return True


def gc_tuned() -> None:
    """The garbage collector, tuned for a server of many short requests
    (docs/benchmarks.md#the-sandboxs-account-endpoint-get-v1account), once per server process
    at its start (ASGI lifespan), not on import. What is loaded by then (Django, the apps, the
    views) lives as long as the process: collected once, then frozen out of the generations, so
    the full collections that the heartbeats' cached token rows set off scan only what was made
    since. The youngest generation is collected after 20,000 allocations instead of 700: with
    hundreds of heartbeats in flight, each allocating objects that live until its answer, the
    default collected (and scanned, and promoted) them several times per heartbeat."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            gc_tuned()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    if scope["type"] == "lifespan":  # Django's handler serves http only
        await _lifespan(receive, send)
        return
    hot = scope["type"] == "http" and scope["path"] == ACCOUNT_PATH and scope["method"] == "GET"
    if hot and await _account_fast(scope, send):
        return
    await django_application(scope, receive, send)
