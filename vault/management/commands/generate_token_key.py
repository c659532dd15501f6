from django.core.management.base import BaseCommand

from vault.crypto import generate_key


class Command(BaseCommand):
    help = "Print a new random 256-bit key for TOKEN_ENCRYPTION_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--id", default="k1", help="key id to prefix")

    def handle(self, *args, id, **options):
        self.stdout.write(f"{id}:{generate_key()}")
