"""The rendered API docs work offline: Swagger UI from brokerlink's own static files, in Chromium
with every request to another host refused."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.browser


def test_the_api_docs_render_with_no_request_leaving_brokerlink(stack, page):
    outside = []

    def only_brokerlink(route):
        if urlsplit(route.request.url).netloc != urlsplit(stack.url).netloc:
            outside.append(route.request.url)
            return route.abort()
        return route.continue_()

    page.route("**/*", only_brokerlink)
    page.goto(f"{stack.url}/api/v1/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "brokerlink API" in page.inner_text(".swagger-ui .info .title")
    page.get_by_text("/api/v1/connections/{connection_id}/proxy/{path}").first.wait_for()
    assert outside == []
