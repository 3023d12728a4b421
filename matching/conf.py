"""
What matching computes from its settings. The settings themselves, with their defaults, are in
omm_project/settings.py ("Matching"); code reads them from django.conf.settings.
"""

import sys

from django.conf import settings

from matching.shared_index import default_directory


def shared_directory() -> str:
    """Where matchers share PDQ indexes, or "" when they don't (see OMM_MATCHER_SHARED_DIR)."""
    value = str(settings.OMM_MATCHER_SHARED_DIR).strip()
    return default_directory() if value.lower() == "auto" else value


def autostart_mode() -> str:
    """How the matcher runtime starts: "auto", "lazy" or "off" (see OMM_MATCHER_AUTOSTART)."""
    mode = str(settings.OMM_MATCHER_AUTOSTART).strip().lower()
    if mode in ("0", "false", "no"):
        mode = "off"
    if mode in ("1", "true", "yes"):
        mode = "auto"
    if mode == "auto" and "pytest" in sys.modules:
        return "off"
    return mode if mode in ("auto", "lazy", "off") else "auto"
