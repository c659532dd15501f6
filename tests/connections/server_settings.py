"""Settings of the brokerlink server the connection and contract tests start.

The main settings plus two test knobs read from the environment: a short broker read
timeout (so "the broker is slow" takes seconds) and which brokers the sandbox emulates.
"""

import os

from config.env import env_list
from config.settings import *  # noqa: F403

BROKER_READ_TIMEOUT_SECONDS = float(os.environ.get("BROKER_READ_TIMEOUT_SECONDS", "10"))
SANDBOX_EMULATE_BROKERS = env_list("SANDBOX_EMULATE_BROKERS")
# The fast test hasher first, as in the test process (config/settings_test.py): the users it
# creates are verified without an upgrade to PBKDF2 at sign-in, and the server's own (the sandbox
# demo login) are fast too. PBKDF2's million iterations per sign-in were a large share of the
# suite's CPU; how passwords are stored is not what these servers are started to test.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "django.contrib.auth.hashers.PBKDF2PasswordHasher"]
# Every test signs in from 127.0.0.1: allauth's per-IP login rate limit would answer 429.
ACCOUNT_RATE_LIMITS = False
# Tests that read what the server emails point this at a folder (filebased backend).
if os.environ.get("EMAIL_FILE_PATH"):
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = os.environ["EMAIL_FILE_PATH"]
