from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "omm_project.core"
    label = "core"
    verbose_name = "Access and operations"

    def ready(self) -> None:
        from django.contrib import admin

        from omm_project.core import checks, schema  # noqa: F401  (register a check, an OpenAPI extension)
        from omm_project.core.login_throttle import ThrottledAdminAuthenticationForm
        from omm_project.core.metrics import celery_queue_depth
        from omm_project.lib.metrics import register_provider

        register_provider(celery_queue_depth)
        admin.site.login_form = ThrottledAdminAuthenticationForm
