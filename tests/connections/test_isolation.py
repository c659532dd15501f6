"""One user never sees or touches another user's connection: always 404, never 403."""

import pytest

from connections.models import Connection, ConnectionStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def theirs(other_user):
    connection = Connection(user=other_user, broker_slug="sandbox", account_id="acct-bob")
    connection.access_token = "bob-access"
    connection.refresh_token = "bob-refresh"
    connection.status = ConnectionStatus.CONNECTED
    connection.save()
    return connection


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/connections/{id}/"),
        ("get", "/connections/{id}/disconnect/"),
        ("post", "/connections/{id}/disconnect/"),
        ("post", "/connections/{id}/reconnect/"),
    ],
)
def test_another_users_connection_is_404(client, user, theirs, method, path):
    client.force_login(user)
    response = getattr(client, method)(path.format(id=theirs.pk))
    assert response.status_code == 404
    after = Connection.objects.get(pk=theirs.pk)
    assert after.status == ConnectionStatus.CONNECTED
    assert after.access_token == "bob-access"


def test_owner_sees_their_connection(client, other_user, theirs):
    client.force_login(other_user)
    page = client.get(f"/connections/{theirs.pk}/")
    assert page.status_code == 200
    assert "bob-access" not in page.content.decode()


def test_dashboard_lists_only_own_connections(client, user, theirs):
    client.force_login(user)
    assert str(theirs.pk) not in client.get("/connections/").content.decode()
