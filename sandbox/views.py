"""HTTP face of the sandbox broker. Protocol work is authlib's (oauth.py), rules are services'."""

from __future__ import annotations

import functools
import hmac
import json

from asgiref.sync import sync_to_async
from authlib.common.urls import add_params_to_uri
from authlib.integrations.django_oauth2.resource_protector import return_error_response
from authlib.oauth2 import OAuth2Error
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from sandbox import services
from sandbox.models import SandboxClient, SandboxUser
from sandbox.oauth import Consent, require_oauth, server

LOGIN_COOKIE = "sandbox_login"
# The salt predates the move out of brokers/: kept so signed-in sandbox sessions survive it.
LOGIN_SALT = "brokers.sandbox.login"
LOGIN_MAX_AGE = 8 * 3600


def sandbox_root(request: HttpRequest) -> str:
    """The sandbox's issuer: its root URL as this request reached it."""
    return request.build_absolute_uri(reverse("sandbox:home")).rstrip("/")


def sandbox_user(request: HttpRequest) -> SandboxUser | None:
    # The sandbox's own signed cookie: it never touches the brokerlink (Django auth) session.
    user_id = request.get_signed_cookie(LOGIN_COOKIE, default=None, salt=LOGIN_SALT, max_age=LOGIN_MAX_AGE)
    return services.user_get(user_id) if user_id else None


def home(request: HttpRequest) -> HttpResponse:
    return render(
        request, "sandbox/home.html", {"issuer": sandbox_root(request), "sandbox_user": sandbox_user(request)}
    )


LOGIN_ATTEMPTS = "10/m/ip,5/5m/key"


def _failed_logins(request: HttpRequest, username: str, *, record: bool) -> bool:
    """allauth's rate limiter over failed sign-ins: 10 a minute per address, 5 per 5 minutes per
    (username, address). With `record` a failure is counted; without, only checked. True = allowed."""
    from allauth.core.internal import ratelimit

    key = f"{username.lower()}:{request.META.get('REMOTE_ADDR', '')}"
    usage = ratelimit.consume(request, app="sandbox", action="login", key=key,
                              config={"login": LOGIN_ATTEMPTS}, dry_run=not record)
    return bool(usage)


@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    next_url = request.POST.get("next") or request.GET.get("next") or reverse("sandbox:home")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("sandbox:home")
    error = ""
    if request.method == "POST":
        username = request.POST.get("username", "")
        if not _failed_logins(request, username, record=False):
            error = "Too many failed sign-ins. Wait a few minutes and try again."
            user = None
        else:
            user = services.user_authenticate(username=username, password=request.POST.get("password", ""))
            if user is None:
                _failed_logins(request, username, record=True)
        if user is not None:
            response = redirect(next_url)
            response.set_signed_cookie(
                LOGIN_COOKIE, str(user.pk), salt=LOGIN_SALT, max_age=LOGIN_MAX_AGE, httponly=True, samesite="Lax",
                secure=request.is_secure(),
            )
            return response
        error = error or "Wrong username or password."
    context = {
        "next": next_url,
        "error": error,
        "demo_username": services.DEMO_USERNAME,
        "demo_password": services.DEMO_PASSWORD,
    }
    return render(request, "sandbox/login.html", context, status=401 if error else 200)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    response = redirect("sandbox:home")
    response.delete_cookie(LOGIN_COOKIE)
    return response


def _with_issuer(request: HttpRequest, response: HttpResponse, client: SandboxClient | None = None) -> HttpResponse:
    # RFC 9207: every authorization response names its issuer. OIDC-mode clients get none,
    # like the many OpenID providers that do not advertise the parameter.
    if client is not None and client.oidc:
        return response
    if response.has_header("Location"):
        response["Location"] = add_params_to_uri(response["Location"], [("iss", sandbox_root(request))])
    return response


