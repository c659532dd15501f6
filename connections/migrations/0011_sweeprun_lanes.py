from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0010_check_storage"),
    ]

    operations = [
        migrations.AddField(model_name="sweeprun", name="due", field=models.PositiveIntegerField(default=0)),
        migrations.AddField(model_name="sweeprun", name="lanes", field=models.PositiveIntegerField(default=0)),
        migrations.AddField(model_name="sweeprun", name="lanes_started", field=models.PositiveIntegerField(default=0)),
        migrations.AddField(model_name="sweeprun", name="lanes_finished", field=models.PositiveIntegerField(default=0)),
    ]
