"""Review of issue 28 (connect sessions): what an attacker or a careless caller tries, each a
test that failed before its fix (or pins a rule the review checked)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection as db_connection

from partners.services import (
    SessionProblem,
    connect_session_create,
    connect_session_open,
    partner_app_create,
)

# --- a link opened by two browsers at once ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_browsers_opening_one_link_at_once_exactly_one_gets_it():
    tracker = partner_app_create(name="Tracker")
    _session, url = connect_session_create(app=tracker, end_user={"id": "u-1"})
    token = url.rstrip("/").rsplit("/", 1)[-1]
    browsers = [{} for _ in range(4)]
    outcomes: list[str] = []
    start = threading.Barrier(len(browsers))

    def open_in(browser):
        try:
            start.wait(timeout=10)
            connect_session_open(token, browser=browser)
            outcomes.append("opened")
        except SessionProblem as problem:
            outcomes.append(problem.code)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=open_in, args=(b,)) for b in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["opened", "used", "used", "used"]
    assert sum(1 for b in browsers if b) == 1
