"""A dashboard's stream sends the changed cards and the summary strip themselves, read once
per process for all of a user's open pages (each page's card carries its own CSRF token;
issue 27: every open page re-fetching after each sweep is what made real pages 503)."""

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections

from connections import display
from connections.models import ConnectionStatus
from pages import fragments, live, live_stream

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
    cards, summary = fragments.cards_for_stream, fragments.summary_for_stream

    def count_cards(*args):
        renders["cards"] += 1
        return cards(*args)

    def count_summary(*args):
        renders["summary"] += 1
        return summary(*args)

    monkeypatch.setattr(fragments, "cards_for_stream", count_cards)
    monkeypatch.setattr(fragments, "summary_for_stream", count_summary)

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


def _stream_events(
    user_id, *, session_key: str, seen: str, connection_id=None, stale=None, monitoring=None
) -> list[str]:
    """The names of the events a stream opened with `?seen=seen` (and `&stale=`) sends before
    its scheduled end (a short one: the stream itself bounds the wait). `monitoring`: whether
    the process last read that monitoring runs."""

    async def main():
        hub = live.hub_get()
        hub.monitoring_active = monitoring
        try:
            sub = await live.stream_open(
                user_id, connection_id, session_key=session_key, seen=live.seen_parse(seen), stale=stale
            )
            stream = live_stream.connection_stream(
                user_id, connection_id=connection_id, subscriber=sub, csrf_token="TOKEN", max_seconds=0.5
            )
            return [chunk.split("\n", 1)[0] async for chunk in stream]
        finally:
            for task in hub._tasks:
                task.cancel()

    # A thread of its own: an event loop may already run in this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def test_a_reopened_stream_sends_first_what_changed_since_the_page_was_told(make_connection, client):
    from connections.state import connection_transition

    connection = make_connection()
    other = make_connection()
    client.force_login(connection.user)
    page = client.get("/connections/").content.decode()
    seen = "".join(re.findall(r'data-live-version="([0-9a-f]+)"', page))
    assert len(seen) == 2 * 16
    session_key = client.session.session_key
    user_id, pk = str(connection.user_id), str(connection.pk)

    # Nothing changed since the page was rendered: the stream sends nothing but its own.
    assert _stream_events(user_id, session_key=session_key, seen=seen) == ["retry: 1000", "event: hello", "event: bye"]

    # A change while no stream was open: the next stream sends that card and the strip first.
    connection_transition(connection=connection, to_status=ConnectionStatus.BROKER_OUTAGE, message="test")
    events = _stream_events(user_id, session_key=session_key, seen=seen)
    assert events == ["retry: 1000", "event: hello", f"event: card-{pk}", "event: summary-html", "event: bye"]

    # A page that does not show the card (not in its ?seen=) is not sent it; the detail
    # page's stream says "re-fetch" for its connection.
    other_only = "".join(piece for piece in re.findall(r".{16}", seen) if piece.startswith(other.pk.hex[:8]))
    assert _stream_events(user_id, session_key=session_key, seen=other_only) == [
        "retry: 1000",
        "event: hello",
        "event: bye",
    ]
    events = _stream_events(user_id, session_key=session_key, seen=seen, connection_id=pk)
    assert events == ["retry: 1000", "event: hello", f"event: conn-{pk}", "event: summary", "event: bye"]

    # Monitoring stopped or started again while no stream was open: the strip comes again.
    everything = ["retry: 1000", "event: hello", "event: summary-html", "event: bye"]
    assert _stream_events(user_id, session_key=session_key, seen="", stale=False, monitoring=False) == everything
    assert _stream_events(user_id, session_key=session_key, seen="", stale=True, monitoring=True) == everything
    quiet = ["retry: 1000", "event: hello", "event: bye"]
    assert _stream_events(user_id, session_key=session_key, seen="", stale=False, monitoring=True) == quiet
    assert _stream_events(user_id, session_key=session_key, seen="", stale=False, monitoring=None) == quiet
    # (the async ORM's worker threads hold connections the test database teardown would wait for)
    connections.close_all()


def test_seen_parse_reads_hex_pieces_and_ignores_the_rest():
    assert live.seen_parse("0123abcd89abcdefFFFFFFFF00000000x") == {"0123abcd": "89abcdef", "ffffffff": "00000000"}
    assert live.seen_parse("zz23abcd89abcdef") == {}
    assert live.seen_parse("") == {}
    assert len(live.seen_parse("0123abcd89abcdef" * (live.SEEN_MAX_CARDS + 10))) == 1
    many = "".join(f"{n:08x}89abcdef" for n in range(live.SEEN_MAX_CARDS + 10))
    assert len(live.seen_parse(many)) == live.SEEN_MAX_CARDS
