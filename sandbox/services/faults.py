"""Faults injected per client (outage, latency, stalls, rate limits, HTML errors, 5xx) and
the error shapes a client answers with."""

from __future__ import annotations

import asyncio
import random
import time

from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from brokers.profile import STANDARD_INVALID_GRANT, STANDARD_INVALID_TOKEN, ErrorShape
from sandbox.models import SandboxClient


def fault_response(client: SandboxClient) -> HttpResponse | None:
    """Apply this client's faults to one request: sleep for latency and stalls, and return the
    response that replaces the real one, or None to carry on."""
    if client.outage:
        return _outage_response()
    if delay := fault_delay_seconds(client):
        time.sleep(delay)
    return fault_after_delay(client)


async def afault_response(client: SandboxClient) -> HttpResponse | None:
    """fault_response for async views: the same faults, waiting with asyncio.sleep."""
    if client.outage:
        return _outage_response()
    if delay := fault_delay_seconds(client):
        await asyncio.sleep(delay)
    return fault_after_delay(client)


def _outage_response() -> HttpResponse:
    return JsonResponse({"error": "temporarily_unavailable", "error_description": "sandbox outage"}, status=503)


def fault_delay_seconds(client: SandboxClient) -> float:
    """How long a request waits before it is answered: the latency fault plus any stall."""
    return (client.latency_ms / 1000 if client.latency_ms else 0.0) + (client.stall_seconds or 0.0)


def fault_after_delay(client: SandboxClient) -> HttpResponse | None:
    if client.rate_limit:
        response = JsonResponse({"error": "rate_limited", "error_description": "too many requests"}, status=429)
        response["Retry-After"] = str(client.rate_limit)
        return response
    if client.html_errors:
        status = client.html_status or 502
        return HttpResponse(render_to_string("sandbox/bad_gateway.html"), status=status, content_type="text/html")
    if client.error_5xx_rate and random.random() < client.error_5xx_rate:
        return JsonResponse({"error": "server_error", "error_description": "injected failure"}, status=500)
    return None


def error_shape(client: SandboxClient, kind: str) -> ErrorShape:
    if kind == "refresh":
        if not client.invalid_refresh_body:
            return STANDARD_INVALID_GRANT
        return ErrorShape(
            client.invalid_refresh_status, client.invalid_refresh_body, client.invalid_refresh_content_type
        )
    if not client.invalid_access_body:
        return STANDARD_INVALID_TOKEN
    return ErrorShape(client.invalid_access_status, client.invalid_access_body, client.invalid_access_content_type)


def error_shape_response(shape: ErrorShape) -> HttpResponse:
    import json

    body = shape.body if isinstance(shape.body, str) else json.dumps(shape.body)
    response = HttpResponse(body, status=shape.status, content_type=shape.content_type)
    response["Cache-Control"] = "no-store"
    return response
