"""`SealedField`: a model attribute whose value is stored sealed in a companion column.

    client_secret_sealed = models.TextField(blank=True, default="", editable=False)
    client_secret = SealedField("client_secret_sealed")

Reading `obj.client_secret` opens the value, assigning seals it. The associated data is
`<app_label.model>:<pk>:<name>`, so the model needs a primary key set before assignment
(brokerlink's sealed models use UUID primary keys with a Python default).
"""

from __future__ import annotations

from vault.crypto import open_sealed, seal


def aad_for(instance, name: str) -> str:
    if instance.pk is None:
        raise ValueError(f"{type(instance).__name__}.{name}: the row needs a primary key before a secret is sealed")
    return f"{instance._meta.label_lower}:{instance.pk}:{name}"


class SealedField:
    def __init__(self, column: str):
        self.column = column
        self.name = ""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        sealed = getattr(instance, self.column)
        if not sealed:
            return ""
        return open_sealed(sealed, aad=aad_for(instance, self.name))

    def __set__(self, instance, value: str | None) -> None:
        setattr(instance, self.column, seal(value, aad=aad_for(instance, self.name)) if value else "")

    def is_set(self, instance) -> bool:
        return bool(getattr(instance, self.column))


def sealed_fields(model) -> list[SealedField]:
    return [attr for attr in vars(model).values() if isinstance(attr, SealedField)]
