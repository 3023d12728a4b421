"""Set or clear an exchange API's credentials from standard input."""

import sys

from django.core.management.base import CommandError

from exchanges import apis, selectors, services
from omm_project.lib.commands import OmmCommand
from omm_project.lib.errors import InvalidInput
from omm_project.lib.inputs import json_loads


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
            try:  # the API's JSON rules: no NaN, 1e999, NUL or lone surrogate reaches the credentials
                raw = json_loads(sys.stdin.read())
            except InvalidInput as exc:
                raise CommandError(f"standard input is not a valid JSON object: {exc.message}") from None
            if not isinstance(raw, dict):
                raise CommandError("standard input is not a JSON object")
            if not raw:
                raise CommandError("empty credentials; use --unset to clear them")
        services.exchange_api_credentials_set(api_cls=api_cls, credential_json=raw)
        state = selectors.exchange_api_credential_state(api_cls=api_cls)
        self.stdout.write(f"{api}: credentials {'set' if state['has_set_authentification'] else 'cleared'}")
