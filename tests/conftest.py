import pytest

# Fixture modules shared across test folders.
# (sandbox first: the servers module imports it)
pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.services",
    "tests.fixtures.servers",
    "tests.fixtures.receiver",
    "tests.fixtures.fake_broker",
    "tests.tiers",  # marks each test `slow`/`browser` from what it starts (make test-fast)
]


# The longest files, longest first (`--durations` of a whole run, per file). `make test` runs
# files in this order (`--dist loadfile --no-loadscope-reorder`: xdist hands out files in
# collection order), so no long file starts last and becomes the run's tail while the other
# process has nothing left. A file missing here only starts later; nothing else depends on it.
LONGEST_FIRST = [
    "tests/multihost/test_partitions.py",
    "tests/engine/test_never_twice.py",
    "tests/test_make_run.py",
    "tests/engine/test_storage_growth.py",
    "tests/engine/test_rotation_unknown.py",
    "tests/pages/test_browser.py",
    "tests/pages/test_user_pages_browser.py",
    "tests/engine/test_sweep_worker.py",
    "tests/pages/test_browser_truth.py",
    "tests/ops/test_celery_worker.py",
    "tests/engine/test_rotation_unknown_workers.py",
    "tests/engine/test_grant_safety.py",
    "tests/ops/test_scale_out.py",
    "tests/pages/test_browser_polling.py",
    "tests/api/test_schema_property.py",
    "tests/contract/test_oidc_broker.py",
    "tests/ops/test_production.py",
    "tests/ops/test_outages.py",
    "tests/engine/test_grant_safety_workers.py",
    "tests/pages/test_csp.py",
]


@pytest.hookimpl(trylast=True)  # after tests/tiers.py has marked the slow and browser tests
def pytest_collection_modifyitems(config, items):
    """Longest files first, then the other files that start processes, then the fast tier;
    each file's tests stay together and in their order (a stable sort on the file)."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    slow_files = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    slow_files |= {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("browser")}

    def file_order(item) -> tuple[int, int]:
        path = item.nodeid.split("::")[0]
        return (rank.get(path, len(rank)), 0 if path in slow_files else 1)

    items.sort(key=file_order)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, with commits that do not wait for the disk
    (`synchronous_commit = off` for every session on it: this process's and the servers' and
    workers' it starts). A committed row is visible to every other session at once, as before;
    only a crash of the shared PostgreSQL server could lose the last instants of commits, and no
    test crashes it (the outage tests start their own PostgreSQL). Many tests commit thousands
    of times (transactional tests, the storage growth day) and waited for fsync on each."""
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                name = connection.ops.quote_name(connection.settings_dict["NAME"])
                cursor.execute(f"ALTER DATABASE {name} SET synchronous_commit TO off")
                cursor.execute("SET synchronous_commit TO off")  # this session started before it


def pytest_configure(config):
    _flush_deletes_rows()


def _flush_deletes_rows():
    """After each transactional test Django's `flush` empties every table with one TRUNCATE of
    all of them. On PostgreSQL that gives each table, index and TOAST table a new file, far
    slower than deleting the few rows a test wrote (docs/development.md, "How long"). Same
    outcome: every table empty, in one transaction (Django's foreign keys are deferred, so the
    order does not matter). A test that asks for its sequences reset (`reset_sequences=True`)
    still gets Django's TRUNCATE ... RESTART IDENTITY."""
    from django.core.management.commands import flush

    truncate = flush.sql_flush

    def sql_flush(style, connection, reset_sequences=True, allow_cascade=False):
        if connection.vendor != "postgresql" or reset_sequences:
            return truncate(style, connection, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
        return [f"DELETE FROM {connection.ops.quote_name(table)}" for table in sorted(tables)]  # noqa: S608 - model tables

    flush.sql_flush = sql_flush


@pytest.fixture(autouse=True)
def _force_login_records_second_factor():
    """See tests.support.force_login_passes_enrolled_factor (staff pages check the session's factor)."""
    from django.contrib.auth.signals import user_logged_in

    from tests.support import force_login_passes_enrolled_factor

    user_logged_in.connect(force_login_passes_enrolled_factor, dispatch_uid="tests.force_login_factor")
    yield
    user_logged_in.disconnect(dispatch_uid="tests.force_login_factor")


@pytest.fixture
def admin_user(db, django_user_model):
    """pytest-django's admin (and so `admin_client`), with the second factor staff need here."""
    from tests.support import with_second_factor

    admin = django_user_model.objects.create_superuser(email="admin@example.com", password="password")
    return with_second_factor(admin)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(email="ada@example.com", password="correct horse battery")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(email="bob@example.com", password="correct horse battery")


def pytest_sessionfinish(session, exitstatus):
    """Remove this run's private var folder (embedded broker, cache, child-process logs)
    unless the run failed, when the logs are worth keeping."""
    import shutil

    from django.conf import settings

    if exitstatus == 0 and str(settings.VAR_DIR).startswith("/tmp/brokerlink-test-"):  # noqa: S108
        shutil.rmtree(settings.VAR_DIR, ignore_errors=True)
