from allauth.account import models as allauth_models
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.utils.crypto import salted_hmac


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
    # Raised to end every other session of this person (enrolling a second factor): Django
    # checks each session's stored hash against get_session_auth_hash() on every request.
    session_epoch = models.PositiveIntegerField(default=0, editable=False)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def __str__(self) -> str:
        return self.email

    def get_session_auth_hash(self) -> str:
        base = super().get_session_auth_hash()
        if not self.session_epoch:  # sessions from before any epoch change stay valid
            return base
        value = f"{base}:{self.session_epoch}"
        return salted_hmac("accounts.User.session_epoch", value, algorithm="sha256").hexdigest()


class EmailAddress(allauth_models.EmailAddress):
    """allauth's email addresses, listed in admin under this app: one "Accounts" section."""

    class Meta:
        proxy = True
        verbose_name = "email address"
        verbose_name_plural = "email addresses"
