"""The admin: the audit trail is read-only, titles read well, "View site" goes somewhere, states in words."""

import datetime
import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import RequestFactory
from django.urls import get_script_prefix, reverse, set_script_prefix

from banks.admin import matching_state
from banks.models import BankContent
from banks.services import bank_content_create, bank_create
from reviews.admin import ReadOnlyAdmin
from reviews.models import MatchLog, Review
from tests.builders import PDQ

OMM_APPS = {"core", "banks", "exchanges", "matching", "reviews"}


def _admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def audit_rows(db) -> dict:
    bank = bank_create(name="ADMIN_BANK")
    content = bank_content_create(bank=bank, signals={"pdq": PDQ})
    match = MatchLog.objects.create(
        signal_type="pdq",
        signal_value=PDQ,
        content=content,
        matched_content_id=content.pk,
        bank=bank,
        matched_bank_id=bank.pk,
        bank_name=bank.name,
    )
    review = Review.objects.create(
        content=content, reviewed_content_id=content.pk, bank=bank, bank_name=bank.name, verdict="true_positive"
    )
    return {MatchLog: match, Review: review}


def test_admin_read_only_models_cover_the_audit_trail():
    # Given the admin's registry, when the system-written models are looked up, then the match log
    # and reviews are among them (a new log model must inherit ReadOnlyAdmin, not ModelAdmin).
    read_only = {model for model, model_admin in admin.site._registry.items() if isinstance(model_admin, ReadOnlyAdmin)}
    assert {MatchLog, Review} <= read_only


