"""Check storage that does not grow with every check (issue 14): CheckLog, UptimeDay and
CheckTally replace the hourly UptimeRollup and the passed CheckResult rows.

Existing data is carried over: finished UTC days (from the hourly rollups, and raw results
for hours not rolled up) become UptimeDay rows; the last day of raw results is replayed into
each connection's CheckLog. Passed CheckResult rows are no longer read and age out with
CHECKRESULT_RETENTION_DAYS."""

from collections import defaultdict
from datetime import UTC, timedelta

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone


def carry_over(apps, schema_editor):
    # The ring as it was when this migration was written (a frozen copy: engine/ring.py may change).
    from connections.migrations._ring_0010 import Check, HourCounts, Ring, epoch_hour, hour_start, hours_pack

    CheckResult = apps.get_model("connections", "CheckResult")
    UptimeRollup = apps.get_model("connections", "UptimeRollup")
    UptimeDay = apps.get_model("connections", "UptimeDay")
    CheckLog = apps.get_model("connections", "CheckLog")
    now = timezone.now()
    today_start = hour_start(epoch_hour(now) // 24 * 24)

    # Finished days: hourly rollups, and raw results for the hours no rollup covers.
    hours = defaultdict(dict)  # (connection id, day number) -> {hour of day: HourCounts}
    for row in UptimeRollup.objects.filter(hour__lt=today_start).iterator(chunk_size=5000):
        hour = epoch_hour(row.hour)
        hours[(row.connection_id, hour // 24)][hour % 24] = HourCounts(
            row.checks, row.successes, row.latency_sum_ms, row.latency_count, row.latency_max_ms
        )
    raw = (
        CheckResult.objects.filter(checked_at__lt=today_start)
        .annotate(hour=TruncHour("checked_at", tzinfo=UTC))
        .values("connection_id", "hour")
        .annotate(
            n=Count("id"),
            passed=Count("id", filter=Q(ok=True)),
            lsum=Sum("latency_ms", filter=Q(ok=True)),
            lcount=Count("latency_ms", filter=Q(ok=True)),
            lmax=Max("latency_ms"),
        )
        .order_by()
    )
    for row in raw.iterator(chunk_size=5000):
        hour = epoch_hour(row["hour"])
        hours[(row["connection_id"], hour // 24)].setdefault(
            hour % 24, HourCounts(row["n"], row["passed"], row["lsum"] or 0, row["lcount"], row["lmax"] or 0)
        )
    days = []
    for (connection_id, day), by_hour in hours.items():
        slots = [by_hour.get(i, HourCounts()) for i in range(24)]
        totals = HourCounts()
        for slot in slots:
            totals.add(slot)
        days.append(
            UptimeDay(
                connection_id=connection_id,
                day=(hour_start(day * 24)).date(),
                checks=totals.checks,
                passed=totals.passed,
                latency_sum_ms=totals.latency_sum_ms,
                latency_count=totals.latency_count,
                latency_max_ms=totals.latency_max_ms,
                hours=hours_pack(slots),
            )
        )
    UptimeDay.objects.bulk_create(days, batch_size=1000, ignore_conflicts=True)

    # Check logs: the last 26 hours replayed (today's hours, still open, live only there), and
    # the two hours before for the list of recent checks.
    replay_from = hour_start(epoch_hour(now) - 25)
    rings = {}
    rows = (
        CheckResult.objects.filter(checked_at__gte=replay_from - timedelta(hours=2))
        .order_by("connection_id", "checked_at")
        .values_list("connection_id", "checked_at", "ok", "latency_ms", "http_status", "category")
    )
    for connection_id, checked_at, ok, latency, status, category in rows.iterator(chunk_size=5000):
        ring = rings.setdefault(connection_id, Ring())
        check = Check(checked_at, ok, latency, status, category)
        if checked_at < replay_from:
            ring.keep(check)
        else:
            ring.add(check)  # days left behind are stored above already
    CheckLog.objects.bulk_create(
        [CheckLog(connection_id=pk, data=ring.encode()) for pk, ring in rings.items()],
        batch_size=1000,
        ignore_conflicts=True,
    )


def postgres_storage(apps, schema_editor):
    """The check log stays in its row (no TOAST: a value moved out of line would be rewritten
    there on every check), and pages keep room for in-place (HOT) updates."""
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("ALTER TABLE connections_checklog ALTER COLUMN data SET STORAGE MAIN")
    schema_editor.execute("ALTER TABLE connections_checklog SET (fillfactor = 50)")


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0009_oauthstateuse"),
    ]

    operations = [
        migrations.CreateModel(
            name="CheckLog",
            fields=[
                (
                    "connection",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="check_log",
                        serialize=False,
                        to="connections.connection",
                    ),
                ),
                ("data", models.BinaryField(default=b"")),
            ],
        ),
        migrations.CreateModel(
            name="CheckTally",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("broker_slug", models.SlugField(db_index=False, max_length=64)),
                ("minute", models.DateTimeField()),
                ("writer", models.CharField(max_length=64)),
                ("checks", models.PositiveIntegerField(default=0)),
                ("passed", models.PositiveIntegerField(default=0)),
                ("failures", models.JSONField(default=dict)),
                ("latency_all", models.JSONField(default=dict)),
                ("latency_passed", models.JSONField(default=dict)),
                ("latency_sum_ms", models.BigIntegerField(default=0)),
            ],
            options={
                "indexes": [models.Index(fields=["minute"], name="checktally_minute_idx")],
                "constraints": [
                    models.UniqueConstraint(fields=("broker_slug", "minute", "writer"), name="checktally_unique_writer")
                ],
            },
        ),
        migrations.CreateModel(
            name="UptimeDay",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField()),
                ("checks", models.PositiveIntegerField(default=0)),
                ("passed", models.PositiveIntegerField(default=0)),
                ("latency_sum_ms", models.BigIntegerField(default=0)),
                ("latency_count", models.PositiveIntegerField(default=0)),
                ("latency_max_ms", models.PositiveIntegerField(default=0)),
                ("hours", models.BinaryField(blank=True, null=True)),
                (
                    "connection",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="uptime_days",
                        to="connections.connection",
                    ),
                ),
            ],
            options={
                "ordering": ["-day"],
                "constraints": [
                    models.UniqueConstraint(fields=("connection", "day"), name="uptimeday_unique_connection_day")
                ],
            },
        ),
        migrations.RunPython(postgres_storage, migrations.RunPython.noop),
        migrations.RunPython(carry_over, migrations.RunPython.noop),
        migrations.DeleteModel(
            name="UptimeRollup",
        ),
    ]
