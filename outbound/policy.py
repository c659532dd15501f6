"""The outbound-URL policy: which URLs brokerlink may call, checked when an admin saves
one and again at connection time with the checked address pinned.

Rules (OWASP SSRF prevention; security finding 3):

- https only. Plain http only to a loopback host, and only behind the development switch
  `OUTBOUND_ALLOW_LOOPBACK_HTTP` (on in development, off in production), which `make run`'s
  sandbox and the tests use (they serve http on 127.0.0.1). Behind the same switch,
  `OUTBOUND_DEVELOPMENT_NETWORKS` (CIDRs, empty by default) names test networks that count
  as loopback: the multi-host tests' sandbox lives on a private address in network
  namespaces of their own. With the switch off the list changes nothing.
- No user-info (`user:pass@`), no backslashes, no control characters or spaces.
- Parsed with urllib3's `parse_url`, the parser the HTTP client uses, and refused when the
  standard library's `urlsplit` reads a different host (the `http://a:1\\@127.0.0.1/` trick).
- Every address the host resolves to must be public: loopback (unless the switch is on),
  private, link-local (cloud metadata at 169.254.169.254), CGNAT 100.64/10, multicast,
  reserved and unspecified ranges are refused; an IPv4 address inside IPv6 (mapped, 6to4,
  Teredo) is judged as that IPv4 address.
- Messages are generic: they never say whether a host exists or a port is open.

Plain Python with no Django models, so brokers/, connections/ and ops/ all import it.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

GENERIC = "must be an https:// URL of a publicly reachable host"
CGNAT = ipaddress.ip_network("100.64.0.0/10")
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})


class OutboundRefused(ValueError):
    """A URL or address the policy refuses. The message is safe to show an administrator."""

    def __init__(self, message: str = GENERIC):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int


def loopback_http_allowed() -> bool:
    """The development switch; read at call time so tests and settings can change it."""
    try:
        from django.conf import settings

        return bool(getattr(settings, "OUTBOUND_ALLOW_LOOPBACK_HTTP", False))
    except Exception:  # noqa: BLE001 - outside Django (a script): the strict default
        return False


def development_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks `OUTBOUND_DEVELOPMENT_NETWORKS` names; read at call time like the switch."""
    try:
        from django.conf import settings

        raw = getattr(settings, "OUTBOUND_DEVELOPMENT_NETWORKS", ())
    except Exception:  # noqa: BLE001 - outside Django (a script): none
        return []
    if isinstance(raw, str):
        raw = raw.split(",")
    return [ipaddress.ip_network(item.strip(), strict=False) for item in raw if item.strip()]


def _in_development_network(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip.version == net.version and ip in net for net in development_networks())


def address_allowed(address: str, *, allow_loopback: bool | None = None) -> bool:
    """True when brokerlink may open a connection to this IP address."""
    allow_loopback = loopback_http_allowed() if allow_loopback is None else allow_loopback
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6:
        # IPv4 carried inside IPv6 (mapped ::ffff:a.b.c.d, 6to4 2002::/16, Teredo 2001::/32)
        # is judged by the IPv4 address a relay would deliver to; Teredo carries two (server,
        # client) and both must be allowed.
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        embedded = [address for address in embedded if address is not None]
        if embedded:
            return all(address_allowed(str(address), allow_loopback=allow_loopback) for address in embedded)
    if ip.is_loopback:
        return allow_loopback
    if allow_loopback and _in_development_network(ip):
        return True
    if ip.version == 4 and ip in CGNAT:
        return False
    return not (
        ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
        or not ip.is_global
    )


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (tests replace this to play a hostile resolver)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def allowed_addresses(host: str, port: int, *, allow_loopback: bool | None = None) -> list[str]:
    """Resolve and check: all addresses when every one is allowed, else OutboundRefused.

    One refused address refuses the host: a name answering both public and private
    addresses is a rebinding setup, not a broker.
    """
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise OutboundRefused() from exc
    if not addresses or not all(address_allowed(a, allow_loopback=allow_loopback) for a in addresses):
        raise OutboundRefused()
    return addresses


def url_target(url: object, *, allow_loopback: bool | None = None) -> Target:
    """Check a URL's form without touching the network; return what to connect to."""
    allow_loopback = loopback_http_allowed() if allow_loopback is None else allow_loopback
    _url_characters_check(url)
    scheme, host, port = _url_parts(url)
    if scheme == "http" and not (allow_loopback and _is_loopback_name(host)):
        raise OutboundRefused(
            "must be an https:// URL (http only to 127.0.0.1/localhost in development)"
            if allow_loopback
            else "must be an https:// URL"
        )
    if _is_ip_literal(host) and not address_allowed(host, allow_loopback=allow_loopback):
        raise OutboundRefused()
    return Target(scheme, host, port)


def _url_characters_check(url: object) -> None:
    """Refuse what is not a non-empty string, or holds spaces, backslashes or control characters."""
    if not isinstance(url, str) or not url:
        raise OutboundRefused("must be an absolute https:// URL")
    if "\\" in url or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise OutboundRefused("must not contain spaces, backslashes or control characters")


def _url_parts(url: str) -> tuple[str, str, int]:
    """The URL's scheme, host and port, read by two parsers that must agree; refused when it is
    not absolute http(s) or carries a user name or password."""
    try:
        parsed = parse_url(url)
        split = urlsplit(url)
        split_host = split.hostname
    except (LocationParseError, ValueError) as exc:
        raise OutboundRefused("must be an absolute https:// URL") from exc
    scheme = (parsed.scheme or "").lower()
    host = (parsed.host or "").strip("[]").lower()
    if scheme not in ("http", "https") or not host:
        raise OutboundRefused("must be an absolute https:// URL")
    if parsed.auth or "@" in (split.netloc or ""):
        raise OutboundRefused("must not contain a user name or password")
    if (split_host or "").lower() != host:
        raise OutboundRefused("must be an absolute https:// URL")  # the two parsers disagree: refuse
    return scheme, host, parsed.port or (443 if scheme == "https" else 80)


def outbound_url_problem(
    url: object, *, resolve_host: bool = True, unresolvable_ok: bool = True, allow_loopback: bool | None = None
) -> str | None:
    """Why brokerlink refuses to call `url`, or None.

    With `resolve_host` the DNS answer is checked too. A name that does not resolve here
    (offline, a broker's host not yet live) passes when `unresolvable_ok`: the clients
    check again at connection time, so it can never reach a refused address later.
    """
    try:
        target = url_target(url, allow_loopback=allow_loopback)
    except OutboundRefused as refused:
        return refused.message
    if not resolve_host:
        return None
    try:
        addresses = resolve(target.host, target.port)
    except (OSError, UnicodeError):
        return None if unresolvable_ok else GENERIC
    if not addresses or not all(address_allowed(a, allow_loopback=allow_loopback) for a in addresses):
        return GENERIC
    return None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _is_loopback_name(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or _in_development_network(ip)