@pytest.mark.django_db
def test_admin_read_only_models_offer_no_add_change_delete(admin_user):
    # Given a superuser, when any read-only admin is asked, then add, change and delete are refused
    # and "Delete selected" is not among the actions.
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    checked = 0
    for model, model_admin in admin.site._registry.items():
        if not isinstance(model_admin, ReadOnlyAdmin):
            continue
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request), model
        assert not model_admin.has_delete_permission(request), model
        assert "delete_selected" not in model_admin.get_actions(request), model
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("model", [MatchLog, Review])
def test_admin_audit_rows_cannot_be_deleted(admin_client, audit_rows, model):
    # Given a match log row and a review, when a superuser lists them, then the page has no delete
    # action; the delete view and a forged "delete_selected" POST leave the row in place.
    row = audit_rows[model]
    listing = admin_client.get(_admin_url(model, "changelist"))
    assert listing.status_code == 200
    assert b"delete_selected" not in listing.content
    assert admin_client.get(_admin_url(model, "delete", row.pk)).status_code == 403
    admin_client.post(
        _admin_url(model, "changelist"),
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert model.objects.filter(pk=row.pk).exists()
    # The row is still viewable, read-only.
    detail = admin_client.get(_admin_url(model, "change", row.pk))
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content


def test_model_plural_names_are_english():
    # Given every omm model, when Django's default plural (name + "s") is in use, then the name is
    # not one that takes "es" or "ies" (the admin read "Matchs").
    for model in apps.get_models():
        if model._meta.app_label not in OMM_APPS:
            continue
        singular = str(model._meta.verbose_name)
        plural = str(model._meta.verbose_name_plural)
        if plural != singular + "s":
            continue
        assert not singular.endswith(("s", "x", "z", "ch", "sh")), (model, plural)
        assert not (singular.endswith("y") and singular[-2:-1] not in "aeiou"), (model, plural)
    assert str(MatchLog._meta.verbose_name_plural) == "matches"


def test_admin_index_titles(admin_client):
    # Given a superuser, when the admin index is shown, then the match log reads "Matches".
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert b"Matches" in response.content
    assert b"Matchs" not in response.content


def test_admin_view_site_opens_the_api_docs(admin_client):
    # Given a superuser, when the admin is shown, then "View site" points to the API docs, which
    # answer 200 (it used to point to "/", a JSON 404).
    response = admin_client.get(reverse("admin:index"))
    site_url = str(response.context["site_url"])
    assert site_url == reverse("openapi-ui")
    assert f'href="{site_url}"'.encode() in response.content
    assert admin_client.get(site_url).status_code == 200


def test_admin_view_site_keeps_a_deployment_prefix():
    # Given a deployment under a prefix (WSGI sets the script prefix per request), when "View
    # site" is resolved, then it keeps the prefix (it is resolved lazily, not at import).
    previous = get_script_prefix()
    set_script_prefix("/omm/")
    try:
        assert str(admin.site.site_url) == "/omm/openapi/"
    finally:
        set_script_prefix(previous)


def test_matching_state_in_words():
    # Given HMA's disable_until_ts encoding, when shown, then it reads as words.
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    future = int((now + datetime.timedelta(days=1)).timestamp())
    past = int((now - datetime.timedelta(days=1)).timestamp())
    assert matching_state(BankContent.ENABLED, now=now) == "enabled"
    assert matching_state(BankContent.DISABLED_FOREVER, now=now) == "disabled"
    assert matching_state(future, now=now) == "disabled until 2026-01-02 00:00:00 UTC"
    assert matching_state(past, now=now) == "enabled (was disabled until 2025-12-31 00:00:00 UTC)"
    assert matching_state(2**62, now=now) == f"disabled until unix time {2**62}"


def test_admin_content_list_shows_matching_state(admin_client, db):
    # Given an enabled and a disabled content, when a superuser lists contents, then the column
    # reads "enabled" / "disabled", not 1 / 0.
    bank = bank_create(name="ADMIN_STATE")
    enabled = bank_content_create(bank=bank, signals={"pdq": PDQ})
    disabled = bank_content_create(
        bank=bank, signals={"pdq": PDQ.replace("f", "e")}, disable_until_ts=BankContent.DISABLED_FOREVER
    )
    response = admin_client.get(_admin_url(BankContent, "changelist"))
    assert response.status_code == 200
    rows = {row[0]: row for row in _result_rows(response)}
    assert "enabled" in rows[str(enabled.pk)]
    assert "disabled" in rows[str(disabled.pk)]
    detail = admin_client.get(_admin_url(BankContent, "change", enabled.pk))
    assert b"enabled" in detail.content


def _result_rows(response) -> list[list[str]]:
    """The changelist's cells as text, one list per row, without the action checkbox (first: the id)."""
    rows = []
    for row in response.context["results"]:
        cells = [re.sub(r"<[^>]+>", "", str(cell)).strip() for cell in row]
        rows.append([cell for cell in cells if cell])
    return rows


def _change_form(admin_client, model, pk) -> dict:
    """The change form's current values, as the browser would post them back."""
    response = admin_client.get(_admin_url(model, "change", pk))
    assert response.status_code == 200
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if value is None:
            continue
        data[name] = field.prepare_value(value) if not isinstance(value, list) else value
    return data


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value",
    ['["a\\u0000b"]', '["\\ud800"]', "[NaN]", '{"a": 1e999}'],
    ids=["nul", "lone-surrogate", "nan", "overflow"],
)
def test_admin_json_fields_apply_the_json_rules(admin_client, value):
    # Given a bank, content and an API key, edited by a superuser
    from omm_project.core.models import ApiKey

    bank = bank_create(name="JSONY", labels=["kept"])
    content = bank_content_create(bank=bank, signals={"video_md5": "d41d8cd98f00b204e9800998ecf8427e"})
    key = ApiKey.objects.create(name="k", prefix="p" * 8, digest="d" * 64, scopes=["match"])
    for model, pk, field in [
        (type(bank), bank.pk, "labels"),
        (BankContent, content.pk, "labels"),
        (BankContent, content.pk, "metadata"),
        (ApiKey, key.pk, "scopes"),
    ]:
        data = _change_form(admin_client, model, pk)
        data[field] = value
        # When a JSON field gets a value the database cannot store
        response = admin_client.post(_admin_url(model, "change", pk), data)
        # Then the form shows the error on the field, and nothing changed
        assert response.status_code == 200, (model, field)
        assert field in response.context["adminform"].form.errors, (model, field)
    bank.refresh_from_db()
    assert bank.labels == ["kept"]


def test_every_omm_admin_edits_json_with_the_strict_field():
    from omm_project.lib.admin import OmmAdminMixin

    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label in ("auth", "contenttypes", "sessions", "django_celery_beat"):
            continue
        assert isinstance(model_admin, OmmAdminMixin), model
        for inline in model_admin.inlines:
            assert issubclass(inline, OmmAdminMixin), inline