@require_http_methods(["GET", "POST"])
def authorize(request: HttpRequest) -> HttpResponse:
    user = sandbox_user(request)
    if user is None:
        return redirect(f"{reverse('sandbox:login')}?{_query({'next': request.get_full_path()})}")
    try:
        grant = server.get_consent_grant(request, end_user=user)
    except OAuth2Error as error:
        if error.redirect_uri:
            return _with_issuer(request, server.handle_error_response(None, error))
        # Strings, not the error object: templates would call it (OAuth2Error is callable).
        context = {"error_code": error.error, "error_description": error.description or ""}
        return render(request, "sandbox/error.html", context, status=400)
    client: SandboxClient = grant.client
    accounts = list(user.accounts.all())
    error = ""
    if request.method == "POST":
        if request.POST.get("decision") == "approve":
            account = next((a for a in accounts if str(a.pk) == request.POST.get("account")), None)
            if account is not None:
                response = server.create_authorization_response(request, grant_user=Consent(user, account), grant=grant)
                return _with_issuer(request, response, client)
            error = "Pick the account to share."
        else:
            response = server.create_authorization_response(request, grant_user=None, grant=grant)
            return _with_issuer(request, response, client)
    context = {"client": client, "accounts": accounts, "sandbox_user": user, "error": error}
    return render(request, "sandbox/consent.html", context, status=400 if error else 200)


