import os

from django.apps import AppConfig


class MatchingConfig(AppConfig):
    name = "matching"
    verbose_name = "Matching"

    def ready(self) -> None:
        from django.conf import settings

        from exchanges.selectors import index_status_provider_register
        from matching import conf, lookup, metrics, runtime, selectors
        from matching.index import pdq
        from omm_project.core import readiness
        from omm_project.lib.metrics import register_provider
        from omm_project.lib.processes import is_web_server_process
        from reviews.services import retroaction_matcher_register

        readiness.register(runtime.matcher_readiness)
        # Retroaction (reviews, an app below this one) answers "does this match" through lookup.
        retroaction_matcher_register(lookup.ContentsMatcher)
        register_provider(metrics.snapshot_metrics)
        pdq.SEARCH_THREADS = min(settings.OMM_PDQ_SEARCH_THREADS, os.cpu_count() or 1)
        index_status_provider_register(selectors.index_status_all)  # exchanges' readiness report
        # Start loading indexes as soon as a web server process is up, not at the first probe.
        # Never in management commands, Celery workers or tests: they serve no lookups.
        if (
            "matcher" in settings.OMM_ROLES
            and conf.autostart_mode() == "auto"
            and is_web_server_process()
        ):
            runtime.get_runtime().start()
