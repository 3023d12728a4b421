from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from exchanges import selectors, services
from omm_project.lib.errors import OmmError


class Command(BaseCommand):
    help = "Fetch one exchange now, to the end, with a progress bar (ignores backoff and intervals)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Exchange name (as in GET /c/exchanges).")
        parser.add_argument("--batch-size", type=int, default=None, help="Records per committed batch.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (e.g. in logs).")

    def handle(self, *args, name: str, batch_size: int | None, no_progress: bool, **options) -> None:
        try:
            exchange = selectors.exchange_get(name=name)
        except OmmError as exc:
            raise CommandError(exc.message) from None
        with tqdm(
            desc=f"{exchange.name} ({exchange.api})", unit=" records", disable=no_progress, file=self.stderr
        ) as bar:
            outcome = services.exchange_fetch(
                exchange_id=exchange.pk,
                force=True,
                batch_size=batch_size,
                time_limit=None,
                progress=bar.update,
            )
        if outcome.result == "failed":
            raise CommandError(f"fetch failed after {outcome.records} records: {outcome.error}")
        if outcome.result == "locked":
            raise CommandError("another fetch of this exchange is running; try again when it ends")
        self.stdout.write(
            f"{exchange.name}: {outcome.result}, {outcome.records} records, up to date: {outcome.up_to_date}"
        )
