"""Several machines, with the links between them cut (issue 29).

db, redis, broker (the sandbox alone), web, worker-a, worker-b and beat are network namespaces
(tests/multihost/netns.py) running brokerlink as docs/operations.md says for several machines;
a cut is `ip link set … down` on the switch's side of one host's link, a heal brings it up.
Timings are compressed 30× (harness.TIME_SCALE): the cycle is 2 s, the lease 4 s, the refresh
deadline 6 s. Each scenario prints what it measured ("multihost: …" lines) and asserts what
must hold. docs/operations.md, "Several machines: what we cut and what held", has the figures.
"""

from __future__ import annotations

import time

import pytest

from tests.multihost.harness import ENGINE_ENV, INTERVAL, seconds_since
from tests.support import wait_for

# A cut scenario waits out backoffs after its heal (STEADY_SECONDS): more than the default timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

WORKERS = ("worker-a", "worker-b")
REFRESH_DEADLINE = float(ENGINE_ENV["BROKERLINK_ENGINE_REFRESH_DEADLINE_SECONDS"])


@pytest.fixture(scope="module")
def world(cluster):
    cluster.world = cluster.call("world_setup", 6)
    return cluster.world


def report(scenario: str, **measured) -> None:
    print(f"multihost: {scenario}: " + ", ".join(f"{k}={v}" for k, v in measured.items()))


def checks_after(hosts, ids, since: float) -> dict[str, list[list]]:
    return {pk: [c for c in cs if c[0] > since] for pk, cs in hosts.call("checks", ids).items()}


# A connection that failed during a cut waits out its backoff before its next check (the
# sandbox profile: full jitter up to 30 s, then 60 s, then 120 s): a settled cluster may take
# that long to show every connection passing again. The deadline only bounds a failure.
STEADY_SECONDS = 150


def steady(hosts, ids) -> float:
    """Wait until the cycle runs normally: every connection connected and checked (passed)
    after this moment. Returns the moment (the database's clock)."""
    since = hosts.call("now")

    def settled():
        passed = all(any(ok for _, ok in cs) for cs in checks_after(hosts, ids, since).values())
        return passed and all(r["status"] == "connected" for r in hosts.call("rows", ids).values())

    try:
        wait_for(settled, timeout=STEADY_SECONDS, interval=0.3, what="every connection checked and connected")
    except TimeoutError:
        print(checks_after(hosts, ids, since - 10), hosts.call("rows", ids), since)
        raise
    return since


def duplicate_checks(hosts, ids, since: float) -> int:
    """Checks of one connection less than half a cycle after a check it passed (a connection
    checked twice in one cycle), stored after `since`. A check soon after a failed one is the
    retry the backoff or a breaker reset schedules, not a duplicate."""
    duplicates = 0
    for cs in checks_after(hosts, ids, since).values():
        duplicates += sum(1 for (a, ok), (b, _) in zip(cs, cs[1:], strict=False) if ok and b - a < INTERVAL / 2)
    return duplicates


def token_stored(hosts, pk: str, after: float) -> bool:
    """A refresh of `pk` was answered and stored after `after` (its claim cleared)."""
    row = hosts.call("rows", [pk])[pk]
    return row["refresh_sent_at"] is None and not row["refresh_claim_owner"] and row["last_refreshed_at"] > after


def grant_alive(hosts, pk: str) -> None:
    """The stored refresh token is the live one: the next refresh through the cluster works."""
    before = hosts.call("counters")
    since = hosts.call("now")
    hosts.call("token_due", pk)
    wait_for(lambda: token_stored(hosts, pk, since), timeout=30, interval=0.2, what="one more refresh stored")
    after = hosts.call("counters")
    assert after["refreshes"] > before["refreshes"]
    assert after["rotated_reuses"] == before["rotated_reuses"]
    assert hosts.call("rows", [pk])[pk]["status"] == "connected"


