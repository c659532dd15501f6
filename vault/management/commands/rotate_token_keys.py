from django.core.management.base import BaseCommand, CommandError

from vault.crypto import VaultError
from vault.services import vault_rotate_keys


class Command(BaseCommand):
    help = "Re-encrypt every stored token and secret with the first key of TOKEN_ENCRYPTION_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size, **options):
        try:
            report = vault_rotate_keys(batch_size=batch_size)
        except VaultError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"scanned {report.scanned} rows, re-encrypted {report.resealed}")
