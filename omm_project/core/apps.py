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
        from omm_project.lib import outbound
        from omm_project.lib.metrics import register_provider

        register_provider(celery_queue_depth)
        # Every outgoing request of this process, python-threatexchange's sessions included,
        # goes through the one address policy and deadline (docs/deployment.md).
        outbound.install()
        admin.site.login_form = ThrottledAdminAuthenticationForm
