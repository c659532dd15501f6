"""What the multi-host tests look at and do, run by the agent on the `ctl` host (Django set up
against the cluster's database, the broker and the web host reachable). Every function takes
and returns JSON-able values."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta

import requests
from django.conf import settings
from django.utils import timezone

WEB = settings.SITE_URL
STATE: dict = {}  # the world, the signed-in sessions, the open stream


def wait_http(url: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=2).status_code
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- the world -----------------------------------------------------------------------------


def world_setup(connections: int) -> dict:
    """A rotating sandbox client, its BrokerApp, a person with `connections` connections holding
    real sandbox tokens (authorization code + PKCE), and a staff member with a second factor."""
    from accounts.models import User
    from brokers.models import BrokerApp
    from tests.engine.conftest import EngineWorld
    from tests.fixtures.sandbox import SandboxServer
    from tests.support import with_second_factor

    sandbox = SandboxServer(0)
    sandbox.url = settings.SANDBOX_BASE_URL
    sandbox._ok(sandbox.control("POST", "users", {"demo": True}))
    client = sandbox.create_client(rotate_refresh=True)
    app = BrokerApp(broker_slug="sandbox", environment="live", client_id=client["client_id"])
    app.client_secret = client["client_secret"]
    app.save()
    password = "correct horse battery staple"  # noqa: S105 - a test person's
    user = User.objects.create_user(email="ada@example.com", password=password)
    staff = with_second_factor(User.objects.create_superuser(email="ops@example.com", password=password))
    world = EngineWorld(sandbox, client, app, user)
    ids = [str(world.connection().pk) for _ in range(connections)]
    STATE.update(world=world, password=password, totp=staff.totp_secret)
    return {"ids": ids, "client_id": client["client_id"]}


def counters() -> dict:
    return STATE["world"].counters()


def faults(**faults) -> dict:
    return STATE["world"].faults(**faults)


def checks(ids: list[str]) -> dict[str, list[list]]:
    """{connection id: [time (epoch seconds), passed] of each stored check, oldest first}."""
    import uuid

    from engine.checkstore import rings_for

    ids = [uuid.UUID(pk) for pk in ids]
    return {
        str(pk): sorted([c.checked_at.timestamp(), c.ok] for c in ring.checks) for pk, ring in rings_for(ids).items()
    }


def rows(ids: list[str]) -> dict[str, dict]:
    from django.db.models import F

    from connections.models import Connection

    fields = ["status", "refresh_sent_at", "refresh_claim_owner", "access_expires_at", "last_refreshed_at"]
    # The engine's per-check fields live on the connection's EngineState row.
    engine_fields = ("lease_owner", "lease_until", "last_error_message", "next_check_at")
    engine = {name: F(f"engine_state__{name}") for name in engine_fields}

    def plain(value):
        return value.timestamp() if hasattr(value, "timestamp") else value

    return {
        str(row["id"]): {k: plain(v) for k, v in row.items()}
        for row in Connection.objects.filter(pk__in=ids).values("id", *fields, **engine)
    }


def now() -> float:
    return timezone.now().timestamp()


def token_due(pk: str) -> None:
    """This connection's access token falls due (a 15-minute token with 60 s left)."""
    from connections.models import Connection

    Connection.objects.filter(pk=pk).update(
        access_expires_at=timezone.now() + timedelta(seconds=60),
        last_refreshed_at=timezone.now() - timedelta(seconds=840),
    )


def refresh_sent(pk: str, timeout: float = 30) -> dict:
    """Wait (polling fast) until a refresh of this connection has been sent; returns the row,
    whose lease owner (`host:pid:batch`) names the process that sent it."""
    from django.db.models import F

    from connections.models import Connection

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = (
            Connection.objects.filter(pk=pk, refresh_sent_at__isnull=False)
            .values(lease_owner=F("engine_state__lease_owner"))
            .first()
        )
        if row and row["lease_owner"]:
            return row
        time.sleep(0.02)
    raise TimeoutError("no refresh sent")


def sweep_runs(since: float) -> list[dict]:
    from engine.models import SweepRun

    runs = list(
        SweepRun.objects.filter(started_at__gte=datetime.fromtimestamp(since, tz=UTC))
        .order_by("id")
        .values("id", "started_at", "finished_at", "due", "lanes", "claimed", "checked", "failed", "max_lag_seconds")
    )
    return [{k: v.timestamp() if isinstance(v, datetime) else v for k, v in run.items()} for run in runs]


def circuit() -> dict:
    from engine.models import CircuitBreaker

    return {
        b.broker_slug: {
            "state": b.state,
            "failures": b.failure_count,
            "cooldown": (b.next_probe_at - timezone.now()).total_seconds() if b.next_probe_at else None,
        }
        for b in CircuitBreaker.objects.all()
    }


