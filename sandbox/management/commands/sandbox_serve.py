import os
import sys

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    # The standalone server loads its own URLconf; checking the main app's is not its business.
    requires_system_checks = []
    help = "Run the sandbox broker alone on its own port (uvicorn), sharing the app's DATABASE_URL."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=9100)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--log-level", default="warning")

    def handle(self, *args, **options):
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings_sandbox")
        cmd = [
            sys.executable, "-m", "uvicorn", "sandbox.asgi:application",
            "--host", options["host"], "--port", str(options["port"]), "--log-level", options["log_level"],
            # uvicorn writes its access log at info level, and builds each request's line even when
            # the level hides it: off unless it would be shown.
            *([] if options["log_level"] in ("trace", "debug", "info") else ["--no-access-log"]),
        ]  # fmt: skip
        self.stdout.write(f"Sandbox broker on http://{options['host']}:{options['port']}")
        self.stdout.flush()
        # Replace this process, so stopping it (a test's real outage) stops the server.
        os.execve(sys.executable, cmd, env)  # noqa: S606
