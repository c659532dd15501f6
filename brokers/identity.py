"""Which account a heartbeat/identity answer describes.

    identity_from_payload(payload, spec=None) -> {account_id, masked_number, label, paper}

Without a spec, the usual shapes are recognised, first match wins:
    {"id": ..} {"account_id": ..} {"account_number": ..} {"sub": ..}   (an object)
    {"accounts": [{..}, ..]} [{..}, ..]                                 (a list: the first account)
    {"data": {..}} {"account": {..}} {"user": {..}}                     (one level of wrapping)
With an `IdentitySpec` (declared in YAML or admin), `id` (and optionally `label` and
`number`) are read at a JSON pointer ("/data/0/accountId", RFC 6901) or a dotted path
("data.0.accountId"). An answer without an id raises IdentityError naming what was looked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ID_KEYS = ("id", "account_id", "accountId", "account_number", "accountNumber", "sub")
LABEL_KEYS = ("label", "name", "nickname", "display_name", "preferred_username")
NUMBER_KEYS = ("account_number", "accountNumber", "number")
LIST_KEYS = ("accounts", "data", "items", "results")
WRAPPER_KEYS = ("data", "account", "user", "result")
MISSING = object()


class IdentityError(ValueError):
    """The answer is JSON but names no account; the message says where brokerlink looked."""


@dataclass(frozen=True)
class IdentitySpec:
    """Where the account id (and optionally its label and number) is in the answer."""

    id: str
    label: str = ""
    number: str = ""

    def describe(self) -> str:
        return self.id


def path_problem(path: Any) -> str | None:
    """Why `path` is not a usable JSON pointer or dotted path, or None."""
    if not isinstance(path, str) or not path.strip():
        return "must be a JSON pointer (/a/0/b) or a dotted path (a.0.b)"
    if path.startswith("/") and path == "/":
        return "must name a field, not the whole answer"
    if not path.startswith("/") and any(not part for part in path.split(".")):
        return "a dotted path must not have empty parts"
    return None


def _parts(path: str) -> list[str]:
    if path.startswith("/"):
        # RFC 6901: ~1 is "/", ~0 is "~" (in that order).
        return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]
    return path.split(".")


def resolve_path(payload: Any, path: str) -> Any:
    """The value at `path`, or MISSING."""
    node = payload
    for part in _parts(path):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def mask_account_number(number: str) -> str:
    digits = "".join(ch for ch in number if ch.isalnum())
    return f"••{digits[-4:]}" if digits else ""


def _scalar(value: Any) -> str:
    if value is MISSING or value is None or isinstance(value, (dict, list, bool)):
        return ""
    return str(value).strip()


def _first(obj: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        if value := _scalar(obj.get(key)):
            return value
    return ""


def _account_object(payload: Any) -> dict | None:
    """The object that describes the account in one of the usual shapes."""
    if isinstance(payload, list):
        return _account_object(payload[0]) if payload else None
    if not isinstance(payload, dict):
        return None
    if _first(payload, ID_KEYS):
        return payload
    for key in LIST_KEYS:
        value = payload.get(key)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            primary = next((item for item in value if isinstance(item, dict) and item.get("isPrimary")), value[0])
            return _account_object(primary)
    for key in WRAPPER_KEYS:
        value = payload.get(key)
        if isinstance(value, dict) and _first(value, ID_KEYS):
            return value
    return None


def identity_from_payload(payload: Any, spec: IdentitySpec | None = None) -> dict:
    """{account_id, masked_number, label, paper} from a JSON answer, or raise IdentityError."""
    if spec is not None:
        account_id = _scalar(resolve_path(payload, spec.id))
        if not account_id:
            raise IdentityError(f"the answer has no value at {spec.id!r} (the broker's identity.id setting)")
        number = _scalar(resolve_path(payload, spec.number)) if spec.number else ""
        label = _scalar(resolve_path(payload, spec.label)) if spec.label else ""
        return {"account_id": account_id, "masked_number": mask_account_number(number), "label": label, "paper": False}
    obj = _account_object(payload)
    if obj is None:
        shape = "a JSON list" if isinstance(payload, list) else "a JSON object" if isinstance(payload, dict) else "JSON"
        keys = ", ".join(sorted(payload)[:8]) if isinstance(payload, dict) else ""
        seen = f" with fields {keys}" if keys else ""
        raise IdentityError(
            f"the answer is {shape}{seen} but has none of {', '.join(ID_KEYS)} and no list of accounts; "
            "declare where the account id is with the broker's identity setting"
        )
    number = _first(obj, NUMBER_KEYS)
    return {
        "account_id": _first(obj, ID_KEYS),
        "masked_number": mask_account_number(number),
        "label": _first(obj, LABEL_KEYS),
        "paper": obj.get("paper") is True,
    }
