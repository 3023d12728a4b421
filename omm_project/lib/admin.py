"""
The bases of omm's admin classes: one JSON form field with the API's JSON rules for every
JSONField the admin edits (bank and content labels, content metadata, API key scopes, rule labels).
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import models
from django.forms.fields import InvalidJSONInput, JSONString

from omm_project.lib.errors import InvalidInput
from omm_project.lib.inputs import json_check, json_loads


class StrictJSONFormField(forms.JSONField):
    """
    Django's JSON form field parses with plain json.loads: NaN, Infinity, 1e999, "\\u0000" or a
    lone surrogate pass it and fail at the database (a 500). This one parses with
    lib.inputs.json_loads, the rules the API applies, and shows their message on the field.
    """

    def to_python(self, value):
        if self.disabled:
            return value
        if value in self.empty_values:
            return None
        try:
            if isinstance(value, (list, dict, int, float, JSONString)):
                return json_check(value)
            if isinstance(value, InvalidJSONInput):  # redisplayed invalid input
                raise InvalidInput("Enter a valid JSON.")
            converted = json_loads(value)
        except InvalidInput as exc:
            raise ValidationError(exc.message, code="invalid", params={"value": value}) from None
        return JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data, initial):
        # Redisplayed after an error as typed: Django's re-encoding of a lone surrogate would fail
        # to encode the page (a 500 again).
        if self.disabled:
            return initial
        if data is None:
            return None
        try:
            return json_loads(data)
        except InvalidInput:
            return InvalidJSONInput(data)


JSON_FORMFIELD_OVERRIDES = {models.JSONField: {"form_class": StrictJSONFormField}}


class OmmAdminMixin:
    """Every omm admin (model admins and inlines): JSONFields edited with StrictJSONFormField."""

    formfield_overrides = JSON_FORMFIELD_OVERRIDES


class OmmModelAdmin(OmmAdminMixin, admin.ModelAdmin):
    pass


class OmmTabularInline(OmmAdminMixin, admin.TabularInline):
    pass


class OmmStackedInline(OmmAdminMixin, admin.StackedInline):
    pass
