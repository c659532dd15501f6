"""The address confirmation email speaks as brokerlink: no host name in its words (the link
is the only place an address appears), whatever host the request came to."""

import re

import pytest
from django.core import mail

pytestmark = pytest.mark.django_db


def test_the_confirmation_email_names_brokerlink_not_a_host(client, settings):
    settings.SITE_URL = "http://127.0.0.1:8103"
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    signed_up = client.post("/accounts/signup/", {"email": "new.person@example.com",
                                                  "password1": "a-long-unusual-passphrase",
                                                  "password2": "a-long-unusual-passphrase"})
    assert signed_up.status_code == 302, signed_up.status_code  # on to "confirm your address"
    (message,) = mail.outbox
    assert message.subject == "[brokerlink] Please Confirm Your Email Address"
    words = re.sub(r"https?://\S+", "<link>", message.body)  # what a person reads, links aside
    assert "127.0.0.1" not in words and "8103" not in words and "testserver" not in words
    assert "an account on brokerlink." in words
    link = re.search(r"To confirm the address, open this link:\n(\S+)\n", message.body).group(1)
    assert link.startswith("http://127.0.0.1:8103/accounts/confirm-email/")
    # The link works: it opens the confirmation page for this address.
    page = client.get(link.removeprefix(settings.SITE_URL))
    assert page.status_code == 200 and "new.person@example.com" in page.content.decode()
