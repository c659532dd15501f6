"""authlib wiring: the sandbox's authorization server, grants, revocation and resource protector.

Protocol work (PKCE, client authentication, redirect-URI checks, error bodies) is authlib's;
this module only tells authlib how the sandbox stores codes and tokens and what each client's
token semantics are.
"""

from __future__ import annotations

from dataclasses import dataclass

from authlib.common.security import generate_token
from authlib.integrations.django_oauth2 import AuthorizationServer, BearerTokenValidator, ResourceProtector
from authlib.integrations.django_oauth2 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc6749 import InvalidRequestError, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from django.db import transaction
from django.utils import timezone

from sandbox import services
from sandbox.models import (
    SandboxAccount,
    SandboxAuthorizationCode,
    SandboxClient,
    SandboxGrant,
    SandboxToken,
    SandboxUser,
    token_hash,
)

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
# RFC 6749 recommends at most 10 minutes; Tradier documents exactly that.
CODE_TTL_SECONDS = 600


@dataclass
class Consent:
    """What the consent page hands authlib as the `grant_user`: who approved, for which account."""

    user: SandboxUser
    account: SandboxAccount


class S256CodeChallenge(CodeChallenge):
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        if grant.request.client.require_pkce and not grant.request.payload.data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': this client requires PKCE (S256).")
        return super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def save_authorization_code(self, code, request):
        consent: Consent = request.user
        client: SandboxClient = request.client
        now = client.now()
        scope, session_expires_at = services.oidc_granted_scope(
            client, request.scope or "", prompt=request.payload.data.get("prompt") or "", now=now
        )
        with transaction.atomic():
            grant = SandboxGrant.objects.create(
                client=client,
                user=consent.user,
                account=consent.account,
                scope=scope,
                consented_at=now,
                session_expires_at=session_expires_at,
            )
            SandboxAuthorizationCode.objects.create(
                code_hash=token_hash(code),
                client=client,
                grant=grant,
                redirect_uri=request.payload.redirect_uri or "",
                scope=scope,
                code_challenge=request.payload.data.get("code_challenge") or "",
                code_challenge_method=request.payload.data.get("code_challenge_method") or "",
                created_at=now,
                expires_at=now + timezone.timedelta(seconds=CODE_TTL_SECONDS),
            )
            services.count(client, grant, "codes_issued")

    def query_authorization_code(self, code, client):
        item = (
            SandboxAuthorizationCode.objects.select_related("grant")
            .filter(code_hash=token_hash(code), client=client)
            .first()
        )
        if item is None:
            return None
        if item.used_at is not None:
            # RFC 6749 §4.1.2: a code used twice revokes what was issued from it.
            services.grant_revoke(item.grant, reason="code_reuse")
            return None
        if client.now() >= item.expires_at or item.grant.is_revoked:
            return None
        return item

    def delete_authorization_code(self, authorization_code):
        # Kept (marked used) rather than deleted, so a replay can be recognised.
        authorization_code.used_at = timezone.now()
        authorization_code.save(update_fields=["used_at"])

    def authenticate_user(self, authorization_code):
        return authorization_code.grant.user


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def authenticate_refresh_token(self, refresh_token):
        return services.refresh_token_check(refresh_token=refresh_token, client=self.request.client)

    def authenticate_user(self, refresh_token):
        return refresh_token.grant.user

    def issue_token(self, user, refresh_token):
        return self.generate_token(
            user=user,
            scope=refresh_token.get_scope(),
            include_refresh_token=self.request.client.rotates_refresh_token,
        )

    def revoke_old_credential(self, refresh_token):
        if self.request.client.rotates_refresh_token:
            refresh_token.rotated = True
            # A reuse within the grace rotates it again: the grace still counts from the first.
            refresh_token.rotated_at = refresh_token.rotated_at or self.request.client.now()
            refresh_token.save(update_fields=["rotated", "rotated_at"])


class RevocationEndpoint(_RevocationEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token, token_type_hint):
        digest = token_hash(token)
        return (
            SandboxToken.objects.filter(access_token_hash=digest).first()
            or SandboxToken.objects.filter(refresh_token_hash=digest).first()
        )

    def revoke_token(self, token, request):
        is_refresh = token.refresh_token_hash == token_hash(request.form["token"])
        services.token_revoke(token, refresh=is_refresh)


class SandboxAuthorizationServer(AuthorizationServer):
    def save_token(self, token, request):
        client: SandboxClient = request.client
        # request.payload: authlib deprecates request.grant_type (a warning on every token request).
        grant_type = request.payload.grant_type
        source = request.refresh_token if grant_type == "refresh_token" else request.authorization_code
        grant = source.grant
        return services.token_store(token=token, client=client, grant=grant, grant_type=grant_type)


def _generate_bearer_token(grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
    token = {"token_type": "Bearer", "access_token": generate_token(42)}
    expires_in = services.access_expires_in(client, client.now())
    if expires_in is not None:
        token["expires_in"] = expires_in
    if include_refresh_token and client.issues_refresh_token:
        token["refresh_token"] = generate_token(48)
    if scope:
        token["scope"] = scope
    return token


class SandboxTokenValidator(BearerTokenValidator):
    def authenticate_token(self, token_string):
        return (
            SandboxToken.objects.select_related("client", "grant")
            .filter(access_token_hash=token_hash(token_string))
            .first()
        )


server = SandboxAuthorizationServer(SandboxClient, SandboxToken)
server.register_token_generator("default", _generate_bearer_token)
server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
server.register_grant(RefreshTokenGrant)
server.register_endpoint(RevocationEndpoint)

require_oauth = ResourceProtector()
require_oauth.register_token_validator(SandboxTokenValidator(SandboxToken))
