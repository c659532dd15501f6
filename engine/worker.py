"""What each Celery worker process does once, before its first task."""

import gc


def heap_frozen(**kwargs) -> None:
    """The modules a heartbeat lane runs imported, then everything alive moved out of the
    garbage collector's generations (`gc.freeze`). A check batch allocates enough objects to
    trigger full collections, and each one walked the whole heap of Django, Celery and aiohttp,
    which never becomes garbage (its cost:
    docs/benchmarks.md#where-a-workers-cpu-per-check-goes-issue-25). Objects made later are
    collected as before; reference counting frees the frozen ones as usual. Connected to
    Celery's worker_process_init in EngineConfig.ready()."""
    from engine import check, sweep  # noqa: F401 - imported now, so frozen with the rest

    gc.collect()
    gc.freeze()
