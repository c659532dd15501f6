"""The sandbox control page (issue 27): "Saved" after saving, a confirmation step before
"Revoke every grant" (no script: the CSP allows none), and a link back to brokerlink."""

import pytest
from django.contrib.auth.models import Permission

from sandbox import services
from tests.support import with_second_factor

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, user):
    user.is_staff = True
    user.save()
    with_second_factor(user)  # staff pages need a session that passed a second factor (common/staff.py)
    user.user_permissions.add(Permission.objects.get(codename="control_sandbox"))
    client.force_login(type(user).objects.get(pk=user.pk))
    return client


def test_saving_faults_says_saved_and_the_page_links_back(operator):
    sandbox = services.client_create(name="Ops test", redirect_uris=["http://127.0.0.1:9/cb"])
    response = operator.post(f"/sandbox/control/clients/{sandbox.client_id}/", {"latency_ms": "5"}, follow=True)
    text = response.content.decode()
    assert "Saved. The faults apply from the next request." in text
    assert 'href="/connections/"' in text and "Back to brokerlink" in text


def test_revoke_every_grant_asks_first(operator, monkeypatch):
    sandbox = services.client_create(name="Ops test", redirect_uris=["http://127.0.0.1:9/cb"])
    revoked = []
    monkeypatch.setattr(services, "client_revoke_all_grants", revoked.append)
    url = f"/sandbox/control/clients/{sandbox.client_id}/"

    asked = operator.post(url, {"action": "revoke_all"})
    assert asked.status_code == 200 and "Revoke every grant of Ops test?" in asked.content.decode()
    assert revoked == []

    done = operator.post(url, {"action": "revoke_all", "confirm": "yes"}, follow=True)
    assert [c.client_id for c in revoked] == [sandbox.client_id]
    assert "Every grant of this client is revoked." in done.content.decode()
