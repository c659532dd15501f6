"""Re-sealing every stored secret under the current primary key (key rotation)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.apps import apps
from django.db import transaction

from vault.crypto import key_id_of, keyring, open_sealed, seal
from vault.fields import aad_for, sealed_fields

logger = logging.getLogger(__name__)


@dataclass
class RotationReport:
    scanned: int = 0
    resealed: int = 0


def sealed_models() -> list:
    return [model for model in apps.get_models() if sealed_fields(model)]


def vault_rotate_keys(*, batch_size: int = 500) -> RotationReport:
    """Re-seal rows not sealed with the primary key, a batch per transaction.

    Rows are locked one batch at a time (skipping rows locked by a write at that moment), so the
    app keeps running; a second pass picks up anything skipped. Safe to run twice. A refresh out
    meanwhile holds no row lock: its answer is matched by the opened token (engine.refresh_claim).
    """
    primary = keyring().primary_id
    report = RotationReport()
    for model in sealed_models():
        fields = sealed_fields(model)
        last_pk = None
        while True:
            with transaction.atomic():
                qs = model.objects.order_by("pk")
                if last_pk is not None:
                    qs = qs.filter(pk__gt=last_pk)
                batch = list(qs.select_for_update(skip_locked=True)[:batch_size])
                if not batch:
                    break
                for row in batch:
                    report.scanned += 1
                    changed = []
                    for field in fields:
                        sealed = getattr(row, field.column)
                        if sealed and key_id_of(sealed) != primary:
                            plaintext = open_sealed(sealed, aad=aad_for(row, field.name))
                            setattr(row, field.column, seal(plaintext, aad=aad_for(row, field.name)))
                            changed.append(field.column)
                    if changed:
                        model.objects.filter(pk=row.pk).update(**{c: getattr(row, c) for c in changed})
                        report.resealed += 1
                last_pk = batch[-1].pk
        logger.info("vault.rotate.model_done", extra={"model": model._meta.label_lower})
    return report
