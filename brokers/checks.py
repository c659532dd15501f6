"""Startup validation of every broker profile and of the BROKERS_FILE (a Django system check)."""

from __future__ import annotations

from django.core import checks


def check_broker_profiles(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    from brokers.custom import read_brokers_file
    from brokers.registry import builtin_profiles, validate_profile

    messages: list[checks.CheckMessage] = []
    for profile in builtin_profiles():
        for problem in validate_profile(profile):
            messages.append(checks.Error(f'broker "{profile.slug}": {problem}', id="brokers.E001"))
    result = read_brokers_file(use_cache=False)
    for error in result.errors:
        messages.append(
            checks.Error(error, hint="See docs/brokers.example.yaml for the format.", id="brokers.E002")
        )
    # A discovery URL that does not answer is an outage, not a mistake in the file: a warning,
    # so `migrate` and the release step still run. The broker is served from the stored
    # metadata meanwhile (or left out until it answers), and discovery is retried.
    for warning in result.warnings:
        messages.append(
            checks.Warning(
                warning, hint="brokers.tasks.discovery_refresh retries it every 5 minutes.", id="brokers.W001"
            )
        )
    return messages
