"""
gunicorn settings for every omm web process. gunicorn reads ./gunicorn.conf.py by default, so the
Procfile, scripts/docker-entrypoint.sh and the documented commands (all run from the checkout, or
/app in the image) pick this file up without a flag.
"""

import os

# The peers whose forwarding headers gunicorn believes: SCRIPT_NAME and PATH_INFO (which move the
# path Django routes) and X-Forwarded-Proto/-Ssl (the scheme). gunicorn's own default trusts
# 127.0.0.1 and ::1, that is anything on the box, and anything a local proxy passes through from
# a client. omm needs none of them, so it trusts no peer. Behind a reverse proxy that sets (and
# strips from clients) these headers, name it: FORWARDED_ALLOW_IPS=10.0.0.5 (addresses or CIDRs,
# comma-separated; gunicorn's own variable). docs/deployment.md, "Reverse proxy".
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")
