# Connections holding real sandbox tokens (authorization code + PKCE over HTTP), as the engine tests make them.
from tests.engine.conftest import world  # noqa: F401
