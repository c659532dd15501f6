"""The token vault against real PostgreSQL rows: no plaintext at rest, ciphertext bound to its
row, key rotation, and clear errors when the key is missing."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection as db
from django.test import override_settings

from brokers.models import BrokerApp
from connections.models import Connection
from vault.crypto import VaultDecryptError, VaultKeyMissing, generate_key, key_id_of

pytestmark = pytest.mark.django_db

ACCESS = "access-PLAINTEXT-7f3a9c1e"
REFRESH = "refresh-PLAINTEXT-2b8d4e6f"
SECRET = "client-secret-PLAINTEXT-91ac"
OLD_KEYS = "t1:" + "A" * 43 + "="


def make_connection(user, account_id="acct-1") -> Connection:
    connection = Connection(user=user, broker_slug="sandbox", account_id=account_id)
    connection.access_token = f"{ACCESS}-{account_id}"
    connection.refresh_token = f"{REFRESH}-{account_id}"
    connection.save()
    return connection


def raw_rows(table: str) -> list[str]:
    with db.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")  # noqa: S608 - table name from the model
        return [" ".join(str(value) for value in row) for row in cursor.fetchall()]


def test_no_token_or_secret_in_plaintext_in_database_rows(user):
    make_connection(user)
    app = BrokerApp(broker_slug="sandbox", client_id="client-1")
    app.client_secret = SECRET
    app.save()

    connection_rows = raw_rows(Connection._meta.db_table)
    app_rows = raw_rows(BrokerApp._meta.db_table)
    assert connection_rows and app_rows
    for row in connection_rows:
        assert "PLAINTEXT" not in row
        assert "v1:t1:" in row  # sealed values are there, under the test key
    for row in app_rows:
        assert SECRET not in row
    # And the application still reads them back.
    stored = Connection.objects.get()
    assert stored.access_token == f"{ACCESS}-acct-1"
    assert stored.refresh_token == f"{REFRESH}-acct-1"
    assert BrokerApp.objects.get().client_secret == SECRET


def test_ciphertext_moved_to_another_row_fails_closed(user):
    victim = make_connection(user, "acct-victim")
    attacker = make_connection(user, "acct-attacker")
    Connection.objects.filter(pk=attacker.pk).update(access_token_sealed=victim.access_token_sealed)

    moved = Connection.objects.get(pk=attacker.pk)
    with pytest.raises(VaultDecryptError) as excinfo:
        _ = moved.access_token
    assert "copied from another row" in str(excinfo.value)
    assert ACCESS not in str(excinfo.value)
    # The original row still opens.
    assert Connection.objects.get(pk=victim.pk).access_token == f"{ACCESS}-acct-victim"


def test_ciphertext_moved_to_another_field_fails_closed(user):
    connection = make_connection(user)
    Connection.objects.filter(pk=connection.pk).update(refresh_token_sealed=connection.access_token_sealed)
    with pytest.raises(VaultDecryptError):
        _ = Connection.objects.get(pk=connection.pk).refresh_token


def test_key_rotation_reseals_every_row_and_old_key_can_go(user):
    connections = [make_connection(user, f"acct-{n}") for n in range(5)]
    app = BrokerApp(broker_slug="sandbox", client_id="client-1")
    app.client_secret = SECRET
    app.save()
    new_keys = f"k2:{generate_key()}"

    with override_settings(TOKEN_ENCRYPTION_KEYS=f"{new_keys},{OLD_KEYS}"):
        call_command("rotate_token_keys", batch_size=2)
        rows = list(Connection.objects.all())
        assert {key_id_of(c.access_token_sealed) for c in rows} == {"k2"}
        assert {key_id_of(c.refresh_token_sealed) for c in rows} == {"k2"}
        assert key_id_of(BrokerApp.objects.get().client_secret_sealed) == "k2"
        # Safe to run twice: nothing left to re-seal.
        call_command("rotate_token_keys")

    with override_settings(TOKEN_ENCRYPTION_KEYS=new_keys):  # old key removed
        for original in connections:
            stored = Connection.objects.get(pk=original.pk)
            assert stored.access_token == f"{ACCESS}-{original.account_id}"
            assert stored.refresh_token == f"{REFRESH}-{original.account_id}"
        assert BrokerApp.objects.get().client_secret == SECRET


def test_removing_a_key_still_in_use_is_a_clear_error(user):
    connection = make_connection(user)
    with override_settings(TOKEN_ENCRYPTION_KEYS=f"k2:{generate_key()}"), pytest.raises(VaultDecryptError) as excinfo:
        _ = Connection.objects.get(pk=connection.pk).access_token
    assert "TOKEN_ENCRYPTION_KEYS does not hold" in str(excinfo.value)


def test_missing_key_is_a_clear_error_naming_the_setting(user):
    connection = make_connection(user)
    with override_settings(TOKEN_ENCRYPTION_KEYS=""):
        with pytest.raises(VaultKeyMissing) as excinfo:
            _ = Connection.objects.get(pk=connection.pk).access_token
        assert "TOKEN_ENCRYPTION_KEYS" in str(excinfo.value)
        with pytest.raises(VaultKeyMissing):
            Connection(user=user, broker_slug="sandbox", account_id="x").access_token = "new-token"
        with pytest.raises(CommandError) as command_error:
            call_command("rotate_token_keys")
        assert "TOKEN_ENCRYPTION_KEYS" in str(command_error.value)
