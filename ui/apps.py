from django.apps import AppConfig


class UiConfig(AppConfig):
    """The review UI for people: Django session login, groups, server-rendered pages (docs/ui.md)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "ui"
    verbose_name = "Review UI"
