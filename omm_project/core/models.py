from django.db import models
from django.db.models import Q

from omm_project.core.choices import Scope


class ApiKey(models.Model):
    """An API key: only its SHA-256 digest is stored; the key itself is shown once at creation."""

    name = models.CharField(max_length=100, help_text="Who or what uses this key.")
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise the key.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, help_text=f"Subset of {Scope.values}.")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        constraints = [models.CheckConstraint(condition=~Q(name=""), name="apikey_name_not_empty")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
