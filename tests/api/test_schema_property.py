"""The OpenAPI document tells the truth: requests generated from /api/v1/openapi.json
(schemathesis, property-based), valid and invalid, sent over real HTTP to brokerlink under
uvicorn with a real connection to the sandbox broker. Every answer must be one the document
lists for that operation (status, media type, headers, body schema), never a 500; every
schema-valid request accepted, every invalid one refused with a documented 4xx.

Then a stateful run follows the document's links (the list's first connection's id into the
operations on one connection), as a client generated from it would.

Deterministic (derandomized Hypothesis, no example database) and bounded in examples."""

from __future__ import annotations

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402 - after the skip
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from api.models import ApiAuditEntry, Scope  # noqa: E402

EXAMPLES_PER_OPERATION = 12
STATEFUL_STEPS = 8
STATEFUL_EXAMPLES = 6
SETTINGS = dict(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def api_schema(stack, connection, api_client):
    client = api_client(scopes=[Scope.READ_STATUS, Scope.CALL, Scope.READ_TOKENS], rate_limit_per_minute=100_000)
    # The key as the document's security scheme: schemathesis sends it, and knows it did.
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"ServiceKeyAuth": {"bearer": client.key}}}})
    return schemathesis.openapi.from_url(f"{stack.url}/api/v1/openapi.json", config=config)


def generated_requests(operation, mode, *, send, real_id: str, seen: set[int]) -> None:
    """EXAMPLES_PER_OPERATION requests of this operation in this mode; half of the valid ones
    name the real connection (a random UUID only ever finds a 404)."""

    @settings(max_examples=EXAMPLES_PER_OPERATION, **SETTINGS)
    @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
    def answers_as_documented(case, real):
        if real and mode == GenerationMode.POSITIVE and "connection_id" in (case.path_parameters or {}):
            case.path_parameters["connection_id"] = real_id
        seen.add(send(case).status_code)

    answers_as_documented()


def test_the_document_lists_every_answer_of_every_operation(api_schema, stack, connection):
    schema = api_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "GET /api/v1/connections", "GET /api/v1/connections/{connection_id}",
        "POST /api/v1/connections/{connection_id}/check", "GET /api/v1/connections/{connection_id}/proxy/{path}",
    }
    session = requests.Session()
    statuses: dict[str, set[int]] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            seen = statuses.setdefault(f"{operation.label} {mode.value}", set())
            generated_requests(operation, mode, send=lambda case: case.call_and_validate(
                base_url=stack.url, session=session), real_id=str(connection.pk), seen=seen)
    # It really exercised both sides: valid requests answered 2xx, invalid ones refused with a 4xx.
    assert 200 in statuses["GET /api/v1/connections positive"], statuses
    assert 422 in statuses["GET /api/v1/connections negative"], statuses
    assert 200 in statuses["GET /api/v1/connections/{connection_id} positive"], statuses
    assert 200 in statuses["POST /api/v1/connections/{connection_id}/check positive"], statuses
    assert 200 in statuses["GET /api/v1/connections/{connection_id}/proxy/{path} positive"], statuses
    assert all(code < 500 for codes in statuses.values() for code in codes if code != 502), statuses


def test_a_client_following_the_documents_links_gets_documented_answers(api_schema, stack, connection):
    schema = api_schema
    session = requests.Session()

    class Client(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"base_url": stack.url, "session": session}

        def before_call(self, case):
            # Random filters almost never match the one connection; a client lists them all
            # first, then follows the links from what it got.
            if case.operation.label == "GET /api/v1/connections" and case.meta.generation.mode.is_positive:
                case.query = {}

    run_state_machine_as_test(
        Client, settings=settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=STATEFUL_STEPS, **SETTINGS)
    )
    # The links were followed: operations on the one real connection, with the id the list gave.
    followed = ApiAuditEntry.objects.filter(connection_id=connection.pk).exclude(status_code=404)
    assert followed.values("action").distinct().count() >= 2, list(followed.values_list("action", "status_code"))
