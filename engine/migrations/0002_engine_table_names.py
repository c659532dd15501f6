"""The engine's tables take the engine's names (engine_<model> for connections_<model>). A
rename: no row is copied, indexes and sequences follow their table."""

from django.db import migrations

MODELS = ["checklog", "checkresult", "checktally", "circuitbreaker", "enginestate", "notification", "sweeprun", "uptimeday"]


class Migration(migrations.Migration):
    dependencies = [
        ("engine", "0001_initial"),
        ("connections", "0016_engine_models_to_engine_app"),
    ]

    operations = [migrations.AlterModelTable(name=name, table=None) for name in MODELS]
