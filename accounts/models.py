import uuid

from allauth.account import models as allauth_models
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models

from vault.fields import SealedField


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra):
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email, password=None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person using brokerlink; the email address is the login."""

    username = None
    email = models.EmailField("email address", unique=True)
    # IANA name (Europe/Paris). Empty until the browser reports it on the first visit; pages
    # show UTC until then.
    time_zone = models.CharField("time zone", max_length=64, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def __str__(self) -> str:
        return self.email


class NotificationSettings(models.Model):
    """What a person wants to hear about, and whether by email. No row = the defaults (all on)."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="notification_settings")
    needs_you = models.BooleanField("Needs you (reconnect needed, failed)", default=True)
    recovered = models.BooleanField("Recovered", default=True)
    expiring = models.BooleanField("Expiring soon", default=True)
    broker_outage = models.BooleanField("Broker outage", default=True)
    email = models.BooleanField("Send by email", default=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"notification settings of {self.user}"


class NotificationChannel(models.Model):
    """A personal channel beyond email (ntfy, Slack, Telegram…) as an Apprise URL.

    The URL carries the channel's credentials (a webhook key, a bot token), so it is sealed
    like broker tokens; pages show only its scheme and host."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notification_channels")
    name = models.CharField(max_length=80)
    url_sealed = models.TextField(blank=True, default="", editable=False)
    url = SealedField("url_sealed")
    # Where it points, without credentials: shown on the settings page instead of the URL.
    display = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.display})"


class EmailAddress(allauth_models.EmailAddress):
    """allauth's email addresses, listed in admin under this app: one "Accounts" section."""

    class Meta:
        proxy = True
        verbose_name = "email address"
        verbose_name_plural = "email addresses"
