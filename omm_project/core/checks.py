"""omm's own `manage.py check --deploy` warnings, beside Django's security checks."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def open_access_check(app_configs, **kwargs) -> list[Warning]:
    """OMM_OPEN_ACCESS serves /c, /h and /m without a key: never in production."""
    if settings.OMM_OPEN_ACCESS:
        return [Warning("OMM_OPEN_ACCESS is on: /c, /h and /m answer without an API key.", id="omm.W001")]
    return []
