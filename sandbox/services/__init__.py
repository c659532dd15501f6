"""Business rules of the sandbox broker: clients and their token semantics, faults, grants,
tokens, counters, users. Views, commands and the control API all call these functions as
`services.<name>`; each module below has one job:

    clients       find, create and change clients (also from control-API JSON), their faults and counters
    tokens        token lifetimes, issuing, refresh checks, OIDC consent, revocation
    token_lookup  the account endpoint's cached, batched token lookup
    counters      request counters (at once, or batched on the hot path)
    faults        injected faults and error shapes
    users         sandbox users and the demo login
    db_threads    the threads async endpoints run their database work on
"""

from sandbox.services.clients import (
    COUNTER_FIELDS,
    FAULT_FIELDS,
    SandboxError,
    broker_token_rules,
    client_apply_token_rules,
    client_counters,
    client_create,
    client_create_from_json,
    client_describe,
    client_faults,
    client_fields_from_json,
    client_from_token_request,
    client_get,
    client_revoke_all_grants,
    client_set_faults,
    client_update,
    clients_newest_first,
)
from sandbox.services.counters import COUNTER_FLUSH_SECONDS, acounters_flush_soon, count, count_later, counters_flush
from sandbox.services.faults import (
    afault_response,
    error_shape,
    error_shape_response,
    fault_after_delay,
    fault_delay_seconds,
    fault_response,
)
from sandbox.services.token_lookup import (
    LOOKUP_WINDOW,
    TOKEN_CACHE_MAX,
    atoken_for_access,
    token_cache_clear,
    token_cache_seconds,
)
from sandbox.services.tokens import (
    OFFLINE_ACCESS,
    access_expires_in,
    account_payload,
    grant_revoke,
    next_wall_clock,
    oidc_granted_scope,
    refresh_token_check,
    token_for_access,
    token_revoke,
    token_store,
    userinfo_payload,
)
from sandbox.services.users import (
    DEMO_ACCOUNTS,
    DEMO_PASSWORD,
    DEMO_USERNAME,
    random_account_number,
    sandbox_demo_user_ensure,
    user_authenticate,
    user_create,
    user_get,
)

__all__ = [
    "COUNTER_FIELDS", "COUNTER_FLUSH_SECONDS", "DEMO_ACCOUNTS", "DEMO_PASSWORD", "DEMO_USERNAME", "FAULT_FIELDS",
    "LOOKUP_WINDOW", "OFFLINE_ACCESS", "TOKEN_CACHE_MAX", "SandboxError", "access_expires_in", "account_payload",
    "acounters_flush_soon", "afault_response", "atoken_for_access", "broker_token_rules", "client_apply_token_rules",
    "client_counters", "client_create", "client_create_from_json", "client_describe", "client_faults",
    "client_fields_from_json", "client_from_token_request", "client_get", "client_revoke_all_grants",
    "client_set_faults", "client_update", "clients_newest_first", "count", "count_later", "counters_flush",
    "error_shape", "error_shape_response", "fault_after_delay", "fault_delay_seconds", "fault_response", "grant_revoke",
    "next_wall_clock", "oidc_granted_scope", "random_account_number", "refresh_token_check", "sandbox_demo_user_ensure",
    "token_cache_clear", "token_cache_seconds", "token_for_access", "token_revoke", "token_store", "user_authenticate",
    "user_create", "user_get", "userinfo_payload",
]
