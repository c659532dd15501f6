"""Checks of a broker profile and its URLs: used by the registry's system check, custom brokers
(YAML and admin) and the tests. Depends on nothing but the profile dataclass.

The checks are declared as pydantic models (`ProfileCheck` here, `brokers.spec.BrokerSpec` for
custom brokers); `says()` gives a declared type the one message an operator reads, and
`problems_of()` turns pydantic's errors into (field, message) pairs such as
("token_url", "must be an https:// URL ...").
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any, get_args
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, Field, ValidationError, ValidationInfo, WrapValidator, field_validator
from pydantic_core import PydanticCustomError

from brokers.profile import BrokerProfile, TokenAuthMethod
from outbound.policy import outbound_url_problem

# Values every built-in profile must cite a source for.
REQUIRED_SOURCES = ("authorize_url", "token_url", "token_rules")
# The operator-facing name of pydantic's own error types (the rest carry a says() message).
PYDANTIC_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "is required",
    "model_type": "must be a mapping of fields",
    "model_attributes_type": "must be a mapping of fields",
}


def url_problem(url: str) -> str | None:
    """Why `url` is unacceptable for a broker endpoint, or None if it is fine.

    The form of the URL only (outbound.policy); hosts are resolved and checked when an
    administrator saves a custom broker and again at every connection.
    """
    return outbound_url_problem(url, resolve_host=False)


def problem(message: str, *, field: str = "") -> PydanticCustomError:
    """An error whose text is `message` as written; `field` names it when raised by a model validator."""
    return PydanticCustomError("broker_check", message, {"field": field} if field else None)


def says(message: str) -> WrapValidator:
    """Whatever pydantic finds wrong with the value (type, range, pattern), the operator reads `message`."""

    def validate(value: Any, handler):
        try:
            return handler(value)
        except ValidationError:
            raise problem(message) from None

    return WrapValidator(validate)


def one_of(choices: Any) -> str:
    """`must be one of a, b, c` for a Literal type."""
    return f"must be one of {', '.join(get_args(choices))}"


def problems_of(model: type[BaseModel], data: Any, *, context: dict | None = None) -> tuple[Any, list[tuple[str, str]]]:
    """(the validated model or None, [(dotted field, message)]) for `data`."""
    try:
        return model.model_validate(data, context=context), []
    except ValidationError as exc:
        return None, [_problem_pair(error) for error in exc.errors(include_url=False)]


def _problem_pair(error: dict) -> tuple[str, str]:
    where = [str(part) for part in error["loc"]]
    if named := (error.get("ctx") or {}).get("field"):
        where.append(named)
    return ".".join(where) or "(broker)", PYDANTIC_MESSAGES.get(error["type"], error["msg"])


def _url_form(url: str | None) -> str | None:
    if url and (found := url_problem(url)):
        raise problem(found)
    return url


# A broker endpoint: a string whose form the outbound policy accepts (blank: not given).
EndpointUrl = Annotated[str | None, says("must be a string URL"), AfterValidator(_url_form)]
# A number of seconds from a profile (None: does not expire, or not documented).
ProfileSeconds = Annotated[float | None, Field(gt=0), says("must be a positive number of seconds")]


def _has_live_or_paper(urls: dict) -> dict:
    if "live" not in urls and "paper" not in urls:
        raise problem("needs a 'live' or 'paper' entry")
    return urls


def _required(url: str | None) -> str | None:
    if not url:
        raise problem("is required")
    return url


class ProfileCheck(BaseModel):
    """What every profile (built-in or custom) must satisfy, field by field."""

    slug: Annotated[str, Field(pattern=r"^[\w-]*[^\W_][\w-]*$"), says("must be letters, digits, '-' or '_'")]
    name: Annotated[str, Field(min_length=1), says("is required")]
    authorize_url: Annotated[EndpointUrl, AfterValidator(_required)]
    token_url: Annotated[EndpointUrl, AfterValidator(_required)]
    api_base_urls: Annotated[dict[str, EndpointUrl], AfterValidator(_has_live_or_paper)]
    environment_urls: dict[str, dict[str, EndpointUrl]]
    revoke_url: EndpointUrl = None
    manual_revoke_url: EndpointUrl = None
    metadata_url: EndpointUrl = None
    heartbeat_path: Annotated[str, Field(pattern="^/"), says("must start with '/'")]
    token_auth_method: Annotated[
        TokenAuthMethod, says("must be client_secret_basic, client_secret_post or none")
    ]
    access_ttl: ProfileSeconds = None
    refresh_ttl: ProfileSeconds = None
    absolute_cap: ProfileSeconds = None
    daily_expiry: time | None = None
    daily_expiry_tz: str = "UTC"

    @field_validator("daily_expiry_tz")
    @classmethod
    def _known_zone(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("daily_expiry") is None:
            return value
        try:
            ZoneInfo(value)
        except Exception:  # noqa: BLE001 - any failure means an unusable zone name
            raise problem(f"unknown time zone {value!r}") from None
        return value


PROFILE_FIELDS = ("slug", "name", "authorize_url", "token_url", "api_base_urls", "environment_urls", "revoke_url",
                  "manual_revoke_url", "metadata_url", "heartbeat_path")
RULE_FIELDS = ("token_auth_method", "access_ttl", "refresh_ttl", "absolute_cap", "daily_expiry", "daily_expiry_tz")


def _relation_problems(profile: BrokerProfile, *, require_sources: bool) -> list[tuple[str, str]]:
    """Rules between fields, checked even when a field itself is wrong (every problem at once)."""
    problems = []
    if profile.revocation_scope in ("token", "grant", "all_users_of_key") and not profile.revoke_url:
        problems.append(("revoke_url", f"is required when revocation_scope is {profile.revocation_scope!r}"))
    if not profile.is_custom and not profile.can_revoke_single_user and not profile.manual_revoke_url:
        problems.append(("manual_revoke_url", "is required when brokerlink cannot revoke a single user's tokens"))
    if require_sources and not profile.is_custom:
        problems.extend(("sources", f"no source for {name}") for name in REQUIRED_SOURCES
                        if not profile.sources.get(name))
    return problems


def validate_profile(profile: BrokerProfile, *, require_sources: bool = True) -> list[str]:
    """Problems with a profile, each naming the field, e.g. "token_url: must be an https:// URL"."""
    data = {name: getattr(profile, name) for name in PROFILE_FIELDS}
    data.update({name: getattr(profile.token_rules, name) for name in RULE_FIELDS})
    _, problems = problems_of(ProfileCheck, data)
    problems += _relation_problems(profile, require_sources=require_sources)
    return [f"{field}: {message}" for field, message in problems]
