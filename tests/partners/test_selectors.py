"""partners.selectors: the app's stylesheet colour, and the stylesheet view that renders it."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from partners.selectors import partner_app_brand_colour
from partners.services import partner_app_create

pytestmark = pytest.mark.django_db


def test_the_colour_of_an_app_that_has_one():
    app = partner_app_create(name="Tracker", brand_colour="#12ab34")
    assert partner_app_brand_colour(app.pk) == "#12ab34"


def test_no_colour_for_an_app_without_one_or_an_unknown_app():
    app = partner_app_create(name="Plain")
    assert partner_app_brand_colour(app.pk) == ""
    assert partner_app_brand_colour(uuid.uuid4()) == ""


def test_the_stylesheet_has_the_rule_only_with_a_colour(client):
    app = partner_app_create(name="Tracker", brand_colour="#12ab34")
    response = client.get(reverse("partners:app_style", args=[app.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/css; charset=utf-8"
    assert response["Cache-Control"] == "public, max-age=300"
    assert response.content.decode() == ".partner-accent { border-top: 6px solid #12ab34; }\n"
    unknown = client.get(reverse("partners:app_style", args=[uuid.uuid4()]))
    assert unknown.status_code == 200
    assert unknown.content == b""
