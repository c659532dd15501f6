"""The sandbox mounted inside the main app at /sandbox/ (Django test client, no subprocess)."""

import pytest
from django.contrib.auth.models import Permission

from sandbox import services
from tests.support import with_second_factor

pytestmark = pytest.mark.django_db


def test_metadata_issuer_is_the_mounted_root(client):
    meta = client.get("/sandbox/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == "http://testserver/sandbox"
    assert meta["authorization_endpoint"] == "http://testserver/sandbox/oauth/authorize"


def test_sandbox_login_never_touches_the_brokerlink_session(client, user):
    services.sandbox_demo_user_ensure()
    client.force_login(user)
    page = client.get("/sandbox/login/")
    assert services.DEMO_PASSWORD in page.content.decode()
    response = client.post("/sandbox/login/", {"username": "demo", "password": services.DEMO_PASSWORD})
    assert response.status_code == 302
    assert "sandbox_login" in response.cookies
    assert client.session["_auth_user_id"] == str(user.pk)
    client.post("/sandbox/logout/")
    assert client.session["_auth_user_id"] == str(user.pk)


def test_wrong_sandbox_password_is_refused(client):
    services.sandbox_demo_user_ensure()
    response = client.post("/sandbox/login/", {"username": "demo", "password": "wrong"})
    assert response.status_code == 401
    assert "sandbox_login" not in response.cookies


def test_control_page_and_api_are_staff_only(client, user):
    assert client.get("/sandbox/control/").status_code == 302  # anonymous: to the login page
    assert client.get("/sandbox/control/api/clients/x/faults").status_code == 403
    client.force_login(user)
    assert client.get("/sandbox/control/api/clients/x/faults").status_code == 403
    # Signed in without the permission: the 403 page, not a redirect loop through the login page.
    refused = client.get("/sandbox/control/")
    assert refused.status_code == 403 and b"staff only" in refused.content
    user.is_staff = True
    user.save()
    assert client.get("/sandbox/control/api/clients/x/faults").status_code == 403  # staff alone is not enough
    user.user_permissions.add(Permission.objects.get(codename="control_sandbox"))
    client.force_login(type(user).objects.get(pk=user.pk))
    assert client.get("/sandbox/control/api/clients/x/faults").status_code == 403  # no second factor
    with_second_factor(user)
    client.force_login(type(user).objects.get(pk=user.pk))  # a sign-in that passed it
    sandbox = services.client_create(name="Staff test", redirect_uris=["http://127.0.0.1:9/cb"])
    page = client.get("/sandbox/control/")
    assert page.status_code == 200
    assert sandbox.client_id in page.content.decode()
    assert client.get(f"/sandbox/control/api/clients/{sandbox.client_id}/faults").json()["outage"] is False
    form = {"outage": "on", "latency_ms": "5", "html_errors": "on", "html_status": "200"}
    client.post(f"/sandbox/control/clients/{sandbox.client_id}/", form)
    sandbox.refresh_from_db()
    assert sandbox.outage is True
    assert sandbox.latency_ms == 5
    assert sandbox.html_errors is True and sandbox.html_status == 200


def test_staff_json_api_enforces_csrf(user):
    from django.test import Client

    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="control_sandbox"))
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    sandbox = services.client_create(name="Csrf", redirect_uris=["http://127.0.0.1:9/cb"])
    url = f"/sandbox/control/api/clients/{sandbox.client_id}/faults"
    response = strict.patch(url, data={"outage": True}, content_type="application/json")
    assert response.status_code == 403


def test_control_token_api_is_csrf_exempt(settings):
    from django.test import Client

    settings.SANDBOX_CONTROL_TOKEN = "t0ken"
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(
        "/sandbox/control/api/clients",
        data={
            "name": "Api",
            "redirect_uris": ["http://127.0.0.1:9/cb"],
            "token_endpoint_auth_method": "client_secret_post",
        },
        content_type="application/json",
        headers={"X-Sandbox-Control-Token": "t0ken"},
    )
    assert response.status_code == 201
    assert response.json()["client_secret"]
    assert response.json()["token_endpoint_auth_method"] == "client_secret_post"
    wrong = strict.post("/sandbox/control/api/users", data={}, content_type="application/json",
                        headers={"X-Sandbox-Control-Token": "nope"})  # fmt: skip
    assert wrong.status_code == 403
