"""AES-256-GCM sealing of secrets at rest.

A sealed value reads `v1:<key id>:<base64url(nonce || ciphertext+tag)>`. The key id lets
any configured key open it while only the first key seals, so keys rotate without
downtime. The associated data names the row and field a value belongs to, so ciphertext
copied into another row or column fails to open instead of leaking there.

Errors never carry plaintext or ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

PREFIX = "v1"
NONCE_BYTES = 12


class VaultError(Exception):
    """Base class: every vault failure is safe to show an operator."""


class VaultKeyMissing(VaultError):
    pass


class VaultKeyInvalid(VaultError):
    pass


class VaultDecryptError(VaultError):
    pass


@dataclass(frozen=True)
class Keyring:
    primary_id: str
    keys: dict[str, AESGCM]


def parse_keys(raw: str) -> Keyring:
    """Parse `TOKEN_ENCRYPTION_KEYS`: comma-separated `key_id:base64url(32 bytes)`."""
    if not raw or not raw.strip():
        raise VaultKeyMissing(
            "TOKEN_ENCRYPTION_KEYS is not set: tokens cannot be encrypted or decrypted. "
            "Set it to `key_id:<base64 32-byte key>` (make run writes one to .env; "
            "`python manage.py generate_token_key` prints a new one)."
        )
    keys: dict[str, AESGCM] = {}
    primary = ""
    for position, entry in enumerate(raw.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep or not key_id or not key_id.isalnum():
            raise VaultKeyInvalid(
                f"TOKEN_ENCRYPTION_KEYS entry {position} must look like `key_id:base64key` with an alphanumeric id"
            )
        try:
            material = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError) as exc:
            raise VaultKeyInvalid(f"TOKEN_ENCRYPTION_KEYS key {key_id!r} is not valid base64") from exc
        if len(material) != 32:
            raise VaultKeyInvalid(
                f"TOKEN_ENCRYPTION_KEYS key {key_id!r} must be 32 bytes (AES-256), got {len(material)}"
            )
        if key_id in keys:
            raise VaultKeyInvalid(f"TOKEN_ENCRYPTION_KEYS names key {key_id!r} twice")
        keys[key_id] = AESGCM(material)
        primary = primary or key_id
    if not keys:
        raise VaultKeyMissing("TOKEN_ENCRYPTION_KEYS is set but holds no key")
    return Keyring(primary_id=primary, keys=keys)


@lru_cache(maxsize=8)
def _keyring_for(raw: str) -> Keyring:
    return parse_keys(raw)


def keyring() -> Keyring:
    # Cached per value, so tests that override the setting get their own keyring.
    return _keyring_for(getattr(settings, "TOKEN_ENCRYPTION_KEYS", "") or "")


def generate_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def seal(plaintext: str, *, aad: str) -> str:
    ring = keyring()
    nonce = os.urandom(NONCE_BYTES)
    body = ring.keys[ring.primary_id].encrypt(nonce, plaintext.encode(), aad.encode())
    return f"{PREFIX}:{ring.primary_id}:{base64.urlsafe_b64encode(nonce + body).decode()}"


def key_id_of(sealed: str) -> str:
    parts = sealed.split(":", 2)
    return parts[1] if len(parts) == 3 and parts[0] == PREFIX else ""


def open_sealed(sealed: str, *, aad: str) -> str:
    parts = sealed.split(":", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        raise VaultDecryptError(f"stored value for {aad} is not a sealed value (format not recognised)")
    _, key_id, encoded = parts
    ring = keyring()
    key = ring.keys.get(key_id)
    if key is None:
        raise VaultDecryptError(
            f"stored value for {aad} was sealed with key {key_id!r}, which TOKEN_ENCRYPTION_KEYS does not hold"
        )
    try:
        raw = base64.urlsafe_b64decode(encoded)
        plaintext = key.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad.encode())
    except (InvalidTag, binascii.Error, ValueError) as exc:
        raise VaultDecryptError(
            f"stored value for {aad} failed authentication: wrong key, tampering, or copied from another row"
        ) from exc
    return plaintext.decode()
