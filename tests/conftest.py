import pytest

# Fixture modules shared across test folders.
pytest_plugins = [
    "tests.fixtures.servers",
]


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(email="ada@example.com", password="correct horse battery")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(email="bob@example.com", password="correct horse battery")
