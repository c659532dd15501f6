"""Accounts as a person uses them: sign up, sign in with email, see My connections, sign out."""

import re

import pytest
from django.core import mail

pytestmark = pytest.mark.django_db

PASS = "a-long-unusual-passphrase"
NEW = "brand-new-passphrase"


def test_login_page_uses_the_app_layout(client):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "brokerlink" in html
    assert "vendor/htmx/htmx-2.0.11.min.js" in html  # the app's layout, not allauth's bare page
    assert 'name="login"' in html and 'type="password"' in html


def test_sign_up_then_my_connections_shows_the_empty_state(client, django_user_model):
    response = client.post(
        "/accounts/signup/",
        {
            "email": "new.person@example.com",
            "password1": "a-long-unusual-passphrase",
            "password2": "a-long-unusual-passphrase",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert django_user_model.objects.filter(email="new.person@example.com").exists()
    html = response.content.decode()
    assert "My connections" in html
    assert "No brokerage accounts connected yet" in html


def test_sign_in_with_email_and_sign_out(client, user):
    response = client.post(
        "/accounts/login/", {"login": "ada@example.com", "password": "correct horse battery"}, follow=True
    )
    assert "My connections" in response.content.decode()
    assert "ada@example.com" in response.content.decode()  # the user menu
    client.post("/accounts/logout/")
    assert client.get("/connections/").status_code == 302


def test_wrong_password_is_refused_with_a_message(client, user):
    response = client.post("/accounts/login/", {"login": "ada@example.com", "password": "nope"})
    assert response.status_code == 200
    assert "not correct" in response.content.decode()


def test_password_reset_sends_an_email_with_a_working_link(client, user):
    client.post("/accounts/password/reset/", {"email": "ada@example.com"})
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    assert form.status_code == 200
    done = client.post(
        form.redirect_chain[-1][0] if form.redirect_chain else link,
        {"password1": "another-long-passphrase", "password2": "another-long-passphrase"},
        follow=True,
    )
    assert done.status_code == 200
    assert client.login(email="ada@example.com", password="another-long-passphrase")


def test_password_change(client, user):
    client.force_login(user)
    response = client.post(
        "/accounts/password/change/",
        {
            "oldpassword": "correct horse battery",
            "password1": "brand-new-passphrase",
            "password2": "brand-new-passphrase",
        },
        follow=True,
    )
    assert response.status_code == 200
    user.refresh_from_db()
    assert user.check_password("brand-new-passphrase")
