"""The page URL names other apps reverse without importing pages (README, App map): each still
resolves to the pages view it names, at the address people and brokers know."""

from __future__ import annotations

import uuid

import pytest
from django.urls import resolve, reverse

from pages import views

CONNECTION = uuid.UUID("00000000-0000-4000-8000-000000000001")


@pytest.mark.parametrize(
    ("name", "kwargs", "path", "view"),
    [
        # engine.notifications.reconnect_url: the link in every email about a connection.
        ("connections:detail", {"connection_id": CONNECTION}, f"/connections/{CONNECTION}/", views.connection_detail),
        # brokers.models: the OAuth redirect URI registered at each broker.
        ("connections:callback", {"slug": "sandbox"}, "/connections/callback/sandbox/", views.callback),
        # sandbox.views: back to the dashboard.
        ("connections:dashboard", {}, "/connections/", views.dashboard),
    ],
)
def test_a_name_other_apps_reverse_still_names_its_page(name, kwargs, path, view):
    assert reverse(name, kwargs=kwargs) == path
    assert resolve(path).func is view