def _query(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def _oauth_error(response: HttpResponse) -> str:
    try:
        return json.loads(response.content).get("error", "")
    except (ValueError, AttributeError):
        return ""


@csrf_exempt
@require_POST
def token(request: HttpRequest) -> HttpResponse:
    client = services.client_from_token_request(request)
    if client is not None:
        services.count(client, None, "token_requests")
        if fault := services.fault_response(client):
            return fault
    response = server.create_token_response(request)
    if (
        client is not None
        and request.POST.get("grant_type") == "refresh_token"
        and response.status_code == 400
        and _oauth_error(response) == "invalid_grant"
    ):
        return services.error_shape_response(services.error_shape(client, "refresh"))
    return response


@csrf_exempt
@require_POST
def revoke(request: HttpRequest) -> HttpResponse:
    client = services.client_from_token_request(request)
    if client is not None:
        services.count(client, None, "revocations")
        if fault := services.fault_response(client):
            return fault
    return server.create_endpoint_response("revocation", request)


_bearer_validator = require_oauth.get_token_validator("bearer")


async def account(request: HttpRequest) -> HttpResponse:
    """The heartbeat endpoint. Async: the latency fault waits on the event loop, the token,
    client, grant and account come from one (briefly cached) query, the call counter is
    batched. Same answers as authlib's ResourceProtector for every case. (The standalone
    server answers the found-token case without Django's handler: sandbox/asgi.py.)"""
    auth = request.headers.get("Authorization", "")
    found = await services.atoken_for_access(auth[7:].strip()) if auth[:7].lower() == "bearer " else None
    if found is None:
        try:
            await sync_to_async(require_oauth.acquire_token, thread_sensitive=True)(request)
        except OAuth2Error as error:
            return return_error_response(error)
        found = await services.atoken_for_access(auth[7:].strip())  # issued a moment ago
        if found is None:
            return JsonResponse({"error": "invalid_token"}, status=401)
    answer = await account_result(found)
    return JsonResponse(answer) if isinstance(answer, dict) else answer


async def account_result(found) -> HttpResponse | dict:
    """The account endpoint's answer for a token the sandbox knows. Count the call, apply the
    client's faults, then authlib's own token checks (expired, revoked, scope): the refusal or
    fault as a response, else the account's JSON payload (the standalone server encodes it
    itself, without building a JsonResponse: sandbox/asgi.py)."""
    services.count_later(found.client, found.grant, "account_calls")
    await services.acounters_flush_soon()
    if fault := await services.afault_response(found.client):
        return fault
    try:
        _bearer_validator.validate_token(found, None, None)
    except OAuth2Error:
        return services.error_shape_response(services.error_shape(found.client, "access"))
    return services.account_payload(found.grant.account)


def metadata(request: HttpRequest) -> JsonResponse:
    root = sandbox_root(request)
    return JsonResponse(
        {
            "issuer": root,
            "authorization_endpoint": f"{root}/oauth/authorize",
            "token_endpoint": f"{root}/oauth/token",
            "revocation_endpoint": f"{root}/oauth/revoke",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "authorization_response_iss_parameter_supported": True,
            "service_documentation": f"{root}/",
        }
    )


def openid_configuration(request: HttpRequest) -> JsonResponse:
    """OpenID Connect Discovery 1.0: what an OIDC-mode client is pointed at. Unlike the RFC 8414
    document it does not advertise RFC 9207 `iss` (OIDC-mode callbacks carry none)."""
    root = sandbox_root(request)
    return JsonResponse(
        {
            "issuer": root,
            "authorization_endpoint": f"{root}/oauth/authorize",
            "token_endpoint": f"{root}/oauth/token",
            "revocation_endpoint": f"{root}/oauth/revoke",
            "userinfo_endpoint": f"{root}/oidc/userinfo",
            "scopes_supported": ["openid", "offline_access", "accounts:read"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "prompt_values_supported": ["consent", "login"],
        }
    )


def userinfo(request: HttpRequest) -> HttpResponse:
    """OIDC userinfo: `{"sub": ...}` and nothing else, with the client's faults and token rules."""
    auth = request.headers.get("Authorization", "")
    found = services.token_for_access(auth[7:].strip()) if auth[:7].lower() == "bearer " else None
    if found is None:
        return JsonResponse({"error": "invalid_token"}, status=401)
    services.count(found.client, found.grant, "account_calls")
    if fault := services.fault_response(found.client):
        return fault
    try:
        _bearer_validator.validate_token(found, None, None)
    except OAuth2Error:
        return services.error_shape_response(services.error_shape(found.client, "access"))
    return JsonResponse(services.userinfo_payload(found))


# --- control: staff page and JSON API ------------------------------------------------------


CONTROL_PERMISSION = "sandbox.control_sandbox"


def _is_staff(request: HttpRequest) -> bool:
    """May use the control page and API: staff with the sandbox's own permission (superusers
    have it), in a session that passed a second factor (common.staff, as admin)."""
    from common.staff import staff_verified

    user = getattr(request, "user", None)
    return bool(user and user.is_authenticated and user.has_perm(CONTROL_PERMISSION) and staff_verified(request))


def _control_token_ok(request: HttpRequest) -> bool:
    expected = getattr(settings, "SANDBOX_CONTROL_TOKEN", "")
    given = request.headers.get("X-Sandbox-Control-Token", "")
    return bool(expected) and hmac.compare_digest(expected, given)


def control_api(view):
    """JSON control API: the control token (CSRF-exempt) or a staff session (CSRF enforced)."""

    @csrf_exempt
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not _control_token_ok(request):
            if not _is_staff(request):
                return JsonResponse({"error": "forbidden"}, status=403)
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                rejected = CsrfViewMiddleware(lambda r: None).process_view(request, lambda r: None, (), {})
                if rejected is not None:
                    return rejected
        try:
            data = json.loads(request.body or b"{}") if request.method in ("POST", "PATCH", "PUT") else {}
            return view(request, data, *args, **kwargs)
        except (ValueError, services.SandboxError) as exc:
            return JsonResponse({"error": "invalid_request", "error_description": str(exc)}, status=400)

    return wrapped


def _client_or_404(client_id: str) -> SandboxClient:
    client = services.client_get(client_id)
    if client is None:
        raise Http404("No SandboxClient matches the given query.")
    return client


@control_api
@require_POST
def api_clients(request: HttpRequest, data: dict) -> JsonResponse:
    client = services.client_create_from_json(data)
    payload = services.client_describe(client, with_secret=True) | {"faults": services.client_faults(client)}
    return JsonResponse(payload, status=201)


@control_api
@require_http_methods(["GET", "PATCH"])
def api_client(request: HttpRequest, data: dict, client_id: str) -> JsonResponse:
    client = _client_or_404(client_id)
    if request.method == "PATCH":
        try:
            services.client_update(client, **data)
        except (services.SandboxError, ValidationError) as exc:
            return JsonResponse({"error": "invalid_request", "error_description": str(exc)}, status=400)
    return JsonResponse(services.client_describe(client) | {"faults": services.client_faults(client)})


@control_api
@require_http_methods(["GET", "PATCH", "POST"])
def api_faults(request: HttpRequest, data: dict, client_id: str) -> JsonResponse:
    client = _client_or_404(client_id)
    if request.method != "GET":
        services.client_set_faults(client, **data)
    return JsonResponse(services.client_faults(client))


@control_api
@require_http_methods(["GET"])
def api_counters(request: HttpRequest, data: dict, client_id: str) -> JsonResponse:
    client = _client_or_404(client_id)
    return JsonResponse(services.client_counters(client))


@control_api
@require_POST
def api_revoke_all(request: HttpRequest, data: dict, client_id: str) -> JsonResponse:
    client = _client_or_404(client_id)
    return JsonResponse({"revoked_grants": services.client_revoke_all_grants(client)})


@control_api
@require_POST
def api_users(request: HttpRequest, data: dict) -> JsonResponse:
    if data.get("demo"):
        user = services.sandbox_demo_user_ensure()
    else:
        accounts = [
            (item.get("kind", "Individual"), item.get("account_number") or services.random_account_number())
            for item in data.get("accounts") or [{"kind": "Individual"}]
        ]
        user = services.user_create(
            username=data["username"],
            password=data["password"],
            display_name=data.get("display_name", ""),
            accounts=accounts,
        )
    payload = {"username": user.username, "accounts": [services.account_payload(a) for a in user.accounts.all()]}
    return JsonResponse(payload, status=201)


def control_page(request: HttpRequest) -> HttpResponse:
    if not _is_staff(request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.has_perm(CONTROL_PERMISSION):
            from common.staff import second_factor_redirect

            redirect_to = second_factor_redirect(request)  # staff whose session has no second factor yet
            if redirect_to is not None:
                return redirect_to
        if user is not None and user.is_authenticated:
            # Signed in without the permission: the login page would send them straight back
            # here (an endless redirect loop), so say no.
            raise PermissionDenied("The sandbox controls are for staff only.")
        try:
            return redirect_to_login(request.get_full_path())
        except NoReverseMatch:  # standalone server: no brokerlink login page to send staff to
            return HttpResponse("Staff only.", status=403, content_type="text/plain")
    services.counters_flush()
    clients = services.clients_newest_first()
    try:
        back = reverse("connections:dashboard")
    except NoReverseMatch:  # standalone server: no brokerlink around it
        back = reverse("sandbox:home")
    context = {
        "clients": clients,
        "issuer": sandbox_root(request),
        "saved": request.GET.get("saved", ""),
        "revoked": request.GET.get("revoked", ""),
        "back": back,
    }
    return render(request, "sandbox/control.html", context)


@require_POST
def control_client(request: HttpRequest, client_id: str) -> HttpResponse:
    if not _is_staff(request):
        return HttpResponse(status=403)
    client = _client_or_404(client_id)
    if request.POST.get("action") == "revoke_all":
        if request.POST.get("confirm") != "yes":
            # One more step (the CSP allows no script for a confirm()): a page that asks.
            return render(request, "sandbox/control_confirm.html", {"client": client})
        services.client_revoke_all_grants(client)
        done = "revoked"
    else:
        services.client_set_faults(
            client,
            latency_ms=request.POST.get("latency_ms") or 0,
            error_5xx_rate=request.POST.get("error_5xx_rate") or 0,
            rate_limit=request.POST.get("rate_limit") or 0,
            stall_seconds=request.POST.get("stall_seconds") or 0,
            clock_offset_seconds=request.POST.get("clock_offset_seconds") or 0,
            outage="outage" in request.POST,
            refresh_invalid_grant="refresh_invalid_grant" in request.POST,
            html_errors="html_errors" in request.POST,
            html_status=request.POST.get("html_status") or 502,
        )
        done = "saved"
    return redirect(f"{reverse('sandbox:control')}?{done}={client.client_id}#client-{client.client_id}")
