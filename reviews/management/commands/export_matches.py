"""manage.py export_matches: the match log as CSV or JSON lines, for a review team."""

from django.core.management.base import CommandParser

from omm_project.lib.commands import OmmCommand
from reviews import export, selectors
from reviews.api.serializers import match_filters


class Command(OmmCommand):
    help = "Export the match log (oldest first) as CSV or JSON lines, filtered like GET /c/matches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=sorted(export.FORMATS), default="csv")
        parser.add_argument("--since", help="ISO 8601 date/time or unix seconds (inclusive).")
        parser.add_argument("--until", help="ISO 8601 date/time or unix seconds (exclusive).")
        parser.add_argument("--bank", help="Bank name (at match time, or current).")
        parser.add_argument(
            "--reviewed", choices=["true", "false"], help="Only reviewed or unreviewed matches."
        )
        parser.add_argument("--verdict", help="true_positive or false_positive.")
        parser.add_argument(
            "--suppressed", choices=["true", "false"], help="Only matches of suppressed submissions, or the others."
        )
        parser.add_argument("-o", "--output", help="File to write (default: standard output).")

    def handle(self, *args, **options) -> None:
        names = ("since", "until", "bank", "reviewed", "verdict", "suppressed")
        params = {k: options[k] for k in names if options.get(k)}
        filters = match_filters(params)  # the API's parameters and answers
        queryset = selectors.match_log_list(filters=filters, newest_first=False)
        lines = export.export_lines(queryset, options["format"])
        if not options.get("output"):
            for line in lines:
                self.stdout.write(line, ending="")
            return
        written = 0
        with open(options["output"], "w", encoding="utf-8", newline="") as out:
            for line in lines:
                out.write(line)
                written += 1
        if options["format"] == "csv":
            written -= 1  # the header
        self.stdout.write(f"wrote {written} match(es) to {options['output']}")
