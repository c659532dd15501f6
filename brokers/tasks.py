"""Celery tasks of the brokers app. Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="brokers.tasks.discovery_refresh", acks_late=True, ignore_result=True)
def discovery_refresh() -> dict:
    """Safe twice: fetching metadata and storing the last good copy is idempotent."""
    from brokers.custom import discovery_refresh_all

    return discovery_refresh_all()