def test_a_worker_cut_from_the_database_right_after_it_sent_a_refresh(hosts, world):
    """The broker answers the refresh, the commit cannot happen until the link heals: the
    store is retried (engine.dbretry) and lands, so no grant is lost; the other worker keeps the
    cycle going meanwhile and nothing is checked twice in a cycle."""
    ids, target = world["ids"], world["ids"][0]
    since = steady(hosts, ids)
    before = hosts.call("counters")
    hosts.call("faults", latency_ms=1500)  # the answer comes 1.5 s after the request
    hosts.call("token_due", target)
    row = hosts.call("refresh_sent", target)
    sender = hosts.host_of_pid(int(row["lease_owner"].split(":")[1]))
    hosts.net.cut(sender, "db")
    cut_at, cut_epoch = time.monotonic(), hosts.call("now")
    assert sender in WORKERS, row
    other = next(w for w in WORKERS if w != sender)

    wait_for(
        lambda: hosts.call("counters")["refreshes"] > before["refreshes"],
        timeout=15,
        what="the broker answered the refresh",
    )
    # The other worker keeps the cycle going: every other connection is checked again. The link
    # heals before the refresh may be resent (sent + 2 × REFRESH_DEADLINE_SECONDS, 12 s here):
    # the partition the design says loses nothing.
    resend_at = hosts.call("rows", [target])[target]["refresh_sent_at"] + 2 * REFRESH_DEADLINE
    wait_for(
        lambda: all(len(cs) >= 1 for pk, cs in checks_after(hosts, ids, cut_epoch).items() if pk != target),
        timeout=max(1.0, resend_at - 2 - hosts.call("now")),
        interval=0.3,
        what=f"{other} checking every connection while {sender} is cut, before the refresh may be resent",
    )
    during = sum(len(cs) for pk, cs in checks_after(hosts, ids, cut_epoch).items() if pk != target)
    hosts.call("faults", latency_ms=0)
    cut_for = seconds_since(cut_at)
    assert not token_stored(hosts, target, cut_epoch), "the store cannot have happened across the cut"
    hosts.net.heal(sender, "db")
    healed = time.monotonic()
    wait_for(
        lambda: token_stored(hosts, target, cut_epoch),
        timeout=40,
        interval=0.2,
        what="the rotated token stored after the heal",
    )
    stored_after = seconds_since(healed)
    after = hosts.call("counters")
    assert after["rotated_reuses"] == before["rotated_reuses"]
    assert hosts.call("rows", [target])[target]["status"] == "connected"
    grant_alive(hosts, target)
    duplicates = duplicate_checks(hosts, ids, since)
    report(
        "worker cut from db after sending a refresh",
        sender=sender,
        other_worker_checks_during_cut=during,
        cut_seconds=cut_for,
        grants_lost=0,
        refresh_reuses=after["rotated_reuses"] - before["rotated_reuses"],
        seconds_to_store_after_heal=stored_after,
        duplicate_checks=duplicates,
    )
    assert duplicates == 0


