"""Bad input answers a documented 4xx problem document, never a 500, and the OpenAPI document
lists every status and media type an operation answers (the property-based run in
test_schema_property.py generates many more requests; these are the ones found by hand)."""

from __future__ import annotations

from http import HTTPStatus

from api.models import Scope

PROBLEM = "application/problem+json"


def test_bad_list_parameters_are_a_422_problem_not_a_500(api_client, connection):
    client = api_client(scopes=[Scope.READ_STATUS])
    for params in ({"offset": -1854}, {"offset": 2**63}, {"limit": 0}, {"limit": 501}, {"status": "nonsense"},
                   {"broker": "a\x00b"}, {"user_email": "x" * 300}):
        answer = client.get("connections", params=params)
        assert answer.status_code == 422, (params, answer.status_code, answer.text)
        assert answer.headers["Content-Type"].startswith(PROBLEM)
        body = answer.json()
        assert body["status"] == 422 and body["title"] == HTTPStatus(422).phrase
        assert next(iter(params)) in body["detail"] and body["errors"][0]["loc"][-1] == next(iter(params))
        assert "Traceback" not in answer.text
    assert [c["id"] for c in client.get("connections", params={"limit": 500, "offset": 0}).json()] == [
        str(connection.pk)
    ]


def test_brokerlinks_own_errors_are_problem_documents_and_the_brokers_are_passed_on(api_client, connection):
    client = api_client(scopes=[Scope.CALL])
    ours = client.get("connections/00000000-0000-4000-8000-000000000000/proxy/v1/account")
    assert ours.status_code == 404 and ours.headers["Content-Type"].startswith(PROBLEM)
    assert ours.json() == {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "No such connection."}
    theirs = client.get(f"connections/{connection.pk}/proxy/v1/no-such-endpoint")
    assert theirs.status_code == 404 and not theirs.headers["Content-Type"].startswith(PROBLEM)
    leaving = client.get(f"connections/{connection.pk}/proxy/v1/..%5C..%5Cadmin")
    assert leaving.status_code in (400, 422) and leaving.headers["Content-Type"].startswith(PROBLEM)
    unauthenticated = client.get("connections", headers={"Authorization": "Bearer nope"})
    assert unauthenticated.status_code == 401 and unauthenticated.headers["Content-Type"].startswith(PROBLEM)
    assert unauthenticated.headers["WWW-Authenticate"] == 'Bearer realm="brokerlink"'


def test_the_document_lists_every_answer_with_its_media_type(stack):
    import requests

    document = requests.get(f"{stack.url}/api/v1/openapi.json", timeout=10).json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            answers = operation["responses"]
            assert {"401", "403", "422", "429", "503"} <= set(answers), (method, path)
            for code, answer in answers.items():
                if code[0] in "45":
                    assert PROBLEM in answer["content"], (method, path, code)
                    assert "application/json" not in answer["content"], (method, path, code)
            if "/proxy/" in path:
                assert "*/*" in answers["default"]["content"] and "*/*" in answers["404"]["content"]
    listing = document["paths"]["/api/v1/connections"]["get"]
    offset = next(p for p in listing["parameters"] if p["name"] == "offset")
    assert offset["schema"]["minimum"] == 0
    assert "api_views_get_connection" in listing["responses"]["200"]["links"]
    assert set(document["components"]["schemas"]["InvalidRequest"]["required"]) >= {"status", "detail", "errors"}
