from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "omm_project.core"
    label = "core"
    verbose_name = "Access and operations"

    def ready(self) -> None:
        from omm_project.core import schema  # noqa: F401  (registers the OpenAPI extension)
