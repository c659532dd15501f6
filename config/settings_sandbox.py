"""Settings of the standalone sandbox server (`manage.py sandbox_serve`): the main settings,
same database, with only the sandbox mounted at `/` (wiring, so it lives with the other settings).

The two sync-only middlewares are swapped for async-capable equivalents so the async
account endpoint runs on uvicorn's event loop (see sandbox/middleware.py)."""

from config.settings import *  # noqa: F401,F403
from config.settings import MIDDLEWARE as _MAIN_MIDDLEWARE

ROOT_URLCONF = "sandbox.standalone_urls"

_SWAP = {
    "ops.logging.RequestIdMiddleware": "sandbox.middleware.SandboxRequestIdMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware": "sandbox.middleware.SandboxStaticMiddleware",
}
MIDDLEWARE = [_SWAP.get(name, name) for name in _MAIN_MIDDLEWARE]
