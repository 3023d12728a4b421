from django.core.management.base import BaseCommand, CommandError

from omm_project.core.choices import Scope
from omm_project.core.services import api_key_create
from omm_project.lib.errors import OmmError


class Command(BaseCommand):
    help = "Create an API key and print it (it is shown only once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Who or what uses the key.")
        parser.add_argument(
            "--scopes",
            default=",".join(Scope.values),
            help=f"Comma-separated subset of {','.join(Scope.values)} (default: all).",
        )

    def handle(self, *args, name: str, scopes: str, **options) -> None:
        try:
            _, raw_key = api_key_create(name=name, scopes=[s.strip() for s in scopes.split(",") if s.strip()])
        except OmmError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(raw_key)
