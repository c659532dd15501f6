"""Review of issue 28: the OpenAPI document lists every answer the partner operations give, in
the shape they really have (a client generated from it must be able to read each one)."""

from __future__ import annotations

import pytest

from api.models import Scope
from api.services import service_key_create
from partners.services import partner_app_create

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("/api/v1/connect-sessions", "post"): {"201", "400", "401", "403", "404", "409", "422", "429"},
    ("/api/v1/connections/{connection_id}/disconnect", "post"): {"200", "401", "403", "404", "422", "429"},
    ("/api/v1/end-users/{end_user_id}/disconnect", "post"): {"200", "401", "403", "404", "429"},
    ("/api/v1/end-users/{end_user_id}", "delete"): {"204", "401", "403", "404", "409", "429"},
}


def _schema_of(schema: dict, ref_or_schema: dict) -> dict:
    ref = ref_or_schema.get("$ref")
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else ref_or_schema


@pytest.mark.parametrize(("path", "method"), list(OPERATIONS))
def test_every_answer_of_the_partner_operations_is_documented(client, path, method):
    schema = client.get("/api/v1/openapi.json").json()
    responses = schema["paths"][path][method]["responses"]
    assert OPERATIONS[(path, method)] <= set(responses), sorted(responses)
    for status, response in responses.items():
        if int(status) >= 400:
            body = _schema_of(schema, response["content"]["application/problem+json"]["schema"])
            assert {"title", "status", "detail"} <= set(body["properties"]), (status, body)


def test_the_answers_have_the_documented_shapes(client):
    """A 401, a 422 and a 429 as the schema says: RFC 9457 problems (api.problems)."""
    tracker = partner_app_create(name="Tracker")
    _k, key = service_key_create(name="t", scopes=[Scope.CONNECT_SESSIONS], app=tracker, rate_limit_per_minute=2)
    headers = {"Authorization": f"Bearer {key}"}
    unauthorized = client.post("/api/v1/connect-sessions", {}, content_type="application/json")
    invalid = client.post(
        "/api/v1/connect-sessions", {"connection_id": "not-a-uuid"}, content_type="application/json", headers=headers
    )
    answers = [client.post("/api/v1/connect-sessions", {}, content_type="application/json", headers=headers)
               for _ in range(2)]
    for answer, status in ((unauthorized, 401), (invalid, 422), (answers[-1], 429)):
        assert answer.status_code == status
        assert answer["Content-Type"].startswith("application/problem+json")
        body = answer.json()
        assert body["status"] == status and isinstance(body["title"], str) and isinstance(body["detail"], str)
