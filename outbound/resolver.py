"""The outbound policy as an aiohttp resolver: aiohttp connects only to addresses checked here.

aiohttp's TCPConnector asks its resolver (`aiohttp.abc.AbstractResolver`, the documented way
to replace name resolution) for a host's addresses and opens the socket to one of exactly
those; it caches the answer for `ttl_dns_cache` and never resolves the name another way. So
resolving and checking here pins the connection to a checked address: a name rebound to a
private address between two resolutions is refused at the second, never connected to.

IP literals in a URL never reach a resolver (aiohttp connects to them directly, refusing the
legacy numeric IPv4 forms); `url_target` checks them before any request is made.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp.abc import AbstractResolver, ResolveResult

from outbound.policy import OutboundRefused, allowed_addresses

# What aiohttp's own resolvers report for an address that needs no further lookup.
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class AddressRefused(OSError):
    """The policy refused the host's addresses. An OSError, so aiohttp reports it as the
    connection failing (ClientConnectorDNSError, this as its `os_error`)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class PolicyResolver(AbstractResolver):
    """Resolves with `outbound.policy.allowed_addresses` (in a thread: getaddrinfo blocks) and
    returns every address only when all are allowed; otherwise AddressRefused."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            addresses = await loop.run_in_executor(None, allowed_addresses, host, port)
        except OutboundRefused as refused:
            raise AddressRefused(refused.message) from None
        wanted = {socket.AF_INET: 4, socket.AF_INET6: 6}.get(family)  # AF_UNSPEC (the default): all
        results: list[ResolveResult] = []
        for address in addresses:
            version = 6 if ":" in address else 4
            if wanted is not None and version != wanted:
                continue
            results.append(
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=port,
                    family=socket.AF_INET6 if version == 6 else socket.AF_INET,
                    proto=0,
                    flags=_NUMERIC,
                )
            )
        if not results:
            raise AddressRefused("no address of the requested family")
        return results

    async def close(self) -> None:
        return None


def refused_by_resolver(exc: BaseException | None) -> bool:
    """True when an aiohttp exception (or its causes) is this resolver refusing the host."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, AddressRefused) or isinstance(getattr(exc, "os_error", None), AddressRefused):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
