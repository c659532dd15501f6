"""Authorization-server metadata (RFC 8414 / OpenID Connect Discovery) for custom brokers.

Fetched through the outbound-URL policy, stored as the last good answer (used while the URL
is down), and applied to a spec to fill the endpoints it left out.
"""

from __future__ import annotations

import logging
from typing import get_args
from urllib.parse import urlsplit

import requests
from django.core.exceptions import SynchronousOnlyOperation
from django.db import DatabaseError

from brokers.profile import TokenAuthMethod
from outbound.clients import outbound_session, refused_by_policy
from outbound.policy import OutboundRefused

log = logging.getLogger(__name__)

DISCOVERY_TIMEOUT_SECONDS = 5
AUTH_METHODS = get_args(TokenAuthMethod)


class DiscoveryError(Exception):
    pass



# One message for every way a fetch can fail: distinct ones (refused, timed out, HTTP 404,
# not JSON) would turn the admin form into a port scanner. The reason goes to the log.
DISCOVERY_FAILED = "could not fetch RFC 8414 metadata from this URL"


def _discovery_failed(url: str, reason: str) -> DiscoveryError:
    log.warning("brokers.custom.discovery_failed", extra={"reason": reason})
    return DiscoveryError(DISCOVERY_FAILED)


def fetch_authorization_server_metadata(url: str) -> dict:
    """GET an RFC 8414 metadata document, checking that it is JSON and names its issuer.

    Through the outbound-URL policy (checked address pinned) and never following a redirect.
    """
    try:
        response = outbound_session().get(
            url, timeout=DISCOVERY_TIMEOUT_SECONDS, headers={"Accept": "application/json"}, allow_redirects=False
        )
    except (requests.RequestException, OutboundRefused) as exc:
        reason = "refused by the outbound-URL policy" if refused_by_policy(exc) else type(exc).__name__
        raise _discovery_failed(url, reason) from exc
    if response.status_code != 200:
        raise _discovery_failed(url, f"HTTP {response.status_code}")
    try:
        metadata = response.json()
    except ValueError as exc:
        raise _discovery_failed(url, "not JSON") from exc
    if not isinstance(metadata, dict):
        raise _discovery_failed(url, "not a JSON object")
    issuer = metadata.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise _discovery_failed(url, "no issuer")
    # RFC 8414 section 3.3: the issuer must be the authority the metadata was fetched from.
    if _origin(issuer) != _origin(url):
        raise DiscoveryError(f"metadata issuer {issuer!r} does not match the discovery URL's host")
    return metadata


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def metadata_stored(url: str) -> dict | None:
    """The last good metadata fetched from `url`, or None (none yet, or no database yet)."""
    from brokers.models import DiscoveredMetadata

    try:
        row = DiscoveredMetadata.objects.filter(url=url).first()
    except (DatabaseError, SynchronousOnlyOperation):  # not migrated yet, or called from async code
        return None
    return dict(row.metadata) if row is not None else None


def metadata_store(url: str, metadata: dict | None, *, error: str = "") -> None:
    """Remember a good answer (or record a failed attempt). Never fails the caller."""
    from django.utils import timezone

    from brokers.models import DiscoveredMetadata

    now = timezone.now()
    try:
        if metadata is not None:
            DiscoveredMetadata.objects.update_or_create(
                url=url, defaults={"metadata": metadata, "fetched_at": now, "last_attempt_at": now, "last_error": ""}
            )
        else:
            DiscoveredMetadata.objects.filter(url=url).update(last_attempt_at=now, last_error=error[:300])
    except (DatabaseError, SynchronousOnlyOperation):
        log.info("brokers.discovery.not_stored", extra={"url": url})


def discovery_metadata(url: str) -> tuple[dict, str]:
    """(metadata, warning): a fresh fetch (stored for later), else the stored last good answer
    with a warning saying so. Raises DiscoveryError when neither exists."""
    try:
        metadata = fetch_authorization_server_metadata(url)
    except DiscoveryError as exc:
        stored = metadata_stored(url)
        metadata_store(url, None, error=str(exc))
        if stored is None:
            log.warning("brokers.discovery.failed", extra={"url": url, "error": str(exc)})
            raise
        log.warning("brokers.discovery.stale", extra={"url": url, "error": str(exc)})
        return stored, f"{exc}; using the metadata stored from the last successful fetch"
    metadata_store(url, metadata)
    return metadata, ""


def apply_metadata(spec: dict, metadata: dict) -> dict:
    """Fill the endpoints (and PKCE/auth method, `iss` requirement and API base when unspecified)
    the spec left out."""
    filled = dict(spec)
    for key, meta_key in (
        ("authorize_url", "authorization_endpoint"),
        ("token_url", "token_endpoint"),
        ("revoke_url", "revocation_endpoint"),
        ("issuer", "issuer"),
    ):
        if not filled.get(key) and metadata.get(meta_key):
            filled[key] = metadata[meta_key]
    if "pkce" not in spec and "code_challenge_methods_supported" in metadata:
        filled["pkce"] = "S256" in (metadata.get("code_challenge_methods_supported") or [])
    supported = metadata.get("token_endpoint_auth_methods_supported")
    if "token_auth_method" not in spec and supported:
        filled["token_auth_method"] = next((m for m in AUTH_METHODS if m in supported), "client_secret_basic")
    # RFC 9207 §3: `iss` is mandatory on callbacks only where the metadata says it is sent.
    # An issuer the operator wrote in the spec (not copied from metadata) counts as declared.
    if "require_iss" not in spec:
        filled["require_iss"] = bool(spec.get("issuer")) or metadata.get(
            "authorization_response_iss_parameter_supported"
        ) is True
    # An OpenID provider's userinfo endpoint lives under its issuer: the API base defaults to it.
    if not filled.get("api_base_urls") and isinstance(metadata.get("issuer"), str):
        filled["api_base_urls"] = {"live": metadata["issuer"].rstrip("/")}
    return filled