def test_a_worker_cut_from_the_broker_only(hosts, world):
    """worker-a's heartbeats fail (timeouts, unreachable), no refresh token is sent twice, and
    the connections come back once the link heals.

    The breaker is shared by the whole cluster and counts every worker's failures, so worker-a
    alone opens it although worker-b reaches the broker fine: docs/operations.md ("Several
    machines: what we cut and what held") says why and what the operator does (take the
    worker out, reset the breaker); the test holds the docs to it."""
    ids, due = world["ids"], world["ids"][1]
    since = steady(hosts, ids)
    before = hosts.call("counters")
    hosts.net.cut("worker-a", "broker")
    cut_at, cut_epoch = time.monotonic(), hosts.call("now")
    hosts.call("token_due", due)  # a refresh falls due during the cut, whoever takes it
    seen: dict = {"states": set()}

    def failed_then_opened_or_retaken() -> bool:
        breaker = hosts.call("circuit").get("sandbox", {})
        seen["states"].add(breaker.get("state"))
        after_cut = checks_after(hosts, ids, cut_epoch)
        failed = {pk: min(t for t, ok in cs if not ok) for pk, cs in after_cut.items() if any(not ok for _, ok in cs)}
        retaken = all(any(ok and t > failed[pk] for t, ok in after_cut[pk]) for pk in failed)
        return bool(failed) and (retaken or breaker.get("state") == "open")

    # Lanes go to whichever worker takes them first: the deadline only bounds a failure, and
    # leaves worker-a room to take a lane (and fail it) even when worker-b took the first ones.
    wait_for(failed_then_opened_or_retaken, timeout=150, interval=0.3, what="worker-a's checks failed")
    opened_after = seconds_since(cut_at)
    after_cut = checks_after(hosts, ids, cut_epoch)
    failed_checks = sum(1 for cs in after_cut.values() for _, ok in cs if not ok)
    outage = sum(1 for r in hosts.call("rows", ids).values() if r["status"] == "broker_outage")
    breaker = hosts.call("circuit").get("sandbox", {})
    hosts.net.heal("worker-a", "broker")
    healed = time.monotonic()
    if breaker.get("state") == "open":
        # What the operator does once the worker's network is fixed (Admin › Circuit breakers › Reset).
        hosts.call("circuit_reset")
    steady(hosts, ids)
    recovered = seconds_since(healed)
    after = hosts.call("counters")
    duplicates = duplicate_checks(hosts, ids, since)
    report(
        "worker cut from broker",
        failed_checks_by_the_cut_worker=failed_checks,
        breaker_opened="open" in seen["states"],
        breaker_open_after_s=opened_after if breaker.get("state") == "open" else None,
        breaker_cooldown_s=breaker.get("cooldown"),
        connections_in_broker_outage=outage,
        refresh_reuses=after["rotated_reuses"] - before["rotated_reuses"],
        seconds_to_all_connected_after_heal=recovered,
        duplicate_checks=duplicates,
    )
    assert after["rotated_reuses"] == before["rotated_reuses"]
    assert duplicates == 0
    if "open" in seen["states"]:
        from tests.support import ROOT

        operations = (ROOT / "docs" / "operations.md").read_text()
        assert "A worker that cannot reach a broker opens that broker's breaker for everyone" in operations
    grant_alive(hosts, due)


def _card_event(hosts, connection_id, since) -> bool:
    """The open dashboard got the connection's change: its new card pushed in the event
    (`card-<id>`), or the "re-fetch me" fallback (`conn-<id>`)."""
    names = {f"card-{connection_id}", f"conn-{connection_id}"}
    return any(name in names for _, name in hosts.call("stream_events", since))


def test_web_cut_from_redis(hosts, world):
    """Pages keep answering (the cache misses), live pages fall back to the database poll, and
    both return to Redis by themselves when the link heals."""
    ids, changing = world["ids"], world["ids"][2]
    steady(hosts, ids)
    hosts.call("system_page")  # the operator signed in before
    hosts.call("stream_open")
    wait_for(lambda: hosts.call("stream_events"), timeout=20, what="the live stream open")
    mark = len(hosts.log("web"))
    hosts.net.cut("web", "redis")
    cut_at = time.monotonic()
    page = hosts.call("person_page")
    assert page["status"] == 200, page
    # A change a person sees, made while the web host cannot hear Redis.
    changed_at = time.time()
    hosts.call("status_change", changing, "needs_reauth", "Multi-host test: a change while Redis is cut")
    # Before the hub notices the silent cut, its 15 s backstop poll of the database brings it.
    wait_for(
        lambda: _card_event(hosts, changing, changed_at),
        timeout=30,
        interval=0.2,
        what="the change on the open page while Redis is cut",
    )
    reached_cut = round(time.time() - changed_at, 1)
    hosts.wait_log("web", "connections.live.redis_lost", timeout=45, after=mark)
    noticed = seconds_since(cut_at)
    status = hosts.call("system_page")
    assert status["status"] == 200 and status["services"].get("redis") == "Down", status
    metrics = hosts.call("metrics")
    assert metrics['brokerlink_service_up{service="redis"}'] == 0

    mark = len(hosts.log("web"))
    hosts.net.heal("web", "redis")
    healed = time.monotonic()
    hosts.wait_log("web", "connections.live.redis_subscribed", timeout=30, after=mark)
    resubscribed = seconds_since(healed)
    changed_at = time.time()
    hosts.call("status_change", changing, "connected", "")
    wait_for(
        lambda: _card_event(hosts, changing, changed_at),
        timeout=20,
        interval=0.1,
        what="the change on the open page after the heal",
    )
    reached_healed = round(time.time() - changed_at, 1)
    wait_for(
        lambda: hosts.call("system_page")["services"].get("redis") == "OK", timeout=30, what="Redis OK again"
    )
    hosts.call("stream_close")
    report(
        "web cut from redis",
        page_status_during_cut=page["status"],
        page_seconds_during_cut=page["seconds"],
        seconds_to_notice=noticed,
        change_reached_page_during_cut_s=reached_cut,
        seconds_to_resubscribe_after_heal=resubscribed,
        change_reached_page_after_heal_s=reached_healed,
    )


