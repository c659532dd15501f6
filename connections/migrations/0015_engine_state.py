"""The engine's per-check bookkeeping moves off the connection's row to EngineState: the
table is created, every connection's values are copied into it (one row per connection),
then the columns are removed. Reversible: backwards the columns come back and are filled
from EngineState before it is dropped."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

COLUMNS = (
    "next_check_at",
    "lease_until",
    "lease_owner",
    "last_check_at",
    "last_success_at",
    "consecutive_failures",
    "retry_attempt",
    "last_error_category",
    "last_error_message",
    "last_latency_ms",
    "health_score",
    "quality",
)


def _tables(apps, schema_editor):
    qn = schema_editor.connection.ops.quote_name
    connection = apps.get_model("connections", "Connection")._meta
    state = apps.get_model("connections", "EngineState")._meta
    return qn, qn(connection.db_table), qn(connection.pk.column), qn(state.db_table)


def states_copy(apps, schema_editor):
    """One INSERT … SELECT: every connection gets its row, with the values it had."""
    qn, connection, pk, state = _tables(apps, schema_editor)
    names = ", ".join(qn(c) for c in COLUMNS)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {state} ({qn('connection_id')}, {names}) SELECT {pk}, {names} FROM {connection}"  # noqa: S608
        )


def states_copy_back(apps, schema_editor):
    qn, connection, pk, state = _tables(apps, schema_editor)
    sets = ", ".join(
        f"{qn(c)} = (SELECT s.{qn(c)} FROM {state} s WHERE s.{qn('connection_id')} = {connection}.{pk})"  # noqa: S608
        for c in COLUMNS
    )
    exists = f"EXISTS (SELECT 1 FROM {state} s WHERE s.{qn('connection_id')} = {connection}.{pk})"  # noqa: S608
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"UPDATE {connection} SET {sets} WHERE {exists}")  # noqa: S608


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0014_refresh_later_answer_at"),
    ]

    operations = [
        migrations.CreateModel(
            name="EngineState",
            fields=[
                (
                    "connection",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="engine_state",
                        serialize=False,
                        to="connections.connection",
                    ),
                ),
                ("next_check_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ("lease_until", models.DateTimeField(blank=True, null=True)),
                ("lease_owner", models.CharField(blank=True, max_length=128)),
                ("last_check_at", models.DateTimeField(blank=True, null=True)),
                ("last_success_at", models.DateTimeField(blank=True, null=True)),
                ("consecutive_failures", models.PositiveIntegerField(default=0)),
                ("retry_attempt", models.PositiveIntegerField(default=0)),
                (
                    "last_error_category",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("", "None"),
                            ("network", "Network"),
                            ("broker_fault", "Broker fault"),
                            ("rate_limited", "Rate limited"),
                            ("auth", "Authorization"),
                            ("configuration", "Configuration"),
                            ("unexpected", "Unexpected response"),
                        ],
                        default="",
                        max_length=16,
                    ),
                ),
                ("last_error_message", models.CharField(blank=True, max_length=500)),
                ("last_latency_ms", models.PositiveIntegerField(blank=True, null=True)),
                ("health_score", models.PositiveSmallIntegerField(blank=True, null=True)),
                (
                    "quality",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("excellent", "Excellent"),
                            ("good", "Good"),
                            ("poor", "Poor"),
                            ("critical", "Critical"),
                        ],
                        max_length=16,
                    ),
                ),
            ],
        ),
        migrations.RunPython(states_copy, states_copy_back),
        migrations.RemoveIndex(
            model_name="connection",
            name="connection_due_idx",
        ),
        migrations.RemoveField(
            model_name="connection",
            name="consecutive_failures",
        ),
        migrations.RemoveField(
            model_name="connection",
            name="health_score",
        ),
        migrations.RemoveField(
            model_name="connection",
            name="last_check_at",
        ),
        migrations.RemoveField(
            model_name="connection",
            name="last_error_category",
        ),
        migrations.RemoveField(
            model_name="connection",
            name="last_error_message",
        ),
        migrations.RemoveField(
            model_name="connection",
            name="last_latency_ms",
        ),
        migrations.RemoveField(
            model_name="connection",
            name="last_success_at",
        ),
        migrations.RemoveField(
            model_name="connection",
            name="lease_owner",
        ),
        migrations.RemoveField(
            model_name="connection",
            name="lease_until",
        ),
        migrations.RemoveField(
            model_name="connection",
            name="next_check_at",
        ),
        migrations.RemoveField(
            model_name="connection",
            name="quality",
        ),
        migrations.RemoveField(
            model_name="connection",
            name="retry_attempt",
        ),
    ]
