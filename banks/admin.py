"""Operators' UI for banks: search by hash or content id, filters, bulk enable/disable."""

import datetime

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.utils import timezone

from banks import services
from banks.models import Bank, BankContent, ContentSignal
from omm_project.lib.admin import OmmModelAdmin, OmmTabularInline
from omm_project.lib.errors import OmmError

REVIEW_SETTINGS = ("severity", "suppressing", "quarantine_threshold", "quarantine_window_hours")


class BankForm(forms.ModelForm):
    class Meta:
        model = Bank
        fields = ("name", "matching_enabled_ratio", "labels", *REVIEW_SETTINGS)

    def clean_quarantine_threshold(self) -> int | None:
        # The API's rule (null or >= 1; the column also takes 0), as a message next to the field.
        try:
            return services.quarantine_threshold_validate(self.cleaned_data.get("quarantine_threshold"))
        except OmmError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_quarantine_window_hours(self) -> int:
        try:
            return services.quarantine_window_hours_validate(self.cleaned_data.get("quarantine_window_hours"))
        except OmmError as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(Bank)
class BankAdmin(OmmModelAdmin):
    form = BankForm
    list_display = (
        "name",
        "state",
        "matching_enabled_ratio",
        "labels",
        "severity",
        "suppressing",
        "quarantine_threshold",
        "content_count",
        "updated_at",
    )
    list_filter = ("severity", "suppressing")
    search_fields = ("name",)
    readonly_fields = ("created_at", "updated_at", "deleting_since")
    fieldsets = (
        (None, {"fields": ("name", "matching_enabled_ratio", "labels")}),
        (
            "Review settings (docs/reviews.md): severity, suppression, noisy-hash quarantine",
            {"fields": REVIEW_SETTINGS},
        ),
        ("History", {"fields": ("created_at", "updated_at", "deleting_since")}),
    )

    def get_queryset(self, request):
        # Banks being deleted in the background too, so their progress shows (content count).
        return Bank.all_objects.annotate(_content_count=Count("contents"))

    @admin.display(ordering="deleting_since", description="state")
    def state(self, bank: Bank) -> str:
        if bank.deleting_since is None:
            return "active"
        return f"deleting since {bank.deleting_since:%Y-%m-%d %H:%M:%S} UTC"

    def has_change_permission(self, request, obj: Bank | None = None) -> bool:
        # Django's permission first: this only takes a bank being deleted out of editing.
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or obj.deleting_since is None)

    def get_deleted_objects(self, objs, request):
        # The default page lists every row the cascade would delete (millions of contents, all
        # loaded); the deletion runs in the background instead, so say that.
        names = [f"{bank} and all its content (deleted in the background)" for bank in objs]
        return names, {}, set(), []

    @admin.display(ordering="_content_count", description="content")
    def content_count(self, bank: Bank) -> int:
        return bank._content_count

    # Writes go through services so matchers hear about them (BankChange) and rules are checked.
    def save_model(self, request, obj: Bank, form, change: bool) -> None:
        if change:
            services.bank_update(bank=obj, name=obj.name, matching_enabled_ratio=obj.matching_enabled_ratio,
                                 labels=obj.labels)
        else:
            created = services.bank_create(name=obj.name, matching_enabled_ratio=obj.matching_enabled_ratio,
                                           labels=obj.labels)
            obj.pk = created.pk
        changed = [name for name in REVIEW_SETTINGS if name in form.changed_data]
        if changed:
            services.bank_review_settings_update(bank=obj, changes={name: getattr(obj, name) for name in changed})

    def delete_model(self, request, obj: Bank) -> None:
        services.bank_delete(bank=obj)

    def delete_queryset(self, request, queryset) -> None:
        for bank in queryset:
            services.bank_delete(bank=bank)


class ContentSignalInline(OmmTabularInline):
    model = ContentSignal
    extra = 0
    fields = ("signal_type", "signal_value", "created_at")
    readonly_fields = ("signal_type", "signal_value", "created_at")
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # signals are added through the API, which validates them


def matching_state(disable_until_ts: int, *, now: datetime.datetime | None = None) -> str:
    """"enabled", "disabled" (for good), or "disabled until <UTC time>" ("enabled since" once past)."""
    if disable_until_ts == BankContent.ENABLED:
        return "enabled"
    if disable_until_ts == BankContent.DISABLED_FOREVER:
        return "disabled"
    try:
        until = datetime.datetime.fromtimestamp(disable_until_ts, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):  # past year 9999: disabled for all practical purposes
        return f"disabled until unix time {disable_until_ts}"
    when = until.strftime("%Y-%m-%d %H:%M:%S UTC")
    if until <= (now or timezone.now()):
        return f"enabled (was disabled until {when})"
    return f"disabled until {when}"


class EnabledFilter(admin.SimpleListFilter):
    title = "matching"
    parameter_name = "enabled"

    def lookups(self, request, model_admin):
        return (("yes", "enabled"), ("no", "disabled (for good)"), ("until", "disabled until a time"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(disable_until_ts=BankContent.ENABLED)
        if self.value() == "no":
            return queryset.filter(disable_until_ts=BankContent.DISABLED_FOREVER)
        if self.value() == "until":
            return queryset.filter(disable_until_ts__gt=BankContent.ENABLED)
        return queryset


@admin.register(BankContent)
class BankContentAdmin(OmmModelAdmin):
    list_display = ("id", "bank", "matching", "platform_content_id", "note", "updated_at")
    list_filter = (EnabledFilter, "bank")
    list_select_related = ("bank",)
    search_fields = ("=id", "platform_content_id", "=signals__signal_value", "note")
    readonly_fields = ("matching", "created_at", "updated_at", "bank")
    inlines = [ContentSignalInline]
    actions = ["enable", "disable"]
    show_full_result_count = False  # COUNT(*) on millions of rows per page view is slow

    def has_add_permission(self, request) -> bool:
        return False  # content is added through the API (hashing, validation)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "disable_until_ts" in form.base_fields:
            form.base_fields["disable_until_ts"].help_text = (
                "HMA's value: 1 = enabled, 0 = disabled for good, a unix time = disabled until then."
            )
        return form

    @admin.display(ordering="disable_until_ts", description="matching")
    def matching(self, content: BankContent) -> str:
        """disable_until_ts in words: the raw 0/1/unix-time encoding is HMA's, not a reader's."""
        return matching_state(content.disable_until_ts)

    def save_model(self, request, obj: BankContent, form, change: bool) -> None:
        # The form's values, checked by the API's validators (the form only knows the column types).
        changes = {
            "disable_until_ts": services.disable_until_ts_validate(obj.disable_until_ts),
            "note": services.note_validate(obj.note),
            "labels": services.labels_validate(obj.labels),
        }
        services.bank_content_update(content=obj, changes=changes)

    def delete_model(self, request, obj: BankContent) -> None:
        services.bank_content_delete(content=obj)

    def delete_queryset(self, request, queryset) -> None:
        for content in queryset:
            services.bank_content_delete(content=content)

    @admin.action(description="Enable selected content for matching")
    def enable(self, request, queryset) -> None:
        n = services.bank_contents_set_enabled(content_ids=list(queryset.values_list("pk", flat=True)), enabled=True)
        messages.success(request, f"Enabled {n} content(s).")

    @admin.action(description="Disable selected content for matching")
    def disable(self, request, queryset) -> None:
        n = services.bank_contents_set_enabled(content_ids=list(queryset.values_list("pk", flat=True)), enabled=False)
        messages.success(request, f"Disabled {n} content(s).")
