"""Build index snapshots now, in this process (HMA's `flask build_indices`)."""

from matching import services
from omm_project.lib import pytx
from omm_project.lib.commands import OmmCommand


class Command(OmmCommand):
    help = "Build the index snapshot of each enabled signal type that is out of date (or --force)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("signal_types", nargs="*", help="Signal types (default: all enabled).")
        parser.add_argument("--force", action="store_true", help="Rebuild even when up to date.")

    def handle(self, *args, signal_types: list[str], force: bool, **options) -> None:
        names = signal_types or list(pytx.signal_types())
        for name in names:  # every name checked before any build starts
            pytx.signal_type_get(name)
        for name in names:
            snapshot = services.index_build(signal_type=name, force=force)
            if snapshot is None:
                self.stdout.write(f"{name}: up to date (or another build is running)")
            else:
                self.stdout.write(
                    f"{name}: snapshot {snapshot.pk}, {snapshot.signal_count} signals, "
                    f"{snapshot.size_bytes} bytes, {snapshot.duration_seconds:.2f}s"
                )
