"""An EngineState's next check is NULL while its connection is not checked, and only scheduled
rows are in the claim's index (a partial index), so claims never scan past inactive rows.
Forwards: the column becomes nullable, inactive connections' next checks go to NULL, the full
index is replaced by the partial one. Backwards: the partial index goes, each NULL is filled
with the moment the connection left the checked set (its status change), the column is NOT
NULL and fully indexed again."""

import django.utils.timezone
from django.db import migrations, models

# connections.state.INACTIVE_STATUSES when this was written: the statuses the sweep never checks.
INACTIVE = ("disconnected", "needs_reauth", "failed")


def unscheduled(apps, schema_editor):
    EngineState = apps.get_model("engine", "EngineState")
    EngineState.objects.filter(connection__status__in=INACTIVE).update(next_check_at=None)


def scheduled_back(apps, schema_editor):
    EngineState = apps.get_model("engine", "EngineState")
    Connection = apps.get_model("connections", "Connection")
    left_at = Connection.objects.filter(pk=models.OuterRef("pk")).values("status_changed_at")[:1]
    EngineState.objects.filter(next_check_at__isnull=True).update(next_check_at=models.Subquery(left_at))


class Migration(migrations.Migration):
    dependencies = [
        ("engine", "0002_engine_table_names"),
    ]

    operations = [
        migrations.AlterField(
            model_name="enginestate",
            name="next_check_at",
            field=models.DateTimeField(blank=True, default=django.utils.timezone.now, null=True),
        ),
        migrations.RunPython(unscheduled, scheduled_back, elidable=False),
        migrations.AddIndex(
            model_name="enginestate",
            index=models.Index(
                condition=models.Q(("next_check_at__isnull", False)),
                fields=["next_check_at"],
                name="enginestate_due_idx",
            ),
        ),
    ]
