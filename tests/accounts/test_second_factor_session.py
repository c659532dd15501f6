"""Issue 24, medium 2: staff pages need a second factor passed in THIS session.

The attack: a session signed in with the password alone (before the account enrolled TOTP, or
in another browser) reached admin, /metrics and the system page once the account had a factor.
"""

from __future__ import annotations

import pytest
from django.test import Client

from tests.support import totp_code, with_second_factor

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-unusual-passphrase"
STAFF_PAGES = ["/admin/", "/admin/connections/connection/", "/metrics", "/connections/system/", "/sandbox/control/"]


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser(email="root@example.com", password=PASSWORD)


def password_session(email: str) -> Client:
    client = Client()
    response = client.post("/accounts/login/", {"login": email, "password": PASSWORD})
    assert response.status_code == 302 and "_auth_user_id" in client.session
    return client


def reached(client: Client, path: str) -> bool:
    response = client.get(path)
    return response.status_code == 200


def sandbox_api_status(client: Client) -> int:
    return client.post("/sandbox/control/api/clients", data="{}", content_type="application/json").status_code


def test_a_password_only_session_does_not_reach_staff_pages_once_a_factor_exists(root):
    session = password_session(root.email)  # signed in before the factor existed
    with_second_factor(root)  # enrolled elsewhere (no signal: the session is not ended)
    for path in STAFF_PAGES:
        assert not reached(session, path), path
    assert session.get("/metrics").status_code == 403
    assert sandbox_api_status(session) == 403
    to_factor = session.get("/connections/system/")
    assert to_factor.status_code == 302 and to_factor["Location"].startswith("/accounts/2fa/reauthenticate/")
    admin_login = session.get("/admin/login/?next=/admin/")
    assert admin_login["Location"].startswith("/accounts/2fa/reauthenticate/")


def test_the_same_session_reaches_staff_pages_after_passing_the_factor(root):
    session = password_session(root.email)
    with_second_factor(root)
    response = session.post("/accounts/2fa/reauthenticate/?next=/admin/", {"code": totp_code(root.totp_secret)})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    for path in STAFF_PAGES:
        assert reached(session, path), path
    assert sandbox_api_status(session) != 403


def test_staff_without_a_factor_reach_no_staff_page(root):
    session = password_session(root.email)
    for path in STAFF_PAGES:
        assert not reached(session, path), path
    assert sandbox_api_status(session) == 403
    assert session.get("/connections/system/")["Location"] == "/accounts/2fa/"


@pytest.mark.django_db(transaction=True)  # allauth announces the new factor after the commit
def test_enrolling_a_factor_ends_the_other_sessions(root):
    other = password_session(root.email)
    enrolling = password_session(root.email)
    again = enrolling.post("/accounts/reauthenticate/?next=/accounts/2fa/totp/activate/", {"password": PASSWORD})
    assert again.status_code == 302  # enrolment asks for a recent password reauthentication
    page = enrolling.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = page.context["form"].secret
    done = enrolling.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert done.status_code == 302
    assert "_auth_user_id" in enrolling.session  # the session that enrolled stays signed in
    assert other.get("/connections/").status_code == 302  # the other one is signed out
    assert "_auth_user_id" not in other.session
