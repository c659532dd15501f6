"""Everything a new user needs to try brokerlink: a login and a connectable Sandbox Broker.

Run by `make run` on every start; safe to run twice (it keeps existing rows and only
re-points the sandbox client at the current SITE_URL).
"""

import os

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from brokers.models import BrokerApp, Environment
from sandbox import api as sandbox

DEMO_EMAIL = "demo@brokerlink.local"


class Command(BaseCommand):
    help = "Create the demo user, the sandbox broker's demo login and client, and the Sandbox BrokerApp."

    def handle(self, *args, **options):
        password = os.environ.get("DEMO_PASSWORD", "")
        if not password:
            raise CommandError("DEMO_PASSWORD is not set (make run writes one to .env on first start)")
        with transaction.atomic():
            user = self._demo_user(password)
            sandbox_username = sandbox.demo_user_ensure()
            app = self._sandbox_app()
        url = settings.SITE_URL
        shown = password
        if getattr(self, "password_kept", False):
            shown = "(unchanged: the password this demo user already has)"
        self.stdout.write(
            "\n"
            "  brokerlink is starting at  " + url + "/\n"
            "  Sign in with               " + user.email + "  /  " + shown + "\n"
            "  Sandbox Broker login       " + sandbox_username + "  /  " + sandbox.DEMO_PASSWORD + "\n"
            "  Sandbox BrokerApp client   " + app.client_id + "\n"
            "  Admin                      " + url + "/admin/ asks for a second factor: set up an\n"
            "                             authenticator app at " + url + "/accounts/2fa/ once\n"
        )

    def _demo_user(self, password):
        User = get_user_model()
        user, created = User.objects.get_or_create(email=DEMO_EMAIL)
        # An existing demo user keeps its password: setting it again on every start would sign
        # out every open tab (the session hash changes) and undo a password the person chose.
        if created or not user.has_usable_password():
            user.set_password(password)
        elif not user.check_password(password):
            self.password_kept = True
        # Staff, so the demo can open the sandbox's fault controls and the admin.
        user.is_staff = user.is_superuser = True
        user.save()
        EmailAddress.objects.update_or_create(user=user, email=DEMO_EMAIL, defaults={"verified": True, "primary": True})
        return user

    def _sandbox_app(self):
        app = BrokerApp.objects.filter(broker_slug="sandbox", environment=Environment.PAPER).first()
        redirect_uri = f"{settings.SITE_URL}/connections/callback/sandbox/"
        client_id = app.client_id if app else None
        created = sandbox.client_ensure(client_id, name="brokerlink demo", redirect_uri=redirect_uri)
        if created:
            app = app or BrokerApp(broker_slug="sandbox", environment=Environment.PAPER)
            app.client_id = created["client_id"]
            app.client_secret = created["client_secret"]
            app.enabled = True
            app.save()
        return app
