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
