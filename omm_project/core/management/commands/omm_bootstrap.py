"""First-run set-up for a local evaluation."""

from pathlib import Path

from django.conf import settings

from omm_project.core.models import ApiKey
from omm_project.core.services import api_key_create
from omm_project.lib.commands import OmmCommand, tcp_port


class Command(OmmCommand):
    help = "First-run set-up for a local evaluation: an all-scopes API key, and where to go."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=tcp_port, default=8000, help="Where omm serves (shown in the hints).")

    def handle(self, *args, port: int, **options) -> None:
        key_file = Path(settings.OMM_DATA_DIR) / "first-api-key.txt"
        if not ApiKey.objects.exists():
            _, raw_key = api_key_create(name="first key", scopes=["hash", "match", "curate"])
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(raw_key + "\n")
            key_file.chmod(0o600)
        base = f"http://127.0.0.1:{port}"
        key_hint = key_file.read_text().strip() if key_file.exists() else "(see manage.py create_api_key)"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"omm is starting on {base}/",
                    f"  API docs:  {base}/openapi/",
                    f"  Admin:     {base}/admin/  (create a login: .venv/bin/python manage.py createsuperuser)",
                    f"  API key:   {key_hint}",
                    f"  Try:       curl -H 'Authorization: Bearer {key_hint}' {base}/c/banks",
                    "",
                ]
            )
        )
