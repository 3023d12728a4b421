from django.apps import AppConfig


class MatchingConfig(AppConfig):
    name = "matching"
    verbose_name = "Matching"

    def ready(self) -> None:
        from django.conf import settings

        from matching import conf, metrics, runtime
        from omm_project.core import readiness
        from omm_project.lib.metrics import register_provider
        from omm_project.lib.processes import is_web_server_process

        readiness.register(runtime.matcher_readiness)
        register_provider(metrics.snapshot_metrics)
        # Start loading indexes as soon as a web server process is up, not at the first probe.
        # Never in management commands, Celery workers or tests: they serve no lookups.
        if (
            "matcher" in getattr(settings, "OMM_ROLES", ())
            and conf.autostart_mode() == "auto"
            and is_web_server_process()
        ):
            runtime.get_runtime().start()
