from django.apps import AppConfig


class ExchangesConfig(AppConfig):
    name = "exchanges"
    verbose_name = "Exchanges"

    def ready(self) -> None:
        from banks.services import BankHooks, bank_hooks_register
        from exchanges.metrics import fetch_status_metrics
        from exchanges.services import bank_purge_batch, bank_purge_finish, bank_rename_refusal
        from omm_project.lib.metrics import register_provider

        register_provider(fetch_status_metrics)
        # An exchange's bank keeps the exchange's name, and its deletion takes the items along.
        bank_hooks_register(
            BankHooks(
                rename_refusal=bank_rename_refusal, purge_batch=bank_purge_batch, purge_finish=bank_purge_finish
            )
        )
