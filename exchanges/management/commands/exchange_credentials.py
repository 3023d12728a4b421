"""Set or clear an exchange API's credentials from standard input."""

import json
import sys

from django.core.management.base import CommandError

from exchanges import apis, selectors, services
from omm_project.lib.commands import OmmCommand


class Command(OmmCommand):
    help = (
        'Set or clear an exchange API\'s credentials. The JSON object (e.g. {"user": ..., "password": ...}) '
        "is read from standard input, so it stays out of shell history and process lists."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("api", help="Exchange API name, e.g. ncmec, stop_ncii, fb_threatexchange.")
        parser.add_argument("--unset", action="store_true", help="Clear the stored credentials.")

    def handle(self, *args, api: str, unset: bool, **options) -> None:
        api_cls = apis.api_get(api)
        if unset:
            raw: object = {}
        else:
            try:
                raw = json.loads(sys.stdin.read())
            except ValueError:
                raise CommandError("standard input is not a JSON object") from None
            if not isinstance(raw, dict):
                raise CommandError("standard input is not a JSON object")
            if not raw:
                raise CommandError("empty credentials; use --unset to clear them")
        services.exchange_api_credentials_set(api_cls=api_cls, credential_json=raw)
        state = selectors.exchange_api_credential_state(api_cls=api_cls)
        self.stdout.write(f"{api}: credentials {'set' if state['has_set_authentification'] else 'cleared'}")
