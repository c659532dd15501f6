from django.apps import AppConfig


class PreferencesConfig(AppConfig):
    """What each person chose: notifications (kinds, email, personal channels) and time zone.

    Depends on no other project app but the vault, so the engine and the pages can use it."""

    name = "preferences"
    default_auto_field = "django.db.models.BigAutoField"
