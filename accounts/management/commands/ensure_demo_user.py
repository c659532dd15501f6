from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create (or reset the password of) the demo user, so make run always prints a working login."

    def add_arguments(self, parser):
        parser.add_argument("--email", default="demo@brokerlink.local")
        parser.add_argument("--password", required=True)
        parser.add_argument("--staff", action="store_true", help="also make the demo user staff and superuser")

    def handle(self, *args, email, password, staff, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(email=email)
        user.set_password(password)
        if staff:
            user.is_staff = user.is_superuser = True
        user.save()
        EmailAddress.objects.update_or_create(
            user=user, email=email, defaults={"verified": True, "primary": True}
        )
        self.stdout.write(f"demo user {'created' if created else 'ready'}: {email}")
