"""The engine's models moved from the connections app to the engine app (connections 0016,
engine 0001-0002): an existing database keeps every row, its content types and the
permissions that point at them, and the tables take the engine's names; going back restores
the old names."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

# Unapplying the engine app's migrations takes connections back to 0015 (0016 needs them).
BEFORE = [("engine", None)]
STATE = [("connections", "0015_engine_state")]


def _latest() -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def _tables() -> set[str]:
    return set(connection.introspection.table_names())


def test_an_existing_database_keeps_its_engine_rows_and_permissions_when_the_models_move(user):
    now = timezone.now().replace(microsecond=0)
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        old = executor.loader.project_state(STATE).apps
        assert "connections_enginestate" in _tables() and "engine_enginestate" not in _tables()
        conn = old.get_model("connections", "Connection").objects.create(
            user_id=user.pk, broker_slug="sandbox", account_id="M-1", status="degraded", environment="live"
        )
        old.get_model("connections", "EngineState").objects.create(
            connection=conn, next_check_at=now + timedelta(seconds=42), health_score=61, quality="poor"
        )
        old.get_model("connections", "CircuitBreaker").objects.create(broker_slug="sandbox", state="open")
        old.get_model("connections", "Notification").objects.create(connection=conn, kind="failed", incident_at=now)
        old.get_model("connections", "CheckResult").objects.create(connection=conn, ok=False, category="network")
        # A permission on a moved model, given to a person before the move (content types exist
        # on a database that has been migrated before).
        ContentType = old.get_model("contenttypes", "ContentType")
        Permission = old.get_model("auth", "Permission")
        breaker_type, _ = ContentType.objects.get_or_create(app_label="connections", model="circuitbreaker")
        permission, _ = Permission.objects.get_or_create(
            content_type=breaker_type, codename="change_circuitbreaker", defaults={"name": "Can change circuit breaker"}
        )
        old.get_model("accounts", "User").objects.get(pk=user.pk).user_permissions.add(permission)
    finally:
        _latest()

    assert {"engine_enginestate", "engine_circuitbreaker", "engine_notification", "engine_checkresult"} <= _tables()
    assert "connections_enginestate" not in _tables()

    from connections.models import Connection
    from engine.models import CheckResult, CircuitBreaker, Notification

    moved = Connection.objects.select_related("engine_state").get(pk=conn.pk)
    assert (moved.engine_state.health_score, moved.quality) == (61, "poor")
    assert moved.next_check_at == now + timedelta(seconds=42)
    assert CircuitBreaker.objects.get(broker_slug="sandbox").state == "open"
    assert Notification.objects.get(connection=moved).incident_at == now
    assert CheckResult.objects.get(connection=moved).category == "network"

    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.clear_cache()
    assert ContentType.objects.get_for_model(CircuitBreaker).pk == breaker_type.pk
    person = get_user_model().objects.get(pk=user.pk)
    assert person.has_perm("engine.change_circuitbreaker")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    try:
        executor.migrate(BEFORE)
        assert "connections_enginestate" in _tables() and "engine_enginestate" not in _tables()
        back = executor.loader.project_state(STATE).apps
        assert back.get_model("connections", "EngineState").objects.get(connection_id=conn.pk).health_score == 61
        assert back.get_model("contenttypes", "ContentType").objects.get(pk=breaker_type.pk).app_label == "connections"
    finally:
        _latest()


def test_a_content_type_the_engine_already_has_takes_over_the_old_ones_permissions_and_log(user):
    """`migrate engine zero` then `migrate` (through manage.py): the way back renames the content
    types to connections, post_migrate makes the engine's again, with fresh permissions. The way
    forward merges each old one into the engine's: nobody loses a permission, the admin log keeps
    pointing at the model, and no content type is left behind for a model no app has."""
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        old = executor.loader.project_state([*STATE, ("admin", "0003_logentry_add_action_flag_choices")]).apps
        ContentType = old.get_model("contenttypes", "ContentType")
        Permission = old.get_model("auth", "Permission")
        Group = old.get_model("auth", "Group")
        # The old content type, with a permission held by a person and a group, one nobody's twin
        # (a custom permission), and an admin log entry.
        source, _ = ContentType.objects.get_or_create(app_label="connections", model="circuitbreaker")
        change_old, _ = Permission.objects.get_or_create(
            content_type=source, codename="change_circuitbreaker", defaults={"name": "Can change circuit breaker"}
        )
        custom, _ = Permission.objects.get_or_create(
            content_type=source, codename="reset_circuitbreaker", defaults={"name": "Can reset circuit breaker"}
        )
        old.get_model("accounts", "User").objects.get(pk=user.pk).user_permissions.add(change_old, custom)
        group = Group.objects.create(name="operators")
        group.permissions.add(change_old)
        entry = old.get_model("admin", "LogEntry").objects.create(
            user_id=user.pk, content_type=source, object_id="1", object_repr="sandbox", action_flag=2
        )
        # What post_migrate made for the engine meanwhile.
        ContentType.objects.filter(app_label="engine", model="circuitbreaker").delete()
        target = ContentType.objects.create(app_label="engine", model="circuitbreaker")
        change_new = Permission.objects.create(
            content_type=target, codename="change_circuitbreaker", name="Can change circuit breaker"
        )
    finally:
        _latest()

    from django.contrib.admin.models import LogEntry
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType

    from engine.models import CircuitBreaker

    ContentType.objects.clear_cache()
    assert not ContentType.objects.filter(app_label="connections", model="circuitbreaker").exists()
    assert ContentType.objects.get_for_model(CircuitBreaker).pk == target.pk
    assert set(Permission.objects.filter(content_type_id=target.pk).values_list("codename", flat=True)) >= {
        "change_circuitbreaker",
        "reset_circuitbreaker",
    }
    assert Permission.objects.get(content_type_id=target.pk, codename="change_circuitbreaker").pk == change_new.pk
    person = get_user_model().objects.get(pk=user.pk)
    assert person.has_perm("engine.change_circuitbreaker") and person.has_perm("engine.reset_circuitbreaker")
    assert Group.objects.get(pk=group.pk).permissions.filter(pk=change_new.pk).exists()
    assert LogEntry.objects.get(pk=entry.pk).content_type_id == target.pk
