"""
The base of omm's management commands: one place that turns what a user got wrong into a clean
message and exit status 1 (CommandError) instead of a traceback, and keeps human output plain.
"""

import argparse
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from omm_project.lib.errors import OmmError


class OmmCommand(BaseCommand):
    """
    BaseCommand whose domain errors (OmmError: a bad name, value or state, as the API would answer
    4xx) and unreadable or unwritable files (OSError with a file name) become CommandError.
    Anything else is a bug and keeps its traceback.
    """

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except OmmError as exc:
            raise CommandError(exc.message) from None
        except OSError as exc:
            if exc.filename is None:
                raise
            raise CommandError(f"{exc.filename}: {exc.strerror or exc}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (a batch size, a worker count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def tcp_port(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1-65535)")
    return value


def plain(stream: OutputWrapper) -> IO[str]:
    """
    The stream under a command's stdout/stderr wrapper, for progress bars: Django paints all of
    self.stderr in the error style on a terminal, and progress is not an error.
    """
    return getattr(stream, "_out", stream)
