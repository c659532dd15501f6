"""Live updates for open pages: who publishes a change, and the event streams that carry it.

One stream format (server-sent events, one named event per connection, `conn-<uuid>`, plus
`summary` for the strip). Open streams hold **no database connection while they wait**:

- Each web process runs one `Hub` (per event loop). It learns of changes for every user with
  an open page in that process and wakes only the streams of that user.
- With `REDIS_URL` the hub subscribes once to the deployment's channel
  (`display.live_channel()`), where the outbox (`connections.outbox`: status changes) and
  the engine's write phase (other changes a card shows) publish `[user, connection, status,
  version]` after commit. A slow shared database poll
  (every `REDIS_BACKSTOP_SECONDS`) catches changes nobody published. If Redis goes away
  the hub polls every `POLL_SECONDS` and keeps trying to subscribe again; once it is
  subscribed it goes back to the slow poll (after one catch-up poll).
- Without Redis (the embedded default) the hub polls the database every `POLL_SECONDS`:
  one query per process for all open pages, not one per page.
- A change is sent only when `display.display_version` of the row changed (what a person
  sees), never for a heartbeat that only moved the last check's time.
- Whether monitoring runs (the summary strip's "Status may be out of date" banner) is read
  once per process every `MONITORING_SECONDS`; when it flips, every stream gets a `summary`
  event. Pages with an open stream therefore never poll (live.js polls only while it is down).

A stream touches the database only to authorise itself and to read its user's current
versions, each time in a connection it closes right after. It is opened with what its page
shows (`?seen=`: each card's connection and display version) and sends first whatever differs
from the versions it read (`Hub.resume`), so a change made while the page had no stream (its
old one ended on schedule, the page was loading) is not lost. The number of streams is capped
per user and per process (`LIVE_MAX_STREAMS_PER_USER`, `LIVE_MAX_STREAMS_PER_PROCESS`);
the view answers 429 / 503 "too many open pages" beyond them instead of failing.

The stream itself (the events a page receives) is pages.live_stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from dataclasses import dataclass, field

from django.conf import settings

from connections import display
from pages import live_reads as reads

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
# With Redis publishing changes, the shared poll only catches what nobody published.
REDIS_BACKSTOP_SECONDS = 15.0
REDIS_RETRY_SECONDS = 2.0
REDIS_PING_SECONDS = 10.0
# How often each process reads whether monitoring runs (one query for all its open pages).
MONITORING_SECONDS = 15.0
# Cards a page lists in its stream's `?seen=` (static/js/live.js: the same number), which
# keeps the URL under the 8 KB a proxy commonly allows for a request line.
SEEN_MAX_CARDS = 400



def max_streams_per_user() -> int:
    return int(getattr(settings, "LIVE_MAX_STREAMS_PER_USER", 20))


def max_streams_per_process() -> int:
    return int(getattr(settings, "LIVE_MAX_STREAMS_PER_PROCESS", 4000))


# --- the hub: one per process (event loop) ---------------------------------------------


async def event_wait(event: asyncio.Event, timeout: float) -> None:
    """Until `event` is set or `timeout` passes."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=timeout)