def circuit_reset() -> bool:
    """The operator's Reset (Admin › Circuit breakers): the outage waiters are due at once."""
    from engine.circuit import circuit_reset

    return circuit_reset("sandbox")


def circuit_events() -> int:
    """How many times a breaker opened (the events every connection gets when its broker is down)."""
    from connections.models import Connection

    return Connection.objects.filter(status="broker_outage").count()


def leases_stuck(grace: float = 1.0) -> list[str]:
    """Connections whose lease ran out more than `grace` seconds ago and was never released."""
    from engine.models import EngineState

    limit = timezone.now() - timedelta(seconds=grace)
    stuck = EngineState.objects.filter(lease_until__lt=limit).exclude(lease_owner="")
    return [str(pk) for pk in stuck.values_list("pk", flat=True)]


def status_change(pk: str, to_status: str, message: str = "") -> None:
    """A change a person sees, made the engine's way (one transition, published live)."""
    from connections.models import Connection
    from connections.state import connection_transition

    connection_transition(connection=Connection.objects.get(pk=pk), to_status=to_status, message=message)


# --- the web host, as a person and as the operator -------------------------------------------


def _csrf(page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def _session(email: str, *, totp: str | None = None) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{WEB}/accounts/login/", timeout=15)
    answer = session.post(
        f"{WEB}/accounts/login/",
        data={"csrfmiddlewaretoken": _csrf(page.text), "login": email, "password": STATE["password"]},
        allow_redirects=False,
        timeout=15,
    )
    assert answer.status_code == 302, answer.status_code
    if totp:
        from tests.support import totp_code

        url = answer.headers["Location"]
        page = session.get(f"{WEB}{url}" if url.startswith("/") else url, timeout=15)
        answer = session.post(
            page.url, data={"csrfmiddlewaretoken": _csrf(page.text), "code": totp_code(totp)}, timeout=15
        )
        assert answer.status_code == 200, answer.status_code
    return session


def person_page(path: str = "/connections/") -> dict:
    """A signed-in person's page: status, how long it took."""
    if "person" not in STATE:
        STATE["person"] = _session("ada@example.com")
    started = time.monotonic()
    response = STATE["person"].get(f"{WEB}{path}", timeout=30)
    return {"status": response.status_code, "seconds": round(time.monotonic() - started, 2), "url": response.url}


def system_page() -> dict:
    """The staff system status page: the monitoring sentence and each service's state."""
    if "staff" not in STATE:
        STATE["staff"] = _session("ops@example.com", totp=STATE["totp"])
    started = time.monotonic()
    response = STATE["staff"].get(f"{WEB}/connections/system/", timeout=60)
    monitoring = re.search(r'data-monitoring="(\w+)">(.*?)</p>', response.text, re.S)
    services = dict(
        re.findall(r'data-service="(\w+)">.*?<span class="badge badge--\w+">(\w+)</span>', response.text, re.S)
    )
    return {
        "status": response.status_code,
        "seconds": round(time.monotonic() - started, 2),
        "monitoring": monitoring.group(1) if monitoring else None,
        "text": re.sub(r"<[^>]+>", "", monitoring.group(2)).strip() if monitoring else "",
        "services": services,
    }


def metrics() -> dict[str, float]:
    """The scrape's sweep and service gauges."""
    response = requests.get(f"{WEB}/metrics", headers={"Authorization": f"Bearer {settings.METRICS_TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.status_code
    values = {}
    for line in response.text.splitlines():
        if line.startswith(("brokerlink_sweep", "brokerlink_service_up")):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def stream_open() -> None:
    """A person's open dashboard stream, read on a thread; events land in STATE["events"]."""
    if "person" not in STATE:
        STATE["person"] = _session("ada@example.com")
    events: list = []
    STATE["events"] = events

    def read():
        while STATE.get("streaming"):
            try:
                with STATE["person"].get(f"{WEB}/connections/stream/", stream=True, timeout=(5, 30)) as response:
                    for line in response.iter_lines(chunk_size=1, decode_unicode=True):
                        if line and line.startswith("event:"):
                            events.append([time.time(), line.split(":", 1)[1].strip()])
                        if not STATE.get("streaming"):
                            return
            except requests.RequestException:
                time.sleep(0.5)

    STATE["streaming"] = True
    threading.Thread(target=read, daemon=True).start()


def stream_events(since: float = 0) -> list:
    return [event for event in STATE.get("events", []) if event[0] >= since]


def stream_close() -> None:
    STATE["streaming"] = False
