from django.contrib import admin

from omm_project.lib.admin import OmmModelAdmin
from scans.models import Scan


@admin.register(Scan)
class ScanAdmin(OmmModelAdmin):
    """Scans, read-only: started through POST /c/scans or manage.py scan (docs/scans.md)."""

    list_display = ["id", "kind", "source", "state", "items_listed", "created_by", "created_at", "finished_at"]
    list_filter = ["state", "kind"]
    exclude = ["credentials_sealed"]
    readonly_fields = [f.name for f in Scan._meta.fields if f.name != "credentials_sealed"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
