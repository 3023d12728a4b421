"""What kind of process this is, for apps that start background work only where it serves."""

import os
import sys


def is_web_server_process() -> bool:
    """True in a process that serves HTTP (gunicorn/uwsgi worker, runserver's serving child)."""
    # The whole path, so `python -m gunicorn` (argv[0] = .../gunicorn/__main__.py) counts too.
    argv0 = sys.argv[0] if sys.argv else ""
    if "gunicorn" in argv0 or "uwsgi" in argv0:
        return True
    return "runserver" in sys.argv[1:2] and os.environ.get("RUN_MAIN") == "true"
