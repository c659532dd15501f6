from django.core.management.base import BaseCommand

from sandbox import services


class Command(BaseCommand):
    help = "Create the sandbox broker's demo login (shown on its login page) with two paper accounts."

    def handle(self, *args, **options):
        user = services.sandbox_demo_user_ensure()
        accounts = ", ".join(account.label for account in user.accounts.all())
        self.stdout.write(f"sandbox login {services.DEMO_USERNAME} / {services.DEMO_PASSWORD}: {accounts}")
