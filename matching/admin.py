from django.contrib import admin

from matching.models import BankMatchSettings, IndexBuildLock, IndexSnapshot
from matching.services import bank_match_settings_update
from omm_project.lib.admin import OmmModelAdmin


@admin.register(IndexSnapshot)
class IndexSnapshotAdmin(OmmModelAdmin):
    """Index builds, read-only: they are written by the build task."""

    list_display = [
        "id",
        "signal_type",
        "status",
        "signal_count",
        "size_bytes",
        "built_at",
        "duration_seconds",
    ]
    list_filter = ["signal_type", "status"]
    readonly_fields = [f.name for f in IndexSnapshot._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(IndexBuildLock)
class IndexBuildLockAdmin(OmmModelAdmin):
    """Build locks; an operator may delete a stuck one (its lease also lapses by itself)."""

    list_display = ["signal_type", "owner", "expires_at"]
    readonly_fields = ["signal_type", "owner", "expires_at"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(BankMatchSettings)
class BankMatchSettingsAdmin(OmmModelAdmin):
    """Per-bank PDQ thresholds; saved through the service so matchers pick them up."""

    list_display = ["bank", "pdq_threshold", "updated_at"]

    def save_model(self, request, obj, form, change) -> None:
        bank_match_settings_update(bank=obj.bank, pdq_threshold=obj.pdq_threshold)

    def delete_model(self, request, obj) -> None:
        bank_match_settings_update(bank=obj.bank, pdq_threshold=None)
