"""A dashboard's stream sends the changed cards and the summary strip themselves, read once
per process for all of a user's open pages (each page's card carries its own CSRF token;
issue 27: every open page re-fetching after each sweep is what made real pages 503)."""

import asyncio

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from connections import display  # noqa: F401 - views_live wires the renderers into live
from connections.models import ConnectionStatus
from pages import live, live_stream

pytestmark = pytest.mark.django_db(transaction=True)


def session_of(user) -> str:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key


def test_two_open_pages_get_the_card_and_strip_from_one_render(make_connection, monkeypatch):
    connection = make_connection()
    user_id, pk = str(connection.user_id), str(connection.pk)
    renders = {"cards": 0, "summary": 0}
    cards, summary = live.card_render, live.summary_render

    def count_cards(*args):
        renders["cards"] += 1
        return cards(*args)

    def count_summary(*args):
        renders["summary"] += 1
        return summary(*args)

    monkeypatch.setattr(live, "card_render", count_cards)
    monkeypatch.setattr(live, "summary_render", count_summary)

    signed_in, signed_out = session_of(connection.user), session_of(connection.user)

    async def main():
        hub = live.Hub()
        try:
            pages = [hub.subscribe(user_id, session_key=signed_in), hub.subscribe(user_id, session_key=signed_in)]
            gone = hub.subscribe(user_id, session_key=signed_out)
            await asyncio.to_thread(SessionStore(session_key=signed_out).delete)
            streams = [
                live_stream.connection_stream(user_id, subscriber=sub, csrf_token="TOKEN", max_seconds=5)
                for sub in [*pages, gone]
            ]
            live._hubs[asyncio.get_running_loop()] = hub
            for stream in streams:
                await anext(stream), await anext(stream)  # retry, hello
            # As the hub's own poll or Redis would say it: the versions of the row as stored.
            hub.learn([(user_id, pk, "connected", display.display_version(connection))])
            connection.status = ConnectionStatus.BROKER_OUTAGE
            await asyncio.to_thread(connection.save, update_fields=["status"])
            hub.deliver(user_id, pk, "broker_outage", display.display_version(connection))
            return [[await anext(stream), await anext(stream)] for stream in streams]
        finally:
            for task in hub._tasks:
                task.cancel()

    *got, after_sign_out = asyncio.run(main())
    # The page whose session ended gets no card, only "re-fetch" (refused as signed out).
    assert after_sign_out[0].startswith(f"event: conn-{pk}\n") and after_sign_out[1].startswith("event: summary\n")
    for card, strip in got:
        assert card.startswith(f"event: card-{pk}\n")
        assert "Waiting for the broker" in card and "TOKEN" in card and "csrf-placeholder" not in card
        assert strip.startswith("event: summary-html\n") and 'data-count="waiting">1<' in strip
    assert renders == {"cards": 1, "summary": 1}