class TooManyStreams(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(eq=False)
class Subscriber:
    user_id: str
    connection_id: str | None
    pending: dict[str, str] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    summary_due: bool = False
    # The page's session: a stream that sends cards themselves stops when it has ended.
    session_key: str = ""

    def put(self, connection_id: str, status: str) -> None:
        if self.connection_id is None or self.connection_id == connection_id:
            self.pending[connection_id] = status
            self.wake.set()

    def put_summary(self) -> None:
        self.summary_due = True
        self.wake.set()

    def take(self) -> tuple[dict[str, str], bool]:
        """(changed connections {id: status}, whether the summary changed by itself)."""
        changed, self.pending = self.pending, {}
        summary, self.summary_due = self.summary_due, False
        self.wake.clear()
        return changed, summary


class Hub:
    def __init__(self):
        self.redis_url = getattr(settings, "REDIS_URL", "") or ""
        self.by_user: dict[str, set[Subscriber]] = {}
        self.count = 0
        # connection id -> version last sent to this process's pages; user -> their ids
        self.versions: dict[str, str] = {}
        self.user_connections: dict[str, set[str]] = {}
        self.redis_ok = False
        self.subscribed = asyncio.Event()  # set once the first subscribe attempt ended
        self.poll_now = asyncio.Event()
        self.polls = 0
        self.messages = 0
        self.monitoring_active: bool | None = None
        # connection id -> (version, task rendering the cards of that batch): every open page
        # of the user waits on the same render.
        self.cards: dict[str, tuple[str | None, asyncio.Future]] = {}
        # user -> generation of their summary (bumped by every change or monitoring flip);
        # (user, show) -> (generation, task rendering it): one render for all their open pages.
        self.summary_gen: dict[str, int] = {}
        self.summaries: dict[tuple[str, str], tuple[int, asyncio.Future]] = {}
        self._tasks = [asyncio.ensure_future(self._poll_loop()), asyncio.ensure_future(self._monitoring_loop())]
        if self.redis_url:
            self._tasks.append(asyncio.ensure_future(self._redis_loop()))
        else:
            self.subscribed.set()

    # -- streams --

    def admit(self, user_id) -> None:
        """Raise TooManyStreams when this process or this user has no room for one more stream."""
        if self.count >= max_streams_per_process():
            raise TooManyStreams(
                "Too many open pages on this server right now: live updates are paused; "
                "the page checks for changes by itself instead.",
                503,
            )
        if len(self.by_user.get(str(user_id), ())) >= max_streams_per_user():
            raise TooManyStreams(
                f"Too many open pages: live updates are limited to {max_streams_per_user()} open pages "
                "per account. Close some brokerlink tabs.",
                429,
            )

    def subscribe(self, user_id, connection_id=None, session_key: str = "") -> Subscriber:
        self.admit(user_id)
        sub = Subscriber(str(user_id), str(connection_id) if connection_id else None, session_key=session_key or "")
        self.by_user.setdefault(sub.user_id, set()).add(sub)
        self.count += 1
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self.by_user.get(sub.user_id)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        self.count -= 1
        if not subs:
            del self.by_user[sub.user_id]
            for pk in self.user_connections.pop(sub.user_id, ()):
                self.versions.pop(pk, None)
                self.cards.pop(pk, None)
            self.summary_gen.pop(sub.user_id, None)
            for key in [key for key in self.summaries if key[0] == sub.user_id]:
                del self.summaries[key]

    def learn(self, rows) -> None:
        """Versions a stream read when it opened: the baseline later changes are compared to."""
        for user_id, pk, _status, version in rows:
            self.user_connections.setdefault(user_id, set()).add(pk)
            self.versions.setdefault(pk, version)

    def resume(self, sub: Subscriber, rows, seen: dict[str, str]) -> int:
        """Queue for a stream that just opened what changed since its page was last told: each
        connection whose version the page says it shows (`seen`, see `seen_parse`) differs from
        the one just read. That covers a change committed between the old stream's end and this
        one's open, which no stream was there to hear. Compared with the hub's version too: a
        poll that ran while this stream opened may have learnt a newer one without sending it
        (`deliver` sends nothing for a connection it did not know yet)."""
        digits = display.SEEN_VERSION_DIGITS
        queued = 0
        for _user_id, pk, status, version in rows:
            shown = seen.get(display.seen_id(pk))
            if shown is None:
                continue  # not on that page (a card connected since, say): nothing to correct
            if shown != version[:digits] or shown != self.versions.get(pk, version)[:digits]:
                sub.put(pk, status)
                queued += 1
        if queued:
            # The strip (and the sessions read) cached for this user predate what is sent now.
            self.summary_gen[sub.user_id] = self.summary_gen.get(sub.user_id, 0) + 1
        return queued

    def deliver(self, user_id: str, pk: str, status: str, version: str) -> None:
        subs = self.by_user.get(user_id)
        if not subs:
            return
        known = self.versions.get(pk)
        self.versions[pk] = version
        self.user_connections.setdefault(user_id, set()).add(pk)
        # Unknown until now (a poll ran before the stream read its baseline): nothing to compare.
        if known is None or known == version:
            return
        self.summary_gen[user_id] = self.summary_gen.get(user_id, 0) + 1
        for sub in subs:
            sub.put(pk, status)

    async def cards_get(self, user_id: str, ids: list[str]) -> dict:
        """{id: card (see live_reads.cards_read)} at the versions last delivered, read once for all the
        user's open pages; ids missing from the answer are re-fetched by the pages instead."""
        todo = [
            pk for pk in ids if (self.cards.get(pk) or (None, None))[0] != self.versions.get(pk) or pk not in self.cards
        ]
        if todo:
            task = asyncio.ensure_future(reads.cards_read(user_id, todo))
            for pk in todo:
                self.cards[pk] = (self.versions.get(pk), task)
        out = {}
        for pk in ids:
            entry = self.cards.get(pk)
            if entry is None:
                continue
            try:
                html = (await asyncio.shield(entry[1])).get(pk)
            except Exception as exc:  # noqa: BLE001 - the page re-fetches the card instead
                logger.warning("connections.live.card_failed", extra={"error": type(exc).__name__})
                self.cards.pop(pk, None)
                continue
            if html is not None:
                out[pk] = html
        return out

    async def signed_in(self, sub: Subscriber) -> bool:
        """Whether this stream's session still stands, read once per change batch for all the
        user's open pages (False also when it cannot be read: the page re-fetches instead)."""
        if not sub.session_key:
            return False
        key, generation = ("sessions", sub.user_id), self.summary_gen.get(sub.user_id, 0)
        entry = self.summaries.get(key)
        if entry is None or entry[0] != generation:
            keys = sorted({s.session_key for s in self.by_user.get(sub.user_id, ()) if s.session_key})
            entry = self.summaries[key] = (generation, asyncio.ensure_future(reads.sessions_read(keys)))
        try:
            alive = await asyncio.shield(entry[1])
        except Exception as exc:  # noqa: BLE001
            logger.warning("connections.live.sessions_failed", extra={"error": type(exc).__name__})
            self.summaries.pop(key, None)
            return False
        return sub.session_key in alive

    async def summary_get(self, user_id: str, show: str) -> str | None:
        """The user's summary strip as of their latest change, rendered once for all their
        open pages with the same filter; None: the pages re-fetch it instead."""
        key, generation = (user_id, show), self.summary_gen.get(user_id, 0)
        entry = self.summaries.get(key)
        if entry is None or entry[0] != generation:
            entry = self.summaries[key] = (generation, asyncio.ensure_future(reads.summary_read(user_id, show)))
        try:
            return await asyncio.shield(entry[1])
        except Exception as exc:  # noqa: BLE001 - the pages re-fetch the strip instead
            logger.warning("connections.live.summary_failed", extra={"error": type(exc).__name__})
            self.summaries.pop(key, None)
            return None

    # -- feeds --

    async def _poll_once(self) -> None:
        users = list(self.by_user)
        if not users:
            return
        self.polls += 1
        for row in await reads.versions_read(users):
            self.deliver(*row)

    async def _poll_loop(self) -> None:
        while True:
            every = REDIS_BACKSTOP_SECONDS if self.redis_ok else POLL_SECONDS
            await event_wait(self.poll_now, every)
            self.poll_now.clear()
            try:
                await self._poll_once()
            except Exception as exc:  # noqa: BLE001 - the database is away: try again next round
                logger.warning("connections.live.poll_failed", extra={"error": type(exc).__name__})

    def monitoring_seen(self, active: bool) -> None:
        """Whether monitoring runs, as just read: every stream hears when that flips."""
        before, self.monitoring_active = self.monitoring_active, active
        if before is None or before == active:
            return
        for user_id, subs in self.by_user.items():
            self.summary_gen[user_id] = self.summary_gen.get(user_id, 0) + 1
            for sub in subs:
                sub.put_summary()

    async def _monitoring_loop(self) -> None:
        while True:
            await asyncio.sleep(MONITORING_SECONDS)
            if not self.by_user:
                continue
            try:
                self.monitoring_seen(await reads.monitoring_active_read())
            except Exception as exc:  # noqa: BLE001 - the database is away: try again next round
                logger.warning("connections.live.monitoring_failed", extra={"error": type(exc).__name__})

    def _on_message(self, data) -> None:
        try:
            payload = json.loads(data)
            for user_id, pk, status, version in payload["changes"]:
                self.deliver(str(user_id), str(pk), str(status), str(version))
        except (ValueError, KeyError, TypeError):
            logger.warning("connections.live.bad_message")

    async def _redis_loop(self) -> None:
        import redis.asyncio as aredis

        while True:
            client = pubsub = None
            try:
                client = aredis.Redis.from_url(self.redis_url, socket_connect_timeout=1)
                pubsub = client.pubsub()
                await pubsub.subscribe(display.live_channel())
                if not self.redis_ok:
                    logger.info("connections.live.redis_subscribed")
                self.redis_ok = True
                self.subscribed.set()
                # Catch up with whatever changed while we were not subscribed.
                self.poll_now.set()
                last_seen = last_ping = time.monotonic()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    now = time.monotonic()
                    if message is not None:
                        last_seen = now
                        if message.get("type") == "message":
                            self.messages += 1
                            self._on_message(message["data"])
                    if now - last_ping >= REDIS_PING_SECONDS:
                        last_ping = now
                        await asyncio.wait_for(pubsub.ping(), timeout=2)
                    if now - last_seen > 2.5 * REDIS_PING_SECONDS:
                        raise ConnectionError("no answer to ping")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: poll the database until it is back
                if self.redis_ok:
                    logger.warning("connections.live.redis_lost", extra={"error": type(exc).__name__})
                    self.poll_now.set()
                self.redis_ok = False
                self.subscribed.set()
            finally:
                for closing in (pubsub, client):
                    if closing is not None:
                        with contextlib.suppress(Exception):  # closing a dead connection
                            await closing.aclose()
            await asyncio.sleep(REDIS_RETRY_SECONDS)

    def stats(self) -> dict:
        return {
            "streams": self.count,
            "users": len(self.by_user),
            "feed": "redis" if self.redis_ok else "database poll",
            "polls": self.polls,
            "messages": self.messages,
        }


_hubs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def process_admit() -> None:
    """The per-process cap, checked before a stream authorises itself (no hub is started)."""
    hub = _hubs.get(asyncio.get_running_loop())
    if hub is not None:
        hub.admit(None)


def hub_get() -> Hub:
    """This event loop's hub, started on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub


def seen_parse(text: str) -> dict[str, str]:
    """{connection id digits: version digits} of a stream's `?seen=`, what its page shows:
    `display.seen_piece` of each card (or the detail panel), concatenated. At most
    `SEEN_MAX_CARDS` are read (the page lists no more: the stream's URL stays short); anything
    that is not a piece of hex digits is ignored."""
    width = display.SEEN_ID_DIGITS + display.SEEN_VERSION_DIGITS
    text = (text or "")[: width * SEEN_MAX_CARDS].lower()
    out = {}
    for start in range(0, len(text) - width + 1, width):
        piece = text[start : start + width]
        if all(c in "0123456789abcdef" for c in piece):
            out[piece[: display.SEEN_ID_DIGITS]] = piece[display.SEEN_ID_DIGITS :]
    return out


async def stream_open(
    user_id, connection_id=None, session_key: str = "", seen: dict | None = None, stale: bool | None = None
) -> Subscriber:
    """Register a stream (raises TooManyStreams over a cap), wait for the hub's feed and read
    the user's current versions. The view does this before answering: once the browser sees
    the response it shows "Live", and a change after that must not be missed. `seen`: what
    the page shows (`seen_parse`); whatever changed since is queued to be sent first. `stale`:
    whether its summary strip shows "Status may be out of date"; when that is no longer what
    this process knows of monitoring, the strip is sent again too."""
    hub = hub_get()
    sub = hub.subscribe(user_id, connection_id, session_key=session_key)
    try:
        await event_wait(hub.subscribed, 2)
        rows = await reads.versions_read([user_id], connection_id)
        hub.learn(rows)
        if seen:
            hub.resume(sub, rows, seen)
        if stale is not None and hub.monitoring_active is not None and stale == hub.monitoring_active:
            hub.summary_gen[sub.user_id] = hub.summary_gen.get(sub.user_id, 0) + 1
            sub.put_summary()
    except BaseException:
        hub.unsubscribe(sub)
        raise
    return sub


def stream_close_threadsafe(sub: Subscriber, loop: asyncio.AbstractEventLoop) -> None:
    """Unregister from any thread (Django closes a response in a worker thread); idempotent."""
    hub = _hubs.get(loop)
    if hub is not None and not loop.is_closed():
        loop.call_soon_threadsafe(hub.unsubscribe, sub)

