from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "reviews"
    verbose_name = "Reviews"

    def ready(self) -> None:
        from banks.services import BankHooks, bank_hooks_register
        from omm_project.lib.metrics import register_provider
        from reviews.metrics import quarantine_metrics
        from reviews.services.retroaction import bank_contents_added, retroaction_enabled

        register_provider(quarantine_metrics)

        # New bank content (any writer: the API, file imports, exchange fetches) is replayed
        # against recent lookups; banks sits below reviews, so it calls back through its hooks.
        bank_hooks_register(BankHooks(contents_added=bank_contents_added, contents_added_wanted=retroaction_enabled))
