"""Settings of the standalone sandbox server (`manage.py sandbox_serve`): the main settings,
same database, with only the sandbox mounted at `/`."""

from config.settings import *  # noqa: F401,F403

ROOT_URLCONF = "brokers.sandbox.standalone_urls"
