"""Operators' UI: action rules and webhooks (written through services), logs read-only."""

from django import forms
from django.contrib import admin, messages

from omm_project.lib.admin import OmmModelAdmin, OmmTabularInline
from omm_project.lib.errors import OmmError
from reviews import services
from reviews.choices import SendState
from reviews.models import (
    ActionRule,
    Case,
    CaseEvent,
    CaseMatch,
    ExchangeReport,
    ExchangeSubmission,
    MatchLog,
    Quarantine,
    Review,
    WebhookDelivery,
    WebhookEndpoint,
)
from reviews.services.rules import LABEL_FIELDS, label_list_validate


class ReadOnlyAdmin(OmmModelAdmin):
    """
    Logs and the audit trail are written by the system only: no add, change or delete here (so no
    "Delete selected" action either). Old match log rows go by retention (OMM_MATCH_LOG_RETENTION_DAYS).
    """

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MatchLog)
class MatchLogAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "source",
        "signal_type",
        "bank_name",
        "matched_content_id",
        "distance",
        "platform_content_id",
        "verdict",
    )
    list_filter = ("source", "signal_type", "verdict", "bank_name")
    search_fields = ("=matched_content_id", "platform_content_id", "=signal_value")
    date_hierarchy = "created_at"
    show_full_result_count = False  # COUNT(*) over a large log on every page view is slow


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "reviewed_content_id",
        "bank_name",
        "verdict",
        "reviewer",
        "content_disabled",
        "added_to_bank_name",
    )
    list_filter = ("verdict", "content_disabled")
    search_fields = ("=reviewed_content_id", "reviewer")


# Cases are read-only here: verdicts and assignments go through the API (services.case_decisions),
# which writes the audit trail; the trail itself can never be changed or deleted.


class CaseMatchInline(OmmTabularInline):
    model = CaseMatch
    extra = 0
    can_delete = False
    fields = readonly_fields = ("id", "bank_name", "matched_content_id", "distance", "verdict", "verdict_at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class CaseEventInline(CaseMatchInline):
    model = CaseEvent
    fields = readonly_fields = ("created_at", "actor", "kind", "detail")


@admin.register(Case)
class CaseAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "state",
        "verdict",
        "priority",
        "match_count",
        "platform_content_id",
        "assignee",
        "created_at",
    )
    list_filter = ("state", "verdict")
    search_fields = ("platform_content_id",)
    inlines = (CaseMatchInline, CaseEventInline)


@admin.register(CaseEvent)
class CaseEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "case", "created_at", "actor", "kind")
    list_filter = ("kind",)
    search_fields = ("actor", "=case__id")


@admin.register(Quarantine)
class QuarantineAdmin(ReadOnlyAdmin):
    """Read-only: curators decide through /c/quarantine or the UI's quarantine page (services)."""

    list_display = (
        "id",
        "state",
        "bank_name",
        "matched_content_id",
        "distinct_content_ids",
        "window_hours",
        "quarantined_at",
        "decided_at",
        "decided_by",
    )
    list_filter = ("state", "bank_name")
    search_fields = ("=matched_content_id", "bank_name")


@admin.register(ExchangeReport)
class ExchangeReportAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "kind",
        "exchange_name",
        "api",
        "content_id",
        "signal_type",
        "state",
        "attempts",
        "last_error",
    )
    list_filter = ("state", "kind", "exchange_name")
    actions = ["retry"]

    @admin.action(description="Retry selected dead reports")
    def retry(self, request, queryset) -> None:
        for report in queryset.filter(state=SendState.DEAD):
            services.exchange_report_retry(report=report)
        messages.success(request, "Dead reports were queued again.")


@admin.register(ExchangeSubmission)
class ExchangeSubmissionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "exchange_name",
        "api",
        "signal_type",
        "status",
        "source",
        "submitted_by",
        "state",
        "attempts",
        "result",
        "last_error",
    )
    list_filter = ("state", "status", "source", "exchange_name")
    actions = ["retry"]

    @admin.action(description="Retry selected dead submissions")
    def retry(self, request, queryset) -> None:
        for submission in queryset.filter(state=SendState.DEAD):
            services.exchange_submission_retry(submission=submission)
        messages.success(request, "Dead submissions were queued again.")


