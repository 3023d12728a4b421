"""Fetch one exchange now, in this process, with a progress bar."""

from django.core.management.base import CommandError
from tqdm import tqdm

from exchanges import selectors, services
from omm_project.lib.commands import OmmCommand, plain, positive_int


class Command(OmmCommand):
    help = "Fetch one exchange now, to the end, with a progress bar (ignores backoff and intervals)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Exchange name (as in GET /c/exchanges).")
        parser.add_argument(
            "--batch-size", type=positive_int, default=None, help="Records per committed batch."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (e.g. in logs).")

    def handle(self, *args, name: str, batch_size: int | None, no_progress: bool, **options) -> None:
        exchange = selectors.exchange_get(name=name)
        # Progress goes to the plain stderr: self.stderr is painted as an error on a terminal.
        # disable=None: a bar only on a terminal (not in a log file or a pipe).
        with tqdm(
            desc=f"{exchange.name} ({exchange.api})",
            unit=" records",
            disable=True if no_progress else None,
            file=plain(self.stderr),
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
