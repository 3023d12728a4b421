"""Operators' UI for exchanges. Credentials show only whether they are set, never a value."""

from django.contrib import admin, messages
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Q

from exchanges import services
from exchanges.models import ExchangeConfig, ExchangeCredential, ExchangeFetchStatus, ExchangeItem
from exchanges.services import item_key_hash
from omm_project.lib.admin import OmmModelAdmin, OmmStackedInline
from omm_project.lib.fetch_keys import fetch_key_display, fetch_key_search_identities


def _fetch_status(exchange: ExchangeConfig) -> ExchangeFetchStatus | None:
    """The exchange's fetch status row (joined by list_select_related), None before its first fetch."""
    try:
        return exchange.fetch_status
    except ObjectDoesNotExist:
        return None


class ExchangeFetchStatusInline(OmmStackedInline):
    model = ExchangeFetchStatus
    can_delete = False
    fields = (
        "up_to_date",
        "last_fetch_succeeded",
        "last_fetch_complete_at",
        "checkpoint_ts",
        "checkpoint",
        "last_error_at",
        "last_error_message",
        "consecutive_failures",
        "next_attempt_at",
        "running_fetch_started_at",
        "lock_expires_at",
        "last_full_read_complete_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ExchangeConfig)
class ExchangeConfigAdmin(OmmModelAdmin):
    list_display = (
        "name",
        "api",
        "fetching_enabled",
        "report_seen_enabled",
        "up_to_date",
        "last_fetch_succeeded",
        "updated_at",
    )
    list_filter = ("api", "fetching_enabled")
    list_select_related = ("fetch_status",)
    search_fields = ("name",)
    fields = (
        "name",
        "api",
        "typed_config",
        "bank",
        "fetching_enabled",
        "report_seen_enabled",
        "report_true_positive_enabled",
        "report_false_positive_enabled",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("name", "api", "typed_config", "bank", "created_at", "updated_at")
    inlines = [ExchangeFetchStatusInline]
    actions = ["fetch_now"]

    def has_add_permission(self, request) -> bool:
        return False  # created through the API, which validates the typed config and makes the bank

    @admin.display(boolean=True)
    def up_to_date(self, exchange: ExchangeConfig) -> bool | None:
        status = _fetch_status(exchange)
        return status.up_to_date if status else None

    @admin.display(boolean=True)
    def last_fetch_succeeded(self, exchange: ExchangeConfig) -> bool | None:
        status = _fetch_status(exchange)
        return status.last_fetch_succeeded if status else None

    # Writes go through services (validation, enqueueing, the bank).
    def save_model(self, request, obj: ExchangeConfig, form, change: bool) -> None:
        current = ExchangeConfig.objects.get(pk=obj.pk)
        changes = {switch: getattr(obj, switch) for switch in services.EXCHANGE_SWITCHES}
        services.exchange_update(exchange=current, changes=changes)

    def delete_model(self, request, obj: ExchangeConfig) -> None:
        services.exchange_delete(exchange=obj)

    def delete_queryset(self, request, queryset) -> None:
        for exchange in queryset:
            services.exchange_delete(exchange=exchange)

    @admin.action(description="Fetch selected exchanges now")
    def fetch_now(self, request, queryset) -> None:
        for exchange in queryset.filter(fetching_enabled=True):
            services.exchange_fetch_enqueue(exchange=exchange)
        messages.success(request, "Fetches enqueued.")


@admin.register(ExchangeCredential)
class ExchangeCredentialAdmin(OmmModelAdmin):
    # `sealed` is deliberately absent: not even the ciphertext is shown.
    list_display = ("api", "created_at", "updated_at")
    fields = ("api", "created_at", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False  # set through POST /c/exchanges/api/<api> or `manage.py exchange_credentials`

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ExchangeItem)
class ExchangeItemAdmin(OmmModelAdmin):
    list_display = ("id", "exchange", "key", "content", "updated_at")
    list_filter = ("exchange",)
    list_select_related = ("exchange",)
    search_fields = ("fetch_key",)  # exact key, through its indexed hash (get_search_results)
    fields = ("exchange", "key", "value", "content", "seen_generation", "created_at", "updated_at")
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="fetch key", ordering="fetch_key")
    def key(self, item: ExchangeItem) -> str:
        return fetch_key_display(item.fetch_key)  # rows stored before keys were formatted, too

    def get_search_results(self, request, queryset, search_term: str):
        term = search_term.strip()
        if not term:
            return queryset, False
        query = Q(key_hash__in=[item_key_hash(identity) for identity in fetch_key_search_identities(term)])
        if term.isdigit():
            query |= Q(content_id=int(term))
        return queryset.filter(query), False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # written by fetches only