def test_beat_cut_from_everything_for_three_minutes(hosts, world):
    """Three compressed minutes without beat: no tick, so no cycle; the lag shows on the
    status page and in the metrics; when beat returns no connection is checked twice."""
    ids = world["ids"]
    since = steady(hosts, ids)
    hosts.net.cut("beat")
    cut_at, cut_epoch = time.monotonic(), hosts.call("now")
    # Visible while it lasts: the status page says monitoring stopped, the scrape shows the age.
    wait_for(
        lambda: hosts.call("system_page")["monitoring"] == "stopped",
        timeout=60,
        interval=0.5,
        what="the status page saying monitoring stopped",
    )
    page = hosts.call("system_page")
    metrics = hosts.call("metrics")
    age = hosts.call("now") - metrics["brokerlink_sweep_last_finished_timestamp_seconds"]
    wait_for(lambda: time.monotonic() - cut_at >= 180 / 30, timeout=10, interval=0.1, what="three minutes")
    hosts.net.heal("beat")
    healed, healed_epoch = time.monotonic(), hosts.call("now")
    runs_during = [r for r in hosts.call("sweep_runs", cut_epoch + 1) if r["started_at"] < healed_epoch]

    def caught_up():
        runs = [r for r in hosts.call("sweep_runs", healed_epoch) if r["finished_at"] and r["checked"]]
        return runs and all(any(t > healed_epoch for t, _ in cs) for cs in checks_after(hosts, ids, cut_epoch).values())

    lagging: dict = {}

    def lag_in_metrics() -> bool:
        lagging.update(hosts.call("metrics"))
        return lagging["brokerlink_sweep_last_finished_timestamp_seconds"] > healed_epoch

    wait_for(lag_in_metrics, timeout=30, interval=0.2, what="the first cycle after beat returned, in /metrics")
    wait_for(caught_up, timeout=30, interval=0.3, what="a cycle after beat returned")
    recovered = seconds_since(healed)
    first = next(r for r in hosts.call("sweep_runs", healed_epoch) if r["checked"])
    after = lagging
    per_connection = {pk: len(cs) for pk, cs in checks_after(hosts, ids, cut_epoch).items()}
    duplicates = duplicate_checks(hosts, ids, since)
    report(
        "beat cut from everything",
        cut_seconds=round(healed - cut_at, 1),
        cycles_started_during_cut=len(runs_during),
        status_page=page["text"],
        metrics_last_finished_age_s=round(age, 1),
        first_cycle_lag_s=round(first["max_lag_seconds"], 1),
        metrics_sweep_lag_s=after["brokerlink_sweep_lag_seconds"],
        seconds_to_every_connection_checked_after_heal=recovered,
        duplicate_checks=duplicates,
    )
    assert runs_during == []
    assert page["monitoring"] == "stopped" and "not running" in page["text"]
    # The page says stopped once the last cycle *started* 3 intervals ago; the scrape counts
    # from when it *finished*, a moment later. With beat alive the age stays under 2 intervals.
    assert age > 2 * INTERVAL
    assert first["max_lag_seconds"] > INTERVAL and after["brokerlink_sweep_lag_seconds"] > INTERVAL
    assert duplicates == 0
    assert all(n >= 1 for n in per_connection.values())


