"""The multi-host tests' observer on the `ctl` host: reads `{"fn", "args", "kwargs"}` lines on
stdin, runs that function of tests/multihost/probe.py, answers `@@ {"result": …}` (or
`{"error": traceback}`) on stdout. Django is set up against the cluster's own database."""

import json
import os
import sys
import traceback

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from tests.multihost import probe  # noqa: E402


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            answer = {"result": getattr(probe, request["fn"])(*request["args"], **request["kwargs"])}
        except Exception:  # noqa: BLE001 - reported to the test
            answer = {"error": traceback.format_exc()}
        finally:
            connection.close()  # a database restart must not leave the agent a dead connection
        sys.stdout.write("@@ " + json.dumps(answer, default=str) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
