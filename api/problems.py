"""Every error the HTTP API answers itself, in one shape, and the OpenAPI document that says so.

An error of brokerlink's own is an RFC 9457 problem document, `application/problem+json`:
`{"type": "about:blank", "title": "Not Found", "status": 404, "detail": "No such connection."}`;
a request that does not match the schema is a 422 of the same shape with `errors` (where and
why, never the value sent). The distinct media type is what lets a client of the proxy tell
brokerlink's 404 ("no such connection") from the broker's 404, which the proxy passes on as
it is.

`openapi_document()` completes ninja's document with what every operation can answer (401,
403, 422, 429, 503 besides its own codes), the headers that come with them, and links from
the list to the operations on one connection, so a client generated from the document (or a
property-based test) knows every status and media type it can get.
"""

from __future__ import annotations

import copy
from http import HTTPStatus

from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError

from common.busy import BUSY_MESSAGE
from common.ratelimit import RateLimited
from ops.busy import database_busy

PROBLEM_TYPE = "application/problem+json"
COMPONENTS = "#/components/schemas/"


class Problem(Schema):
    """An error of brokerlink's own (RFC 9457)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str


class FieldError(Schema):
    loc: list[str | int]
    msg: str
    type: str


class InvalidRequest(Problem):
    """422: the request does not match the schema; `errors` says where and why."""

    errors: list[FieldError]


def problem_response(status: int, detail: str, **extra) -> HttpResponse:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail, **extra}
    return JsonResponse(body, status=status, content_type=PROBLEM_TYPE, json_dumps_params={"ensure_ascii": False})


def _field_errors(errors: list[dict]) -> list[dict]:
    return [
        {"loc": [part for part in e.get("loc", ()) if isinstance(part, str | int)], "msg": str(e.get("msg", "")),
         "type": str(e.get("type", ""))}
        for e in errors
    ]


def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = _field_errors(exc.errors)
    where = ", ".join(".".join(str(p) for p in e["loc"][1:] or e["loc"]) for e in errors[:5])
    detail = f"The request does not match the API schema ({where})." if where else "The request is not valid."
    return problem_response(422, detail, errors=errors)


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return problem_response(exc.status_code, str(exc))


def _unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = problem_response(401, "A valid, unexpired, unrevoked service key is required.")
    response["WWW-Authenticate"] = 'Bearer realm="brokerlink"'
    return response


def _rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    response = problem_response(429, str(exc))
    response["Retry-After"] = str(max(1, int(-(-exc.retry_after // 1))))
    return response


def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return problem_response(404, "Not found.")


def _database(request: HttpRequest, exc: OperationalError) -> HttpResponse:
    if not database_busy(exc):
        raise exc  # a real failure: Django's error handling and reporting
    response = problem_response(503, BUSY_MESSAGE)
    response["Retry-After"] = "5"
    return response


def problem_handlers_install(api) -> None:
    """Every error of the API answers a problem document (ninja's defaults answer other shapes)."""
    api.add_exception_handler(ValidationError, _invalid)
    api.add_exception_handler(HttpError, _http_error)
    api.add_exception_handler(AuthenticationError, _unauthorized)
    api.add_exception_handler(RateLimited, _rate_limited)
    api.add_exception_handler(Http404, _not_found)
    api.add_exception_handler(OperationalError, _database)


# --- the OpenAPI document ------------------------------------------------------------------

def _problem(description: str, schema: str = "Problem", headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {PROBLEM_TYPE: {"schema": {"$ref": COMPONENTS + schema}}}}
    if headers:
        answer["headers"] = headers
    return answer


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                "schema": {"type": "string"}, "required": True}}
# What any operation can answer, whatever it does.
COMMON_ANSWERS = {
    "401": _problem("No valid service key (missing, unknown, revoked or expired).", headers={
        "WWW-Authenticate": {"description": 'Bearer realm="brokerlink"', "schema": {"type": "string"},
                             "required": True}}),
    "403": _problem("The key does not have the scope this operation needs."),
    "422": _problem("The request does not match this schema (a parameter's type, range or format).",
                    "InvalidRequest"),
    "429": _problem("Over the key's rate limit (or the broker's, for broker calls).", headers=_RETRY_AFTER),
    "503": _problem("brokerlink is busy (no free database connection); try again after Retry-After.",
                    headers=_RETRY_AFTER),
}
PASSTHROUGH = "*/*"


def _connection_operations(paths: dict) -> list[str]:
    """The operations that take a connection_id (the targets of the links)."""
    return [
        operation["operationId"]
        for path, item in paths.items()
        for operation in item.values()
        if "{connection_id}" in path and operation.get("operationId")
    ]


def openapi_document(schema: dict) -> dict:
    schema = copy.deepcopy(schema)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, FieldError, InvalidRequest):
        definition = model.model_json_schema(ref_template=COMPONENTS + "{model}")
        components.update(definition.pop("$defs", {}))
        components[model.__name__] = definition
    paths = schema.get("paths", {})
    targets = _connection_operations(paths)
    for path, item in paths.items():
        for operation in item.values():
            answers = _operation_answers(operation)
            # Links: from the list's first item, and from one connection, to every operation on it.
            source = _link_source(path, item, operation)
            if source is None:
                continue
            links = {
                target: {"operationId": target, "parameters": {"connection_id": source}}
                for target in targets
                if target != operation.get("operationId")
            }
            if links and "200" in answers:
                answers["200"]["links"] = links
    return schema


def _operation_answers(operation: dict) -> dict:
    """Rewrite the operation's answers in place (status codes as strings, JSON errors as
    problems, the answers every operation can give) and return them."""
    answers = {str(code): answer for code, answer in operation.get("responses", {}).items()}
    operation["responses"] = answers
    for code, answer in list(answers.items()):
        if code[0] in "45" and "application/json" in answer.get("content", {}):
            answers[code] = _problem(answer.get("description") or HTTPStatus(int(code)).phrase)
    for code, answer in COMMON_ANSWERS.items():
        answers.setdefault(code, copy.deepcopy(answer))
    if PASSTHROUGH in answers.get("default", {}).get("content", {}):
        # The broker's own answer can come with any status (its 404 too), in any media type.
        for answer in answers.values():
            answer.setdefault("content", {}).setdefault(PASSTHROUGH, {"schema": {}})
            for header in answer.get("headers", {}).values():
                header["required"] = False  # brokerlink's own answers carry it; the broker's may not
    return answers


def _link_source(path: str, item: dict, operation: dict) -> str | None:
    """Where in this operation's answer a connection id for links is found, if it has one."""
    if operation is item.get("get") and path.endswith("/connections"):
        return "$response.body#/0/id"
    if operation is item.get("get") and path.endswith("/connections/{connection_id}"):
        return "$response.body#/id"
    return None
