"""Create an API key and print it once."""

from django.core.management.base import CommandError

from omm_project.core.choices import Scope
from omm_project.core.services import api_key_create, api_key_digest, api_key_generate
from omm_project.lib.commands import OmmCommand


class Command(OmmCommand):
    help = "Create an API key and print it (it is shown only once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Who or what uses the key.")
        parser.add_argument(
            "--scopes",
            default=",".join(Scope.values),
            help=(
                f"Comma-separated subset of {','.join(Scope.values)} (default: all): "
                + "; ".join(f"{value}: {label}" for value, label in Scope.choices)
                + ". A Prometheus scraper needs only `metrics`."
            ),
        )
        parser.add_argument(
            "--static",
            action="store_true",
            help="Don't store the key; print it and its OMM_STATIC_API_KEYS entry (for hashers).",
        )

    def handle(self, *args, name: str, scopes: str, static: bool, **options) -> None:
        scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
        if static:
            if not scope_list or set(scope_list) - set(Scope.values) or ":" in name or "," in name:
                raise CommandError(f"scopes must be a subset of {Scope.values}; name without ':' or ','")
            raw_key = api_key_generate()
            self.stdout.write(raw_key)
            # On stderr so stdout holds the key alone (scripts); plain, as it is not an error.
            self.stderr.write(
                f"OMM_STATIC_API_KEYS entry: {name}:{'+'.join(scope_list)}:{api_key_digest(raw_key)}",
                style_func=lambda text: text,
            )
            return
        _, raw_key = api_key_create(name=name, scopes=scope_list)
        self.stdout.write(raw_key)
