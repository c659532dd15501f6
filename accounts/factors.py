"""Enrolling a second factor ends the person's other sessions (issue 24).

A session signed in before the factor existed (perhaps by whoever knew the password) must not
live on beside it. The session that enrolled stays signed in; every other one fails Django's
session-hash check on its next request (User.session_epoch)."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model, update_session_auth_hash
from django.db.models import F

logger = logging.getLogger(__name__)


def user_sessions_end_others(*, request, user) -> None:
    model = get_user_model()
    model.objects.filter(pk=user.pk).update(session_epoch=F("session_epoch") + 1)
    user.refresh_from_db(fields=["session_epoch"])
    if request is not None and getattr(request, "user", None) is not None and request.user.pk == user.pk:
        update_session_auth_hash(request, user)  # this session carries the new hash
    logger.info("accounts.sessions.others_ended", extra={"user_id": user.pk})


def on_authenticator_added(sender, request=None, user=None, authenticator=None, **kwargs) -> None:
    """allauth.mfa.signals.authenticator_added receiver."""
    if user is not None:
        user_sessions_end_others(request=request, user=user)
