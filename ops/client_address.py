"""The client's address behind load balancers: one documented setting, used everywhere.

`TRUSTED_PROXY_HOPS` (environment variable of the same name, default 0) is how many proxies
you run in front of brokerlink, each appending the address it received from to
X-Forwarded-For. With 0 the socket's peer (REMOTE_ADDR) is the client, and X-Forwarded-For is
ignored (anyone can send one). With N, the client is the N-th address from the right of
X-Forwarded-For: the one your outermost proxy saw; anything further left was written by
the client and is not trusted. allauth's sign-in limits read the same number
(ALLAUTH_TRUSTED_PROXY_COUNT), and so do the API audit trail and the log lines.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def client_address(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "") or ""
    hops = int(getattr(settings, "TRUSTED_PROXY_HOPS", 0) or 0)
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        return remote
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