def test_database_restarted_during_a_sweep(hosts, world):
    """PostgreSQL stops (fast shutdown) and starts while lanes hold batches and a refresh is in
    flight: workers reconnect, no lease stays stuck, the rotated token is stored."""
    ids, target = world["ids"], world["ids"][3]
    steady(hosts, ids)
    before = hosts.call("counters")
    hosts.call("faults", latency_ms=1000)
    epoch = hosts.call("now")
    hosts.call("token_due", target)
    hosts.call("refresh_sent", target)  # a lane holds a batch, and the refresh is on its way
    restart_at = time.monotonic()
    hosts.db_stop("fast")
    hosts.db_start()
    restarted = seconds_since(restart_at)
    hosts.call("faults", latency_ms=0)
    wait_for(lambda: token_stored(hosts, target, epoch), timeout=40, interval=0.2, what="the token stored")
    stored = seconds_since(restart_at)
    back_epoch = hosts.call("now")
    wait_for(
        lambda: all(any(ok for _, ok in cs) for cs in checks_after(hosts, ids, back_epoch).values()),
        timeout=40,
        interval=0.3,
        what="a full cycle after the restart",
    )
    recovered = seconds_since(restart_at)
    stuck = hosts.call("leases_stuck")
    after = hosts.call("counters")
    for worker in WORKERS:
        assert hosts.processes[worker].alive()
    report(
        "db restarted during a sweep",
        restart_seconds=restarted,
        seconds_to_token_stored=stored,
        seconds_to_full_cycle=recovered,
        leases_stuck=len(stuck),
        refresh_reuses=after["rotated_reuses"] - before["rotated_reuses"],
        token_writes_lost=0,
    )
    assert stuck == []
    assert after["rotated_reuses"] == before["rotated_reuses"]
    grant_alive(hosts, target)


def test_a_worker_cut_from_the_database_past_the_resend_time(hosts, world):
    """The same cut held past `sent + 2 × REFRESH_DEADLINE_SECONDS`: the only copy of the rotated
    token is on the cut-off worker, so the design cannot keep this grant. The other worker
    resends once on purpose, the strict broker revokes the grant for reuse, and the connection
    says what happened and asks for a reconnect (docs/engine.md, a worker killed after sending).
    Last in the module: it leaves that connection needing a reconnect."""
    ids, target = world["ids"], world["ids"][4]
    steady(hosts, ids)
    before = hosts.call("counters")
    hosts.call("faults", latency_ms=1500)
    hosts.call("token_due", target)
    row = hosts.call("refresh_sent", target)
    sender = hosts.host_of_pid(int(row["lease_owner"].split(":")[1]))
    hosts.net.cut(sender, "db")
    cut_at, cut_epoch = time.monotonic(), hosts.call("now")
    assert sender in WORKERS, row
    wait_for(
        lambda: hosts.call("counters")["refreshes"] > before["refreshes"],
        timeout=15,
        what="the broker answered the refresh",
    )
    hosts.call("faults", latency_ms=0)
    wait_for(
        lambda: hosts.call("rows", [target])[target]["status"] == "needs_reauth",
        timeout=60,
        interval=0.3,
        what="the connection asking for a reconnect",
    )
    told_after = seconds_since(cut_at)
    mark = len(hosts.log(sender))
    hosts.net.heal(sender, "db")
    healed = time.monotonic()
    # The cut-off worker's lane finishes once its database is back (its late store included).
    hosts.wait_log(sender, "] succeeded in", timeout=60, after=mark)  # concurrency 1: the stuck lane first
    wait_for(
        lambda: not hosts.call("rows", [target])[target]["refresh_claim_owner"],
        timeout=30,
        what="no refresh claim left",
    )
    row = hosts.call("rows", [target])[target]
    after = hosts.call("counters")
    report(
        "worker cut from db past the resend time",
        sender=sender,
        seconds_to_reconnect_request=told_after,
        refresh_reuses=after["rotated_reuses"] - before["rotated_reuses"],
        grants_lost=1,
        late_store_landed=row["last_refreshed_at"] > cut_epoch,
        seconds_to_worker_back_after_heal=seconds_since(healed),
    )
    assert after["rotated_reuses"] == before["rotated_reuses"] + 1
    assert row["status"] == "needs_reauth"
    assert "earlier refresh that got no answer probably used it" in row["last_error_message"]
