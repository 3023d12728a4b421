from django.apps import AppConfig


class HashingConfig(AppConfig):
    name = "hashing"
    verbose_name = "Hashing"
