from django.apps import AppConfig


class ExchangesConfig(AppConfig):
    name = "exchanges"
    verbose_name = "Exchanges"

    def ready(self) -> None:
        from exchanges.metrics import fetch_status_metrics
        from omm_project.lib.metrics import register_provider

        register_provider(fetch_status_metrics)
