"""Engine knobs: Django settings `ENGINE_<NAME>` win, then the environment variable
`BROKERLINK_ENGINE_<NAME>`, then the default here. Per-broker values (interval, margin,
backoff, circuit) live on the broker profile, not here."""

from __future__ import annotations

from common.tunables import tunable

DEFAULTS: dict[str, float] = {
    # Connections claimed per batch; one batch is checked concurrently, then written at once.
    "BATCH_SIZE": 500,
    # Concurrent heartbeat requests per worker process.
    "CONCURRENCY": 200,
    # Per-request timeout (seconds) for heartbeats; refreshes use broker_client's own timeout.
    "HTTP_TIMEOUT": 10,
    # How long a claim holds a connection; longer than one batch's worst case (refresh +
    # heartbeat + retried heartbeat at the timeout), so only a dead worker's lease expires.
    "LEASE_SECONDS": 120,
    # A sweep stops claiming new batches after this long, leaving the rest to the next tick.
    "SWEEP_BUDGET_SECONDS": 50,
    # Lanes (sweep tasks any worker process may take) in flight at once across every worker:
    # the beat's tick sends at most this many minus those still running, so a backlog never
    # floods the queue. More lanes than worker processes only queue (and expire unused).
    "SWEEP_LANES": 8,
    # Due connections that justify one more lane (a lane claims batches until nothing is due,
    # so one lane per worker process is enough; this only keeps a quiet cycle to one task).
    "LANE_CONNECTIONS": 2000,
    # Heartbeats in flight at one broker across the whole cluster: each lane gets
    # BROKER_CONCURRENCY / SWEEP_LANES of them per broker, and lanes are capped cluster-wide.
    "BROKER_CONCURRENCY": 800,
    # Threads refreshing tokens at once per worker process (each holds a DB connection only
    # while it reads or stores, never across the broker call).
    "REFRESH_THREADS": 8,
    # At most this many of them on one broker, so one stalled broker cannot starve the others.
    "REFRESH_THREADS_PER_BROKER": 4,
    # How long a batch waits for its refreshes before it goes on without them (they finish
    # on their own threads).
    "REFRESH_WAIT_SECONDS": 10,
    # How long a refresh of a possibly single-use refresh token (every one, unless the broker is
    # proven non-rotating: brokers.rotation) waits for the broker's answer, unless the
    # profile says otherwise: far longer than the heartbeat timeout, because a request given up
    # on may still be processed, and sending the same token again then revokes the grant.
    "REFRESH_DEADLINE_SECONDS": 180,
    # A sweep also takes connections falling due this many seconds after it claims a batch, so
    # the check after next is not a whole sweep late (with the 5 % jitter: within 60 ± 6 s).
    "SWEEP_LOOKAHEAD_SECONDS": 3,
    # Writes of a batch's results (and of refreshed tokens) are retried this long when the
    # database refuses, instead of being dropped.
    "WRITE_RETRY_SECONDS": 30,
    # A recovered connection must pass this many checks before the "recovered" email.
    "NOTIFY_AFTER_CHECKS": 3,
    # Failed and status-changing checks (CheckResult rows) are kept this long.
    "CHECKRESULT_RETENTION_DAYS": 7,
    # UptimeDay keeps its 24 hours this long (longer than the 90-day uptime export, which
    # needs hours to cut days in the person's time zone), and its day totals this long.
    "HOURLY_RETENTION_DAYS": 92,
    "DAILY_RETENTION_DAYS": 400,
    # CheckTally rows (per broker and minute: metrics, alerts, the system page; none looks
    # back more than an hour by default) are kept this long, at least the metrics window + 1 h.
    "TALLY_RETENTION_HOURS": 3,
    # A refresh token unused this long is refreshed anyway, before the broker forgets it.
    "IDLE_REFRESH_DAYS": 7,
    # Checks of the current grant needed before a health score is shown ("not enough data yet").
    "HEALTH_MIN_CHECKS": 5,
    # After the retry budget, a failing connection is still checked (and its tokens refreshed)
    # at this cadence, in seconds, until the broker answers again.
    "SLOW_PROBE_SECONDS": 300,
    # A passed check slower than this many times the broker's baseline latency shows as "slow".
    "SLOW_FACTOR": 4,
    # A connection this many seconds past its next_check_at is overdue (missed heartbeat).
    "OVERDUE_GRACE_SECONDS": 120,
}


def engine_setting(name: str) -> float:
    return tunable("ENGINE", name, DEFAULTS)
