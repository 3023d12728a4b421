from django.contrib import admin, messages
from django.urls import reverse_lazy

from omm_project.core.models import ApiKey
from omm_project.core.services import api_key_revoke
from omm_project.lib.admin import OmmModelAdmin

# omm has no site at "/" (every unknown path is a JSON 404): "View site" opens the API docs.
# reverse_lazy resolves per request, so a deployment prefix (SCRIPT_NAME) is kept.
admin.site.site_url = reverse_lazy("openapi-ui")
admin.site.site_header = "omm administration"
admin.site.site_title = "omm admin"


@admin.register(ApiKey)
class ApiKeyAdmin(OmmModelAdmin):
    list_display = ("name", "prefix", "scopes", "created_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "digest", "created_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        # Keys are created with `manage.py create_api_key`, which shows the raw key once.
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset) -> None:
        for key in queryset:
            api_key_revoke(key=key)
        messages.success(request, f"Revoked {queryset.count()} key(s).")
