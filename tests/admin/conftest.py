import pytest
from django.contrib.auth.models import Permission

# Connections holding real sandbox tokens (authorization code + PKCE over HTTP).
from tests.engine.conftest import world  # noqa: F401
from tests.support import with_second_factor

PASSWORD = "correct horse battery"


@pytest.fixture
def superadmin(django_user_model):
    return with_second_factor(django_user_model.objects.create_superuser(email="root@example.com", password=PASSWORD))


@pytest.fixture
def staff_operator(django_user_model):
    """Staff who may view and act on connections, but not disconnect other people's."""
    user = django_user_model.objects.create_user(email="ops@example.com", password=PASSWORD, is_staff=True)
    with_second_factor(user)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="connections", codename__in=["view_connection", "change_connection"]
        )
    )
    return user


@pytest.fixture
def admin_client_for(client):
    def login(user):
        client.force_login(user)
        return client

    return login
