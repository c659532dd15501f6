import json

from django.core.management.base import BaseCommand, CommandError

from sandbox import services


class Command(BaseCommand):
    help = "Create a sandbox broker OAuth client and print its id and secret as JSON."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a client")
        create.add_argument("--name", required=True)
        create.add_argument("--redirect-uri", action="append", required=True, dest="redirect_uris")
        create.add_argument("--rotate-refresh", action="store_true")
        create.add_argument("--emulate", default="", metavar="BROKER", help="copy a broker profile's token rules")
        create.add_argument(
            "--auth-method", choices=["client_secret_basic", "client_secret_post", "none"], default=None
        )

    def handle(self, *args, **options):
        try:
            client = services.client_create(
                name=options["name"],
                redirect_uris=options["redirect_uris"],
                rotate_refresh=options["rotate_refresh"],
                emulate=options["emulate"],
                token_endpoint_auth_method=options["auth_method"],
            )
        except services.SandboxError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(services.client_describe(client, with_secret=True), indent=2))
