"""The Celery app: configured from Django settings (CELERY_* names)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omm_project.settings")

app = Celery("omm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