class WebhookEndpointForm(forms.ModelForm):
    # A plain field: the service checks the URL (scheme, SSRF rules), and no scheme is assumed.
    url = forms.CharField(max_length=2000)

    events = forms.TypedMultipleChoiceField(
        choices=[(e, e) for e in services.webhooks.SUBSCRIBABLE_EVENTS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Events it also receives besides its rules' matches.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("name", "url", "enabled", "description", "events")

    def clean_url(self) -> str:
        # The SSRF rules, shown next to the field rather than as an error page.
        try:
            return services.webhooks.webhook_url_validate(self.cleaned_data["url"])
        except OmmError as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OmmModelAdmin):
    form = WebhookEndpointForm
    list_display = ("name", "url", "enabled", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("name", "url")
    actions = ["rotate_secret"]

    # Writes go through services: SSRF rules on the URL, a generated secret shown once.
    def save_model(self, request, obj: WebhookEndpoint, form, change: bool) -> None:
        if change:
            current = WebhookEndpoint.objects.get(pk=obj.pk)
            changes = {
                "name": obj.name,
                "url": obj.url,
                "enabled": obj.enabled,
                "description": obj.description,
                "events": list(obj.events or []),
            }
            services.webhook_endpoint_update(endpoint=current, changes=changes)
        else:
            created, secret = services.webhook_endpoint_create(
                name=obj.name,
                url=obj.url,
                enabled=obj.enabled,
                description=obj.description,
                events=list(obj.events or []),
            )
            obj.pk = created.pk
            messages.warning(request, f"Secret of '{created.name}' (shown only now): {secret}")

    def delete_model(self, request, obj: WebhookEndpoint) -> None:
        services.webhook_endpoint_delete(endpoint=obj)

    @admin.action(description="Rotate the secret of selected endpoints")
    def rotate_secret(self, request, queryset) -> None:
        for endpoint in queryset:
            secret = services.webhook_endpoint_rotate_secret(endpoint=endpoint)
            messages.warning(request, f"New secret of '{endpoint.name}' (shown only now): {secret}")


class ActionRuleForm(forms.ModelForm):
    class Meta:
        model = ActionRule
        fields = ("name", "enabled", "description", "webhook", "per_match", "all_banks", "banks", *LABEL_FIELDS)

    def clean(self):
        data = super().clean()
        if not data.get("all_banks") and not data.get("banks"):
            raise forms.ValidationError("A rule must name banks or set all_banks.")
        for field in LABEL_FIELDS:
            try:  # the API's rule (deduplicated), as a message next to the field
                data[field] = label_list_validate(data.get(field), field=field)
            except OmmError:
                self.add_error(field, 'A list of non-empty strings, e.g. ["csam"].')
        return data


@admin.register(ActionRule)
class ActionRuleAdmin(OmmModelAdmin):
    form = ActionRuleForm
    list_display = ("name", "enabled", "per_match", "all_banks", "webhook", "updated_at")
    list_filter = ("enabled", "webhook")
    list_select_related = ("webhook",)
    search_fields = ("name",)
    filter_horizontal = ("banks",)

    # Writes go through services so every process's rule cache is refreshed.
    def save_model(self, request, obj: ActionRule, form, change: bool) -> None:
        data = form.cleaned_data
        fields = {
            "name": data["name"],
            "enabled": data["enabled"],
            "description": data["description"],
            "webhook_id": data["webhook"].pk,
            "per_match": data["per_match"],
            "all_banks": data["all_banks"],
            "banks": [bank.name for bank in data["banks"]],
            **{field: data.get(field) or [] for field in LABEL_FIELDS},
        }
        if change:
            services.action_rule_update(rule=ActionRule.objects.get(pk=obj.pk), changes=fields)
        else:
            obj.pk = services.action_rule_create(**fields).pk

    def save_related(self, request, form, formsets, change: bool) -> None:
        pass  # the service saved the banks

    def delete_model(self, request, obj: ActionRule) -> None:
        services.action_rule_delete(rule=obj)

    def delete_queryset(self, request, queryset) -> None:
        for rule in queryset:
            services.action_rule_delete(rule=rule)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "endpoint",
        "rule_name",
        "state",
        "attempts",
        "last_status_code",
        "next_attempt_at",
    )
    list_filter = ("state", "endpoint")
    list_select_related = ("endpoint",)
    search_fields = ("=message_id", "rule_name")
    actions = ["retry"]
    show_full_result_count = False

    @admin.action(description="Retry selected dead deliveries")
    def retry(self, request, queryset) -> None:
        retried = 0
        for delivery in queryset.filter(state__in=[SendState.DEAD, SendState.SKIPPED]):
            services.webhook_delivery_retry(delivery=delivery)
            retried += 1
        messages.success(request, f"Queued {retried} delivery(ies) again.")
